//! The validator set of a genesis (pos, pbft): names, ed25519 keys and stakes, sorted by key.
//!
//! Interface of `/work/notes/consensus-seam.md` §1 (the pos branch owns this file; this copy
//! lets the pbft core compile until the groundwork is merged).

use serde_json::{Map, Value};

use super::ParamsError;
use crate::ledger::encoding::PublicKey;
use crate::ledger::genesis::is_valid_name;

/// One validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// Display name.
    pub name: String,
    /// Its ed25519 key.
    pub key: PublicKey,
    /// Its stake (1 when stakes are not used).
    pub stake: u64,
}

/// Validators sorted by key bytes ascending, names and keys unique, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Reads `params["validators"]`; `stakes = false`: "stake" must be absent.
    pub fn from_params(
        params: &Map<String, Value>,
        stakes: bool,
    ) -> Result<ValidatorSet, ParamsError> {
        let bad = |reason: String| ParamsError::BadValue {
            key: "validators",
            reason,
        };
        let list = params
            .get("validators")
            .ok_or(ParamsError::Missing("validators"))?
            .as_array()
            .ok_or_else(|| bad("not an array".into()))?;
        let mut validators = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let obj = item
                .as_object()
                .ok_or_else(|| bad(format!("[{i}] is not an object")))?;
            let allowed: &[&str] = if stakes {
                &["name", "key", "stake"]
            } else {
                &["name", "key"]
            };
            if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(bad(format!("[{i}].{k} is not a key of a validator")));
            }
            let name = obj
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| is_valid_name(n))
                .ok_or_else(|| bad(format!("[{i}].name is not 1..=64 of A-Z a-z 0-9 . _ -")))?;
            let key = obj
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("[{i}].key is missing")))
                .and_then(|k| PublicKey::from_hex(k).map_err(|e| bad(format!("[{i}].key: {e}"))))?;
            let stake = if stakes {
                obj.get("stake")
                    .and_then(Value::as_u64)
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| bad(format!("[{i}].stake is not an integer ≥ 1")))?
            } else {
                1
            };
            validators.push(Validator {
                name: name.to_owned(),
                key,
                stake,
            });
        }
        if validators.is_empty() {
            return Err(bad("at least one validator is needed".into()));
        }
        for pair in validators.windows(2) {
            if pair[0].key >= pair[1].key {
                return Err(bad(format!(
                    "not sorted by key (ascending, unique): {} before {}",
                    pair[0].key.short(),
                    pair[1].key.short()
                )));
            }
        }
        let mut names: Vec<&str> = validators.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|p| p[0] == p[1]) {
            return Err(bad(format!("name {} appears twice", pair[0])));
        }
        Ok(ValidatorSet { validators })
    }

    /// The `validators` array as genesis.json holds it.
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

    /// Position of `key` in the sorted set.
    pub fn position(&self, key: &PublicKey) -> Option<usize> {
        self.validators.binary_search_by(|v| v.key.cmp(key)).ok()
    }

    /// The validator at `index`.
    pub fn get(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }

    /// All validators, by key.
    pub fn iter(&self) -> impl Iterator<Item = &Validator> {
        self.validators.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Never: a set has at least one validator.
    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Sum of the stakes.
    pub fn total_stake(&self) -> u128 {
        self.validators.iter().map(|v| u128::from(v.stake)).sum()
    }
}

/// `--validator NAME=PUBKEY[:STAKE]` as the CLI reads it.
pub fn parse_validator_arg(arg: &str) -> Result<Validator, String> {
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not NAME=PUBKEY[:STAKE]"))?;
    if !is_valid_name(name) {
        return Err(format!(
            "validator name {name:?} is not 1..=64 of A-Z a-z 0-9 . _ -"
        ));
    }
    let (key, stake) = match rest.split_once(':') {
        Some((k, s)) => (
            k,
            s.parse::<u64>()
                .ok()
                .filter(|s| *s >= 1)
                .ok_or_else(|| format!("stake {s:?} is not an integer ≥ 1"))?,
        ),
        None => (rest, 1),
    };
    let key = PublicKey::from_hex(key).map_err(|e| format!("validator {name}: {e}"))?;
    Ok(Validator {
        name: name.to_owned(),
        key,
        stake,
    })
}
