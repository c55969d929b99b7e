//! What a block records: one window's four averages, and the digest that ties them to samples.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::encoding::Hash32;
use super::timestamp::Timestamp;

/// SHA-256 over the values as IEEE-754 float64 big-endian, concatenated.
///
/// The one definition of a window digest: the cabinet computes it over the values it publishes,
/// averagers check it, and the record carries it so anyone holding the samples can match them.
pub fn digest_values(values: &[f64]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for value in values {
        hasher.update(value.to_be_bytes());
    }
    hasher.finalize().into()
}

/// [`digest_values`] as 64 lowercase hex digits.
pub fn digest_hex(values: &[f64]) -> String {
    Hash32(digest_values(values)).to_hex()
}

/// The four per-quantity means of a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Averages {
    /// Mean voltage, volts.
    #[serde(rename = "U")]
    pub u: f64,
    /// Mean current, amperes.
    #[serde(rename = "I")]
    pub i: f64,
    /// Mean active power, watts.
    #[serde(rename = "PA")]
    pub pa: f64,
    /// Mean reactive power, var.
    #[serde(rename = "PR")]
    pub pr: f64,
}

/// The [`digest_values`] of each quantity's samples in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digests {
    /// Digest of the voltage samples.
    #[serde(rename = "U")]
    pub u: Hash32,
    /// Digest of the current samples.
    #[serde(rename = "I")]
    pub i: Hash32,
    /// Digest of the active power samples.
    #[serde(rename = "PA")]
    pub pa: Hash32,
    /// Digest of the reactive power samples.
    #[serde(rename = "PR")]
    pub pr: Hash32,
}

/// One committed window of one cabinet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Cabinet id: 1..=64 characters of `[A-Za-z0-9_-]`.
    pub cabinet: String,
    /// Window id, unique per cabinet.
    pub window: u64,
    /// Timestamp of the first sample, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub from: String,
    /// Timestamp of the last sample, same form, not before `from`.
    pub to: String,
    /// Number of samples in the window, at least 1.
    pub n: u32,
    /// The four means.
    pub averages: Averages,
    /// The four sample digests.
    pub digests: Digests,
}

/// Why a record is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// Cabinet id empty, too long, or with characters outside `[A-Za-z0-9_-]`.
    #[error("cabinet id {0:?} is not 1..=64 characters of [A-Za-z0-9_-]")]
    BadCabinet(String),
    /// `from` or `to` is not a strict millisecond UTC timestamp.
    #[error("{field} is not YYYY-MM-DDTHH:MM:SS.mmmZ: {value:?}")]
    BadTimestamp {
        /// `"from"` or `"to"`.
        field: &'static str,
        /// The refused text.
        value: String,
    },
    /// `from` is later than `to`.
    #[error("from {from} is after to {to}")]
    FromAfterTo {
        /// The window start.
        from: String,
        /// The window end.
        to: String,
    },
    /// A window with no samples.
    #[error("n is 0")]
    NoSamples,
    /// An average is NaN or infinite.
    #[error("average {quantity} is not finite")]
    NonFinite {
        /// `U`, `I`, `PA` or `PR`.
        quantity: &'static str,
    },
}

impl Record {
    /// Checks every field rule of the "Ledger encoding" section of `topics.md` except uniqueness across the chain.
    pub fn validate(&self) -> Result<(), RecordProblem> {
        if !crate::topics::is_valid_id(&self.cabinet) {
            return Err(RecordProblem::BadCabinet(self.cabinet.clone()));
        }
        let parse = |field: &'static str, value: &str| {
            Timestamp::parse(value).map_err(|_| RecordProblem::BadTimestamp {
                field,
                value: value.to_owned(),
            })
        };
        let from = parse("from", &self.from)?;
        let to = parse("to", &self.to)?;
        if from > to {
            return Err(RecordProblem::FromAfterTo {
                from: self.from.clone(),
                to: self.to.clone(),
            });
        }
        if self.n == 0 {
            return Err(RecordProblem::NoSamples);
        }
        let a = &self.averages;
        for (quantity, value) in [("U", a.u), ("I", a.i), ("PA", a.pa), ("PR", a.pr)] {
            if !value.is_finite() {
                return Err(RecordProblem::NonFinite { quantity });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_values_matches_python_hashlib() {
        // python3 -c "import hashlib,struct; print(hashlib.sha256(struct.pack('>3d',
        //   230.5, -1.25, 0.0)).hexdigest())"
        assert_eq!(
            digest_hex(&[230.5, -1.25, 0.0]),
            "c3ede7ac6355edd76cb425a226a7bbcdae5edeff9a8c4ae5de15fde3107828df"
        );
        // The empty window still has a well-defined digest: SHA-256 of nothing.
        assert_eq!(
            digest_hex(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digest_changes_when_one_value_changes_by_one_ulp() {
        let a = 230.1_f64;
        let b = f64::from_bits(a.to_bits() + 1);
        assert_ne!(digest_values(&[a, 1.0]), digest_values(&[b, 1.0]));
    }

    #[test]
    fn record_json_uses_the_contract_field_names() {
        let record = Record {
            cabinet: "cab-1".into(),
            window: 7,
            from: "2026-11-21T01:31:35.123Z".into(),
            to: "2026-11-21T01:31:36.123Z".into(),
            n: 10,
            averages: Averages {
                u: 230.0,
                i: 1.5,
                pa: 300.0,
                pr: -20.0,
            },
            digests: Digests {
                u: Hash32([1; 32]),
                i: Hash32([2; 32]),
                pa: Hash32([3; 32]),
                pr: Hash32([4; 32]),
            },
        };
        let json = serde_json::to_value(&record).expect("serialises");
        assert_eq!(json["averages"]["PA"], 300.0);
        assert_eq!(json["digests"]["U"], "01".repeat(32));
        let back: Record = serde_json::from_value(json).expect("parses");
        assert_eq!(back, record);
        assert_eq!(record.validate(), Ok(()));
    }

    #[test]
    fn malformed_records_are_named_precisely() {
        let good: Record = serde_json::from_str(&format!(
            r#"{{"cabinet":"c","window":1,"from":"2026-01-01T00:00:00.000Z",
            "to":"2026-01-01T00:00:01.000Z","n":2,
            "averages":{{"U":1,"I":2,"PA":3,"PR":4}},
            "digests":{{"U":"{z}","I":"{z}","PA":"{z}","PR":"{z}"}}}}"#,
            z = "0".repeat(64)
        ))
        .expect("parses");
        assert_eq!(good.validate(), Ok(()));

        let mut r = good.clone();
        r.cabinet = "a/b".into();
        assert!(matches!(r.validate(), Err(RecordProblem::BadCabinet(_))));
        r.cabinet = "x".repeat(65);
        assert!(matches!(r.validate(), Err(RecordProblem::BadCabinet(_))));

        let mut r = good.clone();
        r.n = 0;
        assert_eq!(r.validate(), Err(RecordProblem::NoSamples));

        let mut r = good.clone();
        r.averages.pr = f64::NAN;
        assert_eq!(
            r.validate(),
            Err(RecordProblem::NonFinite { quantity: "PR" })
        );

        let mut r = good.clone();
        std::mem::swap(&mut r.from, &mut r.to);
        assert!(matches!(
            r.validate(),
            Err(RecordProblem::FromAfterTo { .. })
        ));

        let mut r = good;
        r.to = "2026-01-01T00:00:01Z".into();
        assert!(matches!(
            r.validate(),
            Err(RecordProblem::BadTimestamp { field: "to", .. })
        ));
    }
}
