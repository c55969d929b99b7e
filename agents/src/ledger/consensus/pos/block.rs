//! A proof-of-stake block's `consensus` object — `{"round", "offenders", "evidence"}` — and
//! equivocation evidence: two headers signed by one validator for one (height, round).

use serde_json::{Map, Value};

use crate::ledger::block::Header;
use crate::ledger::encoding::PublicKey;
use crate::ledger::genesis::canonical_json;

/// Most evidence items one block may carry.
pub const MAX_EVIDENCE: usize = 16;

/// Highest round a block may state: round r starts `round_timeout × (2^r − 1)` after round 0,
/// so round 32 is beyond any useful wait; the rule keeps the arithmetic in range.
pub const MAX_ROUND: u32 = 32;

/// The parsed `consensus` object of a proof-of-stake block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosBlock {
    /// The round (0 = the height's first leader; r = after r skipped leaders).
    pub round: u32,
    /// Every validator recorded as an equivocator up to and including this block, sorted.
    pub offenders: Vec<PublicKey>,
    /// Evidence first recorded by this block.
    pub evidence: Vec<Evidence>,
}

/// Two signed headers by one producer for one (height, round); `a.hash < b.hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The header with the lower hash.
    pub a: Header,
    /// The header with the higher hash.
    pub b: Header,
}

impl PosBlock {
    /// Parses and checks the shape (exactly the three keys, round in range, offenders sorted
    /// and distinct, at most [`MAX_EVIDENCE`] items each of two headers).
    pub fn parse(obj: &Map<String, Value>) -> Result<PosBlock, String> {
        if let Some(k) = obj
            .keys()
            .find(|k| !["round", "offenders", "evidence"].contains(&k.as_str()))
        {
            return Err(format!("consensus key {k:?} is not used under pos"));
        }
        let round = match obj.get("round") {
            Some(v) => v
                .as_u64()
                .filter(|r| !v.is_f64() && *r <= u64::from(MAX_ROUND))
                .ok_or_else(|| format!("round {v} is not an integer 0..={MAX_ROUND}"))?
                as u32,
            None => return Err("consensus.round is missing".into()),
        };
        let offenders = match obj.get("offenders") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(|s| PublicKey::from_hex(s).ok())
                        .ok_or_else(|| format!("offender {v} is not a key"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err("consensus.offenders is missing or not a list".into()),
        };
        if offenders.windows(2).any(|p| p[0].0 >= p[1].0) {
            return Err("consensus.offenders is not sorted and distinct".into());
        }
        let evidence = match obj.get("evidence") {
            Some(Value::Array(list)) if list.len() <= MAX_EVIDENCE => list
                .iter()
                .map(Evidence::parse)
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(list)) => {
                return Err(format!(
                    "{} evidence items, at most {MAX_EVIDENCE}",
                    list.len()
                ))
            }
            _ => return Err("consensus.evidence is missing or not a list".into()),
        };
        Ok(PosBlock {
            round,
            offenders,
            evidence,
        })
    }

    /// The JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("round".into(), self.round.into());
        m.insert(
            "offenders".into(),
            Value::Array(
                self.offenders
                    .iter()
                    .map(|k| Value::String(k.to_hex()))
                    .collect(),
            ),
        );
        m.insert(
            "evidence".into(),
            Value::Array(
                self.evidence
                    .iter()
                    .map(|e| Value::Object(e.to_map()))
                    .collect(),
            ),
        );
        m
    }

    /// The seal bytes: the canonical JSON of the object.
    pub fn seal(obj: &Map<String, Value>) -> Vec<u8> {
        canonical_json(&Value::Object(obj.clone())).into_bytes()
    }
}

impl Evidence {
    /// Two headers in canonical order (lower hash first).
    pub fn new(x: Header, y: Header) -> Evidence {
        if x.hash.0 <= y.hash.0 {
            Evidence { a: x, b: y }
        } else {
            Evidence { a: y, b: x }
        }
    }

    /// `{"a": header, "b": header}`.
    pub fn parse(value: &Value) -> Result<Evidence, String> {
        let Value::Object(obj) = value else {
            return Err("an evidence item is not an object".into());
        };
        if obj.len() != 2 {
            return Err("an evidence item has exactly the keys a and b".into());
        }
        let header = |k: &str| -> Result<Header, String> {
            let v = obj
                .get(k)
                .ok_or_else(|| format!("evidence.{k} is missing"))?;
            serde_json::from_value(v.clone()).map_err(|e| format!("evidence.{k}: {e}"))
        };
        Ok(Evidence {
            a: header("a")?,
            b: header("b")?,
        })
    }

    /// The JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, h) in [("a", &self.a), ("b", &self.b)] {
            m.insert(k.into(), serde_json::to_value(h).unwrap_or(Value::Null));
        }
        m
    }

    /// The accused validator (both headers' producer; checked by [`super::Pos::check_evidence`]).
    pub fn offender(&self) -> PublicKey {
        self.a.producer
    }
}
