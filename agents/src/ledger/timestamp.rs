//! Millisecond UTC timestamps in the one textual form the chain accepts.
//!
//! The block header hashes a timestamp as milliseconds since the Unix epoch, while the JSON
//! carries `YYYY-MM-DDTHH:MM:SS.mmmZ`. Only that exact 24-character form is accepted so that
//! text and number map one-to-one: a block cannot be re-spelled without changing its hash.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a timestamp string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not of the form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[error("not of the form YYYY-MM-DDTHH:MM:SS.mmmZ: {0:?}")]
    Format(String),
    /// Well formed but not a real instant (month 13, 31 February, before 1970...).
    #[error("not a valid UTC instant from 1970 on: {0:?}")]
    OutOfRange(String),
}

/// A UTC instant with millisecond precision, from 1970-01-01 to 9999-12-31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: u64,
}

/// Days between 1970-01-01 and the given proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Largest representable instant: 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: u64 = 253_402_300_799_999;

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch, if it is before year 10000.
    pub fn from_millis(millis: u64) -> Option<Timestamp> {
        (millis <= MAX_MILLIS).then_some(Timestamp { millis })
    }

    /// Milliseconds since the Unix epoch (what the block header hashes).
    pub fn millis(self) -> u64 {
        self.millis
    }

    /// The current time, truncated to the millisecond (clamped into the representable range).
    pub fn now() -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp {
            millis: millis.min(MAX_MILLIS),
        }
    }

    /// Parses the strict form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let b = text.as_bytes();
        let format_err = || TimestampError::Format(text.to_owned());
        if b.len() != 24 {
            return Err(format_err());
        }
        for (i, &c) in b.iter().enumerate() {
            let ok = match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'.',
                23 => c == b'Z',
                _ => c.is_ascii_digit(),
            };
            if !ok {
                return Err(format_err());
            }
        }
        let num = |from: usize, to: usize| {
            b[from..to]
                .iter()
                .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'))
        };
        let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
        let (hour, minute, second, milli) = (num(11, 13), num(14, 16), num(17, 19), num(20, 23));
        let range_err = || TimestampError::OutOfRange(text.to_owned());
        if year < 1970 || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
            return Err(range_err());
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(range_err());
        }
        let days = days_from_civil(year, month, day);
        let millis = ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + milli;
        u64::try_from(millis)
            .ok()
            .and_then(Timestamp::from_millis)
            .ok_or_else(range_err)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // MAX_MILLIS keeps this well inside i64.
        let millis = self.millis as i64;
        let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
        let (year, month, day) = civil_from_days(days);
        let secs = in_day / 1000;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            in_day % 1000
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instant_parses_to_its_epoch_millis_and_prints_back() {
        let ts = Timestamp::parse("2026-11-21T01:31:35.123Z").expect("valid");
        // python3 -c "import datetime as d; print(int(d.datetime(2026,11,21,1,31,35,123000,
        //   tzinfo=d.timezone.utc).timestamp()*1000))"
        assert_eq!(ts.millis(), 1_795_224_695_123);
        assert_eq!(ts.to_string(), "2026-11-21T01:31:35.123Z");
    }

    #[test]
    fn epoch_and_leap_day_round_trip() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
            "2000-03-01T00:00:00.001Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let ts = Timestamp::parse(text).expect(text);
            assert_eq!(ts.to_string(), text);
            assert_eq!(Timestamp::from_millis(ts.millis()), Some(ts));
        }
    }

    #[test]
    fn other_spellings_of_an_instant_are_refused() {
        for text in [
            "2026-11-21T01:31:35Z",
            "2026-11-21T01:31:35.1234Z",
            "2026-11-21T01:31:35.123+00:00",
            "2026-11-21 01:31:35.123Z",
            "2026-11-21t01:31:35.123z",
            "",
        ] {
            assert!(
                matches!(Timestamp::parse(text), Err(TimestampError::Format(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        for text in [
            "2023-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-04-31T00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:00:60.000Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            assert!(
                matches!(Timestamp::parse(text), Err(TimestampError::OutOfRange(_))),
                "{text}"
            );
        }
    }
}
