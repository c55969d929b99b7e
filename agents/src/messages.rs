//! The JSON payloads wattchain publishes, with their validation.
//!
//! Every payload read from the bus goes through [`decode`], which bounds its size, parses it and
//! validates it, so that agent logic only ever sees well-formed messages. Field names and units
//! are the public contract documented in `topics.md`.

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

use crate::ledger;
use crate::topics::{is_valid_id, Quantity};

/// Most values one window task may carry (bounds memory and the MQTT packet size).
pub const MAX_WINDOW_VALUES: usize = 10_000;

/// How many bytes of a rejected payload a dead letter quotes.
pub const DEADLETTER_HEAD_BYTES: usize = 256;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MessageError {
    /// The payload is larger than the limit for its kind.
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// Not JSON of the expected shape (syntax, types, missing fields).
    #[error("malformed JSON: {0}")]
    Json(String),
    /// Well-formed JSON whose content breaks a rule of the contract.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl MessageError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        MessageError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A payload type that can check its own content after parsing.
pub trait Validate {
    /// Returns the first rule the message breaks, if any.
    fn validate(&self) -> Result<(), MessageError>;
}

/// Parses and validates a payload of at most `max_len` bytes.
pub fn decode<T: DeserializeOwned + Validate>(
    payload: &[u8],
    max_len: usize,
) -> Result<T, MessageError> {
    if payload.len() > max_len {
        return Err(MessageError::TooLarge {
            len: payload.len(),
            max: max_len,
        });
    }
    let msg: T = serde_json::from_slice(payload).map_err(|e| MessageError::Json(e.to_string()))?;
    msg.validate()?;
    Ok(msg)
}

/// Serialises a payload to compact JSON.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Our payload types hold only strings, numbers, bools and sequences: serialisation cannot fail.
    serde_json::to_vec(msg).expect("payload types always serialise")
}

/// Now, as an RFC 3339 UTC timestamp with milliseconds (`2026-11-21T10:15:30.123Z`).
pub fn now_ts() -> String {
    format_ts(SystemTime::now())
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn format_ts(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses an RFC 3339 UTC timestamp.
pub fn parse_ts(field: &'static str, s: &str) -> Result<SystemTime, MessageError> {
    humantime::parse_rfc3339(s).map_err(|e| MessageError::invalid(field, format!("{s:?}: {e}")))
}

fn check_cabinet(cabinet: &str) -> Result<(), MessageError> {
    if is_valid_id(cabinet) {
        Ok(())
    } else {
        Err(MessageError::invalid(
            "cabinet",
            format!("{cabinet:?} is not 1 to 64 of A-Z a-z 0-9 '-' '_'"),
        ))
    }
}

fn check_finite(field: &'static str, v: f64) -> Result<(), MessageError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(MessageError::invalid(field, format!("{v} is not finite")))
    }
}

fn check_range(from: &str, to: &str) -> Result<(), MessageError> {
    if parse_ts("from", from)? > parse_ts("to", to)? {
        return Err(MessageError::invalid(
            "to",
            format!("{to} is before from {from}"),
        ));
    }
    Ok(())
}

/// One reading of the four quantities: `{cabinet}/quad`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quadruplet {
    /// Cabinet id.
    pub cabinet: String,
    /// Sample sequence number, +1 per poll, unique across restarts.
    pub seq: u64,
    /// When the sample was read, RFC 3339 UTC with ms.
    pub ts: String,
    /// Voltage, V.
    #[serde(rename = "U")]
    pub u: f64,
    /// Current, A.
    #[serde(rename = "I")]
    pub i: f64,
    /// Active power, W.
    #[serde(rename = "PA")]
    pub pa: f64,
    /// Reactive power, var.
    #[serde(rename = "PR")]
    pub pr: f64,
}

impl Quadruplet {
    /// The value of one quantity.
    pub fn value(&self, q: Quantity) -> f64 {
        match q {
            Quantity::U => self.u,
            Quantity::I => self.i,
            Quantity::PA => self.pa,
            Quantity::PR => self.pr,
        }
    }
}

impl Validate for Quadruplet {
    fn validate(&self) -> Result<(), MessageError> {
        check_cabinet(&self.cabinet)?;
        parse_ts("ts", &self.ts)?;
        for q in Quantity::ALL {
            check_finite(q.as_str(), self.value(q))?;
        }
        Ok(())
    }
}

/// One quantity's samples of one window, the averagers' work: `{cabinet}/window/{Q}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowTask {
    /// Cabinet id.
    pub cabinet: String,
    /// Window id: +1 per window, unique per cabinet across restarts.
    pub window: u64,
    /// Which quantity `values` holds.
    pub quantity: Quantity,
    /// `seq` of the first sample; the window covers `first_seq..first_seq + values.len()`.
    pub first_seq: u64,
    /// The samples, in sequence order.
    pub values: Vec<f64>,
    /// Timestamp of the first sample.
    pub from: String,
    /// Timestamp of the last sample.
    pub to: String,
    /// SHA-256 of the values (see topics.md), lowercase hex.
    pub digest: String,
}

impl Validate for WindowTask {
    fn validate(&self) -> Result<(), MessageError> {
        check_cabinet(&self.cabinet)?;
        if self.values.is_empty() {
            return Err(MessageError::invalid("values", "empty window"));
        }
        if self.values.len() > MAX_WINDOW_VALUES {
            return Err(MessageError::invalid(
                "values",
                format!(
                    "{} values exceed the limit of {MAX_WINDOW_VALUES}",
                    self.values.len()
                ),
            ));
        }
        if let Some(bad) = self.values.iter().position(|v| !v.is_finite()) {
            return Err(MessageError::invalid(
                "values",
                format!("value {bad} is not finite"),
            ));
        }
        check_range(&self.from, &self.to)?;
        let digest = ledger::digest_hex(&self.values);
        if digest != self.digest {
            return Err(MessageError::invalid(
                "digest",
                format!("{} does not match the values ({digest})", self.digest),
            ));
        }
        Ok(())
    }
}

/// An averager's result for one window task: `{cabinet}/average/{Q}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Average {
    /// Cabinet id.
    pub cabinet: String,
    /// Window id.
    pub window: u64,
    /// Which quantity was averaged.
    pub quantity: Quantity,
    /// Arithmetic mean of the values (accumulated in f64), in the quantity's unit.
    pub mean: f64,
    /// Number of values.
    pub n: u32,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Timestamp of the window's first sample.
    pub from: String,
    /// Timestamp of the window's last sample.
    pub to: String,
    /// The task's digest, checked against its values and echoed.
    pub digest: String,
    /// Id of the averager that computed it.
    pub agent: String,
}

impl Average {
    /// Computes the average of a validated task.
    pub fn of(task: &WindowTask, agent: &str) -> Average {
        let (mut sum, mut min, mut max) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
        for &v in &task.values {
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        Average {
            cabinet: task.cabinet.clone(),
            window: task.window,
            quantity: task.quantity,
            mean: sum / task.values.len() as f64,
            // Bounded by MAX_WINDOW_VALUES, which fits in u32.
            n: task.values.len() as u32,
            min,
            max,
            from: task.from.clone(),
            to: task.to.clone(),
            digest: task.digest.clone(),
            agent: agent.to_string(),
        }
    }
}

impl Validate for Average {
    fn validate(&self) -> Result<(), MessageError> {
        check_cabinet(&self.cabinet)?;
        check_finite("mean", self.mean)?;
        check_finite("min", self.min)?;
        check_finite("max", self.max)?;
        if self.n == 0 || self.n as usize > MAX_WINDOW_VALUES {
            return Err(MessageError::invalid(
                "n",
                format!("{} is outside 1..={MAX_WINDOW_VALUES}", self.n),
            ));
        }
        if !(self.min <= self.mean && self.mean <= self.max) {
            return Err(MessageError::invalid(
                "mean",
                format!("{} is outside [{}, {}]", self.mean, self.min, self.max),
            ));
        }
        check_range(&self.from, &self.to)?;
        if self.digest.len() != 64 || !self.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MessageError::invalid("digest", "not 64 hex digits"));
        }
        if !is_valid_id(&self.agent) {
            return Err(MessageError::invalid("agent", "not a valid agent id"));
        }
        Ok(())
    }
}

/// Whether an agent or cabinet is connected; the last will says `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Connected and working.
    Online,
    /// Gone (clean shutdown or last will).
    Offline,
}

/// Retained status of every agent: `agent/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentStatus {
    /// `online` or `offline`.
    pub state: Presence,
    /// Agent id.
    pub id: String,
    /// `cabinet`, `averager`, `publisher`, ...
    pub role: String,
    /// wattchain version.
    pub version: String,
    /// When this status was produced.
    pub ts: String,
}

impl AgentStatus {
    /// A status of this build's version, stamped now.
    pub fn new(state: Presence, id: &str, role: &str) -> Self {
        AgentStatus {
            state,
            id: id.to_string(),
            role: role.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ts: now_ts(),
        }
    }
}

/// Retained status of a cabinet: `cabinet/{cab}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CabinetStatus {
    /// Cabinet id.
    pub cabinet: String,
    /// `online` or `offline`.
    pub state: Presence,
    /// `ok` when the last poll succeeded, `error` otherwise, `connecting` before the first.
    pub modbus: String,
    /// Loads 1..7 on (true) or off, as read from the coils; absent until read.
    pub loads: Option<Vec<bool>>,
    /// Source feeding the loads (1 or 2); absent until read.
    pub source: Option<u8>,
    /// The last Modbus or publishing error, if any since start.
    pub last_error: Option<String>,
    /// Id of the next window to be cut.
    pub next_window: u64,
    /// Windows published and not yet committed to the chain.
    pub outbox: usize,
    /// Polls that missed their tick because the previous one overran.
    pub missed_ticks: u64,
    /// When this status was produced.
    pub ts: String,
}

/// What a cabinet's status session says on `cabinet/{cab}/status` by itself: `online` when it
/// connects, `offline` as its last will. Only what is true whenever it is sent: the will fires
/// at some later time, when the agent's counters are unknown, so it claims none (the agent's
/// own [`CabinetStatus`] follows the `online` one at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CabinetPresence {
    /// Cabinet id.
    pub cabinet: String,
    /// `online` or `offline`.
    pub state: Presence,
}

/// A cabinet's energy total, retained on `cabinet/{cab}/energy`: active energy imported,
/// integrated from PA by the cabinet and kept in its data directory across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyTotal {
    /// Cabinet id.
    pub cabinet: String,
    /// The total, kWh; never decreases (only values already saved to disk are published).
    pub energy_kwh: f64,
    /// When this cabinet's counter started from zero.
    pub since: String,
    /// When this value was saved.
    pub ts: String,
}

impl Validate for EnergyTotal {
    fn validate(&self) -> Result<(), MessageError> {
        check_cabinet(&self.cabinet)?;
        check_finite("energy_kwh", self.energy_kwh)?;
        if self.energy_kwh < 0.0 {
            return Err(MessageError::invalid("energy_kwh", "negative"));
        }
        parse_ts("since", &self.since)?;
        parse_ts("ts", &self.ts)?;
        Ok(())
    }
}

/// A rejected message, published on `deadletter/{role}` so that rejections are visible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Role of the agent that rejected it.
    pub role: String,
    /// Id of the agent that rejected it.
    pub agent: String,
    /// Topic the message arrived on (or would have been published on).
    pub topic: String,
    /// Why it was rejected.
    pub reason: String,
    /// Size of the payload, bytes.
    pub payload_len: usize,
    /// Its first bytes, as lossy UTF-8.
    pub payload_head: String,
    /// When it was rejected.
    pub ts: String,
}

impl DeadLetter {
    /// Describes a rejected payload.
    pub fn new(role: &str, agent: &str, topic: &str, reason: &str, payload: &[u8]) -> Self {
        let head = &payload[..payload.len().min(DEADLETTER_HEAD_BYTES)];
        DeadLetter {
            role: role.to_string(),
            agent: agent.to_string(),
            topic: topic.to_string(),
            reason: reason.to_string(),
            payload_len: payload.len(),
            payload_head: String::from_utf8_lossy(head).into_owned(),
            ts: now_ts(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(values: Vec<f64>) -> WindowTask {
        WindowTask {
            cabinet: "c1".into(),
            window: 7,
            quantity: Quantity::U,
            first_seq: 28,
            digest: ledger::digest_hex(&values),
            values,
            from: "2026-11-21T10:00:00.000Z".into(),
            to: "2026-11-21T10:00:03.000Z".into(),
        }
    }

    #[test]
    fn quadruplet_json_uses_the_contract_field_names() {
        let q = Quadruplet {
            cabinet: "c1".into(),
            seq: 3,
            ts: "2026-11-21T10:00:00.123Z".into(),
            u: 230.5,
            i: 1.25,
            pa: 280.0,
            pr: -6.5,
        };
        let json: serde_json::Value = serde_json::from_slice(&encode(&q)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"cabinet":"c1","seq":3,"ts":"2026-11-21T10:00:00.123Z",
                "U":230.5,"I":1.25,"PA":280.0,"PR":-6.5})
        );
        assert_eq!(decode::<Quadruplet>(&encode(&q), 1024).unwrap(), q);
    }

    #[test]
    fn average_of_a_task_is_mean_min_max_in_f64() {
        let t = task(vec![230.0, 231.0, 229.0, 234.0]);
        let a = Average::of(&t, "a1");
        assert_eq!((a.mean, a.min, a.max, a.n), (231.0, 229.0, 234.0, 4));
        assert_eq!(a.digest, t.digest);
        a.validate().unwrap();
    }

    #[test]
    fn window_tasks_that_break_the_contract_are_refused_with_the_reason() {
        let ok = task(vec![1.0, 2.0]);
        ok.validate().unwrap();

        let mut empty = task(vec![]);
        empty.digest = ledger::digest_hex(&[]);
        assert!(matches!(
            empty.validate(),
            Err(MessageError::Invalid {
                field: "values",
                ..
            })
        ));

        let mut forged = ok.clone();
        forged.values[1] = 2.5;
        assert!(matches!(
            forged.validate(),
            Err(MessageError::Invalid {
                field: "digest",
                ..
            })
        ));

        let huge = task(vec![1.0; MAX_WINDOW_VALUES + 1]);
        assert!(matches!(
            huge.validate(),
            Err(MessageError::Invalid {
                field: "values",
                ..
            })
        ));

        let mut backwards = ok.clone();
        backwards.to = "2026-11-21T09:00:00.000Z".into();
        assert!(matches!(
            backwards.validate(),
            Err(MessageError::Invalid { field: "to", .. })
        ));

        let mut bad_cab = ok;
        bad_cab.cabinet = "c/1".into();
        assert!(matches!(
            bad_cab.validate(),
            Err(MessageError::Invalid {
                field: "cabinet",
                ..
            })
        ));
    }

    #[test]
    fn decode_refuses_oversized_malformed_and_non_finite_payloads() {
        assert!(matches!(
            decode::<Quadruplet>(&[b' '; 2000], 1000),
            Err(MessageError::TooLarge {
                len: 2000,
                max: 1000
            })
        ));
        assert!(matches!(
            decode::<Quadruplet>(b"{not json", 1000),
            Err(MessageError::Json(_))
        ));
        let wrong_type = br#"{"cabinet":"c1","seq":"x","ts":"2026-11-21T10:00:00.000Z","U":1,"I":1,"PA":1,"PR":1}"#;
        assert!(matches!(
            decode::<Quadruplet>(wrong_type, 1000),
            Err(MessageError::Json(_))
        ));
        // JSON has no NaN; a huge exponent overflows to infinity and must still be refused.
        let inf = br#"{"cabinet":"c1","seq":1,"ts":"2026-11-21T10:00:00.000Z","U":1e999,"I":1,"PA":1,"PR":1}"#;
        assert!(decode::<Quadruplet>(inf, 1000).is_err());
        let bad_ts = br#"{"cabinet":"c1","seq":1,"ts":"yesterday","U":1,"I":1,"PA":1,"PR":1}"#;
        assert!(matches!(
            decode::<Quadruplet>(bad_ts, 1000),
            Err(MessageError::Invalid { field: "ts", .. })
        ));
    }

    #[test]
    fn averages_outside_their_own_bounds_are_refused() {
        let mut a = Average::of(&task(vec![1.0, 3.0]), "a1");
        a.mean = 5.0;
        assert!(matches!(
            a.validate(),
            Err(MessageError::Invalid { field: "mean", .. })
        ));
        a.mean = 2.0;
        a.n = 0;
        assert!(matches!(
            a.validate(),
            Err(MessageError::Invalid { field: "n", .. })
        ));
    }

    #[test]
    fn dead_letters_quote_a_bounded_head_of_the_payload() {
        let payload = vec![b'x'; 10_000];
        let d = DeadLetter::new("averager", "a1", "t", "too big", &payload);
        assert_eq!(d.payload_len, 10_000);
        assert_eq!(d.payload_head.len(), DEADLETTER_HEAD_BYTES);
    }

    #[test]
    fn timestamps_round_trip_with_milliseconds() {
        let s = now_ts();
        assert!(
            s.ends_with('Z') && s.len() == "2026-11-21T10:00:00.000Z".len(),
            "{s}"
        );
        assert_eq!(format_ts(parse_ts("ts", &s).unwrap()), s);
    }
}
