//! Proof of work: a fixed difficulty from the genesis, anyone may produce, most cumulative work
//! wins, a block is final under `finality_depth` blocks of the same branch.

use serde_json::{Map, Value};

use super::{
    Consensus, ModeAction, ModeEvent, ModeOptions, ModeState, ModeViolation, ParamsError, View,
    Work,
};
use crate::ledger::block::Header;

/// The mode's name in genesis.json.
pub const MODE: &str = "pow";

/// Highest difficulty a genesis may ask for: 2^40 ≈ 10^12 trials, hours per block on one
/// machine. Beyond that a chain never grows, so every loader refuses it.
pub const MAX_DIFFICULTY: u32 = 40;

/// The difficulty a new genesis gets unless told otherwise (`genesis new`, `up`, `publisher`).
pub const DEFAULT_DIFFICULTY: u32 = 18;

/// Proof of work at a fixed difficulty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pow {
    /// Leading zero bits of every block hash after genesis.
    pub difficulty: u32,
    /// Blocks on top that make a block final.
    pub finality_depth: u64,
}

impl Pow {
    /// Reads `{"mode":"pow","difficulty":D}`; unknown keys are refused.
    pub fn from_params(
        params: &Map<String, Value>,
        finality_depth: u64,
    ) -> Result<Pow, ParamsError> {
        if let Some(key) = params
            .keys()
            .find(|k| !["mode", "difficulty"].contains(&k.as_str()))
        {
            return Err(ParamsError::UnknownKey(key.clone()));
        }
        let difficulty = params
            .get("difficulty")
            .ok_or(ParamsError::Missing("difficulty"))?;
        let difficulty = difficulty
            .as_u64()
            .filter(|_| !difficulty.is_f64())
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| ParamsError::BadValue {
                key: "difficulty",
                reason: format!("{difficulty} is not an integer 0..={MAX_DIFFICULTY}"),
            })?;
        check_difficulty(difficulty)?;
        Ok(Pow {
            difficulty,
            finality_depth,
        })
    }
}

/// `{"mode":"pow","difficulty":D}` for `genesis new`; validators and other settings are refused.
pub fn new_params(options: &ModeOptions) -> Result<Map<String, Value>, ParamsError> {
    if !options.validators.is_empty() {
        return Err(ParamsError::UnknownKey("validators".into()));
    }
    if let Some(key) = options.settings.keys().next() {
        return Err(ParamsError::UnknownKey(key.clone()));
    }
    let mut m = Map::new();
    m.insert("mode".into(), MODE.into());
    m.insert("difficulty".into(), options.difficulty.into());
    Ok(m)
}

/// Refuses a difficulty no machine can meet, saying what it would cost.
pub fn check_difficulty(difficulty: u32) -> Result<(), ParamsError> {
    if difficulty > MAX_DIFFICULTY {
        return Err(ParamsError::BadValue {
            key: "difficulty",
            reason: format!(
                "{difficulty} bits means about 2^{difficulty} = {:.1e} trials per block; \
                 at most {MAX_DIFFICULTY} is allowed (2^{MAX_DIFFICULTY} = {:.1e}, hours on one machine)",
                2f64.powi(difficulty as i32),
                2f64.powi(MAX_DIFFICULTY as i32)
            ),
        });
    }
    Ok(())
}

impl Consensus for Pow {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("mode".into(), MODE.into());
        m.insert("difficulty".into(), self.difficulty.into());
        m
    }

    fn message_tag(&self) -> [u8; 4] {
        // Never used: proof of work sends no mode messages.
        *b"WPW1"
    }

    fn block_keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn difficulty(&self, index: u64) -> u32 {
        if index == 0 {
            0
        } else {
            self.difficulty
        }
    }

    fn seal(&self, consensus: Option<&Map<String, Value>>) -> Result<Vec<u8>, ModeViolation> {
        match consensus {
            None => Ok(Vec::new()),
            Some(_) => Err(ModeViolation::UnexpectedObject {
                key: "consensus",
                mode: MODE,
            }),
        }
    }

    fn check_producer(&self, header: &Header, _parent: &Header) -> Result<(), ModeViolation> {
        if header.certificate.is_some() {
            return Err(ModeViolation::UnexpectedObject {
                key: "certificate",
                mode: MODE,
            });
        }
        Ok(())
    }

    fn weight(&self, header: &Header) -> Work {
        // Expected trials for the work the rules demand (not the luck of this hash); the
        // genesis block is shared by every branch and weighs nothing.
        if header.index == 0 {
            0
        } else {
            1u128 << self.difficulty(header.index).min(127)
        }
    }

    fn is_final(&self, _header: &Header, confirmations: u64) -> bool {
        confirmations >= self.finality_depth
    }

    fn on_event(
        &self,
        _state: &mut ModeState,
        view: &View<'_>,
        _event: &ModeEvent<'_>,
    ) -> Vec<ModeAction> {
        // Mine on the best head whenever there is something to commit, until the last
        // committed records have `finality_depth` blocks on top (empty blocks if need be), and
        // while two branches tie (first seen keeps each node where it is; the next block ends it).
        if view.pending > 0 || view.unfinal || view.contested {
            vec![ModeAction::Produce {
                parent: view.head.hash,
                consensus: None,
            }]
        } else {
            Vec::new()
        }
    }
}
