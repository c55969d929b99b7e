//! The validator set of a proof-of-stake or PBFT genesis: names, ed25519 keys and (for proof of
//! stake) stakes, sorted by key bytes so that every node indexes them alike and the chain id is
//! canonical.

use serde_json::{Map, Value};

use super::ParamsError;
use crate::ledger::encoding::PublicKey;

/// Most validators a genesis may list (keeps leader draws and certificates small).
pub const MAX_VALIDATORS: usize = 1024;

/// One validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// Display name (1..=64 characters of `A-Z a-z 0-9 . _ -`).
    pub name: String,
    /// The node key it signs blocks and messages with.
    pub key: PublicKey,
    /// Its stake (proof of stake; 1 when stakes are not used).
    pub stake: u64,
}

/// The validators, sorted by key bytes ascending, names and keys unique, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

fn bad(reason: String) -> ParamsError {
    ParamsError::BadValue {
        key: "validators",
        reason,
    }
}

impl ValidatorSet {
    /// A set from validators in any order (sorted here); for `genesis new` and `up`.
    pub fn new(mut validators: Vec<Validator>, stakes: bool) -> Result<ValidatorSet, ParamsError> {
        validators.sort_by_key(|v| v.key.0);
        let set = ValidatorSet { validators };
        set.check(stakes)?;
        Ok(set)
    }

    fn check(&self, stakes: bool) -> Result<(), ParamsError> {
        let v = &self.validators;
        if v.is_empty() {
            return Err(bad("at least one validator is required".into()));
        }
        if v.len() > MAX_VALIDATORS {
            return Err(bad(format!(
                "{} validators, at most {MAX_VALIDATORS}",
                v.len()
            )));
        }
        for pair in v.windows(2) {
            if pair[0].key.0 >= pair[1].key.0 {
                return Err(bad(if pair[0].key == pair[1].key {
                    format!("key {} is listed twice", pair[0].key)
                } else {
                    format!(
                        "not sorted by key: {} comes before {}",
                        pair[0].key, pair[1].key
                    )
                }));
            }
        }
        let mut names: Vec<&str> = v.iter().map(|x| x.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|p| p[0] == p[1]) {
            return Err(bad(format!("name {:?} is listed twice", pair[0])));
        }
        if let Some(x) = v
            .iter()
            .find(|x| !crate::ledger::genesis::is_valid_name(&x.name))
        {
            return Err(bad(format!(
                "name {:?} is not 1..=64 characters of A-Z a-z 0-9 . _ -",
                x.name
            )));
        }
        if stakes {
            if let Some(x) = v.iter().find(|x| x.stake == 0) {
                return Err(bad(format!("{}: stake must be at least 1", x.name)));
            }
        } else if let Some(x) = v.iter().find(|x| x.stake != 1) {
            // PBFT counts one vote per validator: a stake given there would be ignored, and a
            // user who wrote one expects it to count.
            return Err(bad(format!(
                "{}: stake {} given, but this mode gives every validator one vote (write NAME=PUBKEY)",
                x.name, x.stake
            )));
        }
        Ok(())
    }

    /// Reads `params["validators"]`: `[{"name":"v1","key":"<64 hex>","stake":N}, …]`, already
    /// sorted by key. With `stakes = false` (PBFT) `stake` must be absent.
    pub fn from_params(
        params: &Map<String, Value>,
        stakes: bool,
    ) -> Result<ValidatorSet, ParamsError> {
        let list = match params.get("validators") {
            None => return Err(ParamsError::Missing("validators")),
            Some(Value::Array(list)) => list,
            Some(other) => return Err(bad(format!("{other} is not a list"))),
        };
        let mut validators = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let Value::Object(obj) = item else {
                return Err(bad(format!("[{i}] is not an object")));
            };
            let allowed: &[&str] = if stakes {
                &["name", "key", "stake"]
            } else {
                &["name", "key"]
            };
            if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(bad(format!("[{i}]: key {k:?} is not allowed")));
            }
            let name = match obj.get("name") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(bad(format!("[{i}].name is missing or not a string"))),
            };
            let key = match obj.get("key") {
                Some(Value::String(s)) => {
                    PublicKey::from_hex(s).map_err(|e| bad(format!("[{i}].key ({name}): {e}")))?
                }
                _ => return Err(bad(format!("[{i}].key is missing or not a string"))),
            };
            let stake = if stakes {
                match obj.get("stake") {
                    Some(s) => s
                        .as_u64()
                        .filter(|_| !s.is_f64())
                        .ok_or_else(|| bad(format!("[{i}].stake {s} is not an integer ≥ 1")))?,
                    None => return Err(bad(format!("[{i}].stake ({name}) is missing"))),
                }
            } else {
                1
            };
            validators.push(Validator { name, key, stake });
        }
        let set = ValidatorSet { validators };
        set.check(stakes)?;
        Ok(set)
    }

    /// The genesis form, sorted by key.
    pub fn to_value(&self, stakes: bool) -> Value {
        Value::Array(
            self.validators
                .iter()
                .map(|v| {
                    let mut m = Map::new();
                    m.insert("name".into(), v.name.clone().into());
                    m.insert("key".into(), v.key.to_hex().into());
                    if stakes {
                        m.insert("stake".into(), v.stake.into());
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// Index of `key` in the sorted set.
    pub fn position(&self, key: &PublicKey) -> Option<usize> {
        self.validators
            .binary_search_by(|v| v.key.0.cmp(&key.0))
            .ok()
    }

    /// The validator at `index`.
    pub fn get(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }

    /// The validators in key order.
    pub fn iter(&self) -> impl Iterator<Item = &Validator> {
        self.validators.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Never true (a set has at least one validator); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Sum of stakes (fits: at most 1024 × u64).
    pub fn total_stake(&self) -> u128 {
        self.validators.iter().map(|v| u128::from(v.stake)).sum()
    }
}

/// `--validator NAME=PUBKEY[:STAKE]` as the CLI reads it (stake 1 when absent).
pub fn parse_validator_arg(arg: &str) -> Result<Validator, String> {
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not NAME=PUBKEY[:STAKE]"))?;
    let (key, stake) = match rest.split_once(':') {
        Some((key, stake)) => (
            key,
            stake
                .parse::<u64>()
                .map_err(|_| format!("{arg:?}: stake {stake:?} is not an integer"))?,
        ),
        None => (rest, 1),
    };
    let key = PublicKey::from_hex(key)
        .map_err(|e| format!("{arg:?}: the key is not 64 hex digits ({e})"))?;
    if !crate::ledger::genesis::is_valid_name(name) {
        return Err(format!(
            "{arg:?}: name {name:?} is not 1..=64 characters of A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(Validator {
        name: name.to_owned(),
        key,
        stake,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    fn v(name: &str, b: u8, stake: u64) -> Validator {
        Validator {
            name: name.into(),
            key: key(b),
            stake,
        }
    }

    #[test]
    fn a_set_round_trips_through_its_genesis_form_sorted_by_key() {
        let set = ValidatorSet::new(vec![v("b", 9, 2), v("a", 3, 5)], true).unwrap();
        assert_eq!(set.get(0).unwrap().name, "a");
        assert_eq!(set.total_stake(), 7);
        assert_eq!(set.position(&key(9)), Some(1));
        assert_eq!(set.position(&key(4)), None);
        let mut params = Map::new();
        params.insert("validators".into(), set.to_value(true));
        assert_eq!(ValidatorSet::from_params(&params, true).unwrap(), set);
    }

    #[test]
    fn unsorted_duplicate_zero_stake_and_stray_keys_are_refused() {
        let cases: Vec<(Value, &str)> = vec![
            (
                serde_json::json!([{"name":"b","key":key(9).to_hex(),"stake":1},{"name":"a","key":key(3).to_hex(),"stake":1}]),
                "not sorted",
            ),
            (
                serde_json::json!([{"name":"a","key":key(3).to_hex(),"stake":1},{"name":"a","key":key(4).to_hex(),"stake":1}]),
                "listed twice",
            ),
            (
                serde_json::json!([{"name":"a","key":key(3).to_hex(),"stake":0}]),
                "at least 1",
            ),
            (serde_json::json!([]), "at least one"),
            (
                serde_json::json!([{"name":"a","key":key(3).to_hex()}]),
                "stake (a) is missing",
            ),
        ];
        for (list, needle) in cases {
            let mut params = Map::new();
            params.insert("validators".into(), list);
            let err = ValidatorSet::from_params(&params, true)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err} (wanted {needle})");
        }
        let mut params = Map::new();
        params.insert(
            "validators".into(),
            serde_json::json!([{"name":"a","key":key(3).to_hex(),"stake":1}]),
        );
        let err = ValidatorSet::from_params(&params, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"stake\" is not allowed"), "{err}");
        // `genesis new --consensus pbft --validator a=KEY:5`: the stake would not count.
        let err = ValidatorSet::new(vec![v("a", 3, 1), v("b", 4, 5)], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("b: stake 5 given"), "{err}");
        assert!(ValidatorSet::new(vec![v("a", 3, 1), v("b", 4, 1)], false).is_ok());
    }

    #[test]
    fn validator_arguments_parse_with_and_without_stake() {
        let hex = key(7).to_hex();
        assert_eq!(
            parse_validator_arg(&format!("v1={hex}:30")).unwrap(),
            v("v1", 7, 30)
        );
        assert_eq!(parse_validator_arg(&format!("v1={hex}")).unwrap().stake, 1);
        assert!(parse_validator_arg("v1")
            .unwrap_err()
            .contains("NAME=PUBKEY"));
        assert!(parse_validator_arg(&format!("v1={hex}:x"))
            .unwrap_err()
            .contains("stake"));
        assert!(parse_validator_arg("v1=abcd").unwrap_err().contains("hex"));
    }
}
