//! Proof of stake: validators with stakes in the genesis; the leader of each (height, round) is
//! drawn from a seed fixed by the genesis and the stakes (integer arithmetic only), signs its
//! block, and is skipped after its round's timeout; most blocks win (lower rounds first);
//! a block is final under `finality_depth` blocks by rightful leaders; two signed blocks for
//! one (height, round) are evidence that excludes their producer from leadership.
//! The rules are in topics.md, "Proof of stake".

mod block;
mod state;

pub use block::{Evidence, PosBlock, MAX_EVIDENCE, MAX_ROUND};
pub use state::PosState;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::validators::{Validator, ValidatorSet};
use super::{
    Consensus, ModeAction, ModeEvent, ModeOptions, ModeState, ModeViolation, ParamsError, View,
    Work,
};
use crate::ledger::block::Header;
use crate::ledger::encoding::{Hash32, PublicKey};
use crate::ledger::keys::verify_block;

/// The mode's name in genesis.json.
pub const MODE: &str = "pos";

/// Domain tag of the leader seed.
pub const SEED_TAG: &[u8; 4] = b"WPL1";

/// Domain tag of proof-of-stake messages.
pub const MESSAGE_TAG: [u8; 4] = *b"WPS1";

/// Block interval a new genesis gets unless told otherwise.
pub const DEFAULT_BLOCK_INTERVAL_MS: u64 = 1_000;

/// Round-0 timeout a new genesis gets unless told otherwise.
pub const DEFAULT_ROUND_TIMEOUT_MS: u64 = 2_000;

/// Longest block interval or round timeout a genesis may set (one hour).
pub const MAX_DURATION_MS: u64 = 3_600_000;

const KEYS: [&str; 5] = [
    "mode",
    "validators",
    "block_interval_ms",
    "round_timeout_ms",
    "exclude_equivocators",
];

/// Proof of stake under one genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The validators and their stakes.
    pub validators: ValidatorSet,
    /// Least time between a block and the next (round 0 of the next height starts then).
    pub block_interval_ms: u64,
    /// Timeout of round 0; round r lasts `round_timeout_ms × 2^r`.
    pub round_timeout_ms: u64,
    /// Whether a validator recorded as an equivocator leads no more.
    pub exclude_equivocators: bool,
    /// Blocks on top that make a block final.
    pub finality_depth: u64,
    /// The genesis id (the seed and every signature are bound to it).
    pub chain_id: Hash32,
}

fn duration(params: &Map<String, Value>, key: &'static str, min: u64) -> Result<u64, ParamsError> {
    let v = params.get(key).ok_or(ParamsError::Missing(key))?;
    v.as_u64()
        .filter(|d| !v.is_f64() && (min..=MAX_DURATION_MS).contains(d))
        .ok_or_else(|| ParamsError::BadValue {
            key,
            reason: format!("{v} is not an integer {min}..={MAX_DURATION_MS} (milliseconds)"),
        })
}

/// The genesis `consensus` object for `genesis new` and `up`: the validators with their stakes,
/// `block_interval_ms` and `round_timeout_ms` when given (defaults otherwise), exclusion on.
pub fn new_params(options: &ModeOptions) -> Result<Map<String, Value>, ParamsError> {
    let set = ValidatorSet::new(options.validators.clone(), true)?;
    let mut m = Map::new();
    m.insert("mode".into(), MODE.into());
    m.insert("validators".into(), set.to_value(true));
    m.insert("block_interval_ms".into(), DEFAULT_BLOCK_INTERVAL_MS.into());
    m.insert("round_timeout_ms".into(), DEFAULT_ROUND_TIMEOUT_MS.into());
    m.insert("exclude_equivocators".into(), true.into());
    for (k, v) in &options.settings {
        if !KEYS[2..].contains(&k.as_str()) {
            return Err(ParamsError::UnknownKey(k.clone()));
        }
        m.insert(k.clone(), v.clone());
    }
    Ok(m)
}

impl Pos {
    /// Reads `{"mode":"pos","validators":[…],"block_interval_ms":B,"round_timeout_ms":T,
    /// "exclude_equivocators":true|false}`; unknown keys are refused.
    pub fn from_params(
        params: &Map<String, Value>,
        finality_depth: u64,
        chain_id: Hash32,
    ) -> Result<Pos, ParamsError> {
        if let Some(key) = params.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ParamsError::UnknownKey(key.clone()));
        }
        let validators = ValidatorSet::from_params(params, true)?;
        let exclude_equivocators = match params.get("exclude_equivocators") {
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ParamsError::BadValue {
                    key: "exclude_equivocators",
                    reason: format!("{other} is not true or false"),
                })
            }
            None => return Err(ParamsError::Missing("exclude_equivocators")),
        };
        Ok(Pos {
            validators,
            block_interval_ms: duration(params, "block_interval_ms", 1)?,
            round_timeout_ms: duration(params, "round_timeout_ms", 10)?,
            exclude_equivocators,
            finality_depth,
            chain_id,
        })
    }

    /// The leader seed of (height, round): `SHA-256("WPL1" || chain id || u64 height ||
    /// u32 round)`, big-endian integers.
    pub fn seed(&self, height: u64, round: u32) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(SEED_TAG);
        h.update(self.chain_id.0);
        h.update(height.to_be_bytes());
        h.update(round.to_be_bytes());
        h.finalize().into()
    }

    /// The rightful leader of (height, round) when `offenders` are recorded on the parent:
    /// `r = u128(first 16 seed bytes, big-endian) mod S` over the eligible validators (all
    /// but the offenders when they are excluded; all if none would remain) in key order with
    /// total stake S; the first whose running stake sum exceeds r.
    pub fn leader(&self, height: u64, round: u32, offenders: &[PublicKey]) -> &Validator {
        let excluded = |v: &Validator| self.exclude_equivocators && offenders.contains(&v.key);
        let any_left = self.validators.iter().any(|v| !excluded(v));
        let eligible = || {
            self.validators
                .iter()
                .filter(move |v| !any_left || !excluded(v))
        };
        let total: u128 = eligible().map(|v| u128::from(v.stake)).sum();
        let seed = self.seed(height, round);
        let mut first = [0u8; 16];
        first.copy_from_slice(&seed[..16]);
        let r = u128::from_be_bytes(first) % total;
        let mut sum = 0u128;
        for v in eligible() {
            sum += u128::from(v.stake);
            if sum > r {
                return v;
            }
        }
        unreachable_leader(&self.validators)
    }

    /// When round `round` of a height starts, after the earliest time of its round 0:
    /// `round_timeout × (2^round − 1)` milliseconds (each round twice as long as the last).
    pub fn round_offset(&self, round: u32) -> u64 {
        let factor = (1u64 << round.min(MAX_ROUND)) - 1;
        self.round_timeout_ms.saturating_mul(factor)
    }

    /// The earliest timestamp a round-`round` block on `parent` may have:
    /// `parent.timestamp + block_interval + round_offset(round)`.
    pub fn earliest(&self, parent: &Header, round: u32) -> u64 {
        parent
            .timestamp
            .millis()
            .saturating_add(self.block_interval_ms)
            .saturating_add(self.round_offset(round))
    }

    /// The round in progress `elapsed` ms after round 0 started.
    pub fn round_at(&self, elapsed: u64) -> u32 {
        (0..MAX_ROUND)
            .take_while(|r| self.round_offset(r + 1) <= elapsed)
            .count() as u32
    }

    /// The offenders recorded up to `header` (none at genesis; an unparseable object has none).
    pub fn offenders_of(&self, header: &Header) -> Vec<PublicKey> {
        header
            .consensus
            .as_ref()
            .and_then(|c| PosBlock::parse(c).ok())
            .map(|b| b.offenders)
            .unwrap_or_default()
    }

    /// Checks evidence offline: two headers of one height and round, by one validator, with
    /// different hashes (lower first), each hash recomputed and each signature valid for this
    /// chain. Returns the offender.
    pub fn check_evidence(&self, e: &Evidence) -> Result<PublicKey, String> {
        let (a, b) = (&e.a, &e.b);
        if a.index != b.index || a.index == 0 {
            return Err("evidence headers are not of one height".into());
        }
        if a.producer != b.producer {
            return Err("evidence headers have different producers".into());
        }
        if a.hash.0 >= b.hash.0 {
            return Err("evidence headers are not two distinct hashes, lower first".into());
        }
        if self.validators.position(&a.producer).is_none() {
            return Err(format!("evidence names {}, not a validator", a.producer));
        }
        let mut rounds = [0u32; 2];
        for (i, h) in [a, b].into_iter().enumerate() {
            let obj = h
                .consensus
                .as_ref()
                .ok_or("an evidence header has no consensus object")?;
            rounds[i] = PosBlock::parse(obj)?.round;
            if h.computed_hash(&PosBlock::seal(obj)) != h.hash {
                return Err("an evidence header's hash does not match its fields".into());
            }
            if !verify_block(&self.chain_id, &h.hash, &h.producer, &h.signature) {
                return Err("an evidence header's signature does not verify".into());
            }
        }
        if rounds[0] != rounds[1] {
            return Err("evidence headers are of different rounds".into());
        }
        Ok(a.producer)
    }

    /// Step 9 under proof of stake, as a sentence on failure.
    fn check(&self, header: &Header, parent: &Header) -> Result<(), String> {
        if header.certificate.is_some() {
            return Err("certificate is not used under pos".into());
        }
        let obj = header
            .consensus
            .as_ref()
            .ok_or("a pos block needs a consensus object")?;
        let block = PosBlock::parse(obj)?;
        let before = self.offenders_of(parent);
        let mut after = before.clone();
        for (i, e) in block.evidence.iter().enumerate() {
            let offender = self
                .check_evidence(e)
                .map_err(|why| format!("evidence #{i}: {why}"))?;
            if after.contains(&offender) {
                return Err(format!(
                    "evidence #{i}: {} is already recorded",
                    offender.short()
                ));
            }
            after.push(offender);
        }
        after.sort_by_key(|k| k.0);
        if block.offenders != after {
            return Err(format!(
                "offenders {} are not the parent's plus this block's evidence ({} expected)",
                block.offenders.len(),
                after.len()
            ));
        }
        let leader = self.leader(header.index, block.round, &before);
        if leader.key != header.producer {
            return Err(format!(
                "producer {} is not the leader of height {} round {} ({} is)",
                header.producer.short(),
                header.index,
                block.round,
                leader.name
            ));
        }
        let earliest = self.earliest(parent, block.round);
        if header.timestamp.millis() < earliest {
            return Err(format!(
                "round {} block at {} ms, before its round starts: parent time + {} ms interval + {} ms of earlier rounds",
                block.round,
                header.timestamp.millis(),
                self.block_interval_ms,
                self.round_offset(block.round)
            ));
        }
        Ok(())
    }
}

/// The prefix sum always ends above r (r < total): this is never reached.
#[cold]
fn unreachable_leader(set: &ValidatorSet) -> &Validator {
    set.get(set.len() - 1)
        .unwrap_or_else(|| unreachable!("a set is never empty"))
}

impl Consensus for Pos {
    fn mode(&self) -> &'static str {
        MODE
    }

    fn params(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("mode".into(), MODE.into());
        m.insert("validators".into(), self.validators.to_value(true));
        m.insert("block_interval_ms".into(), self.block_interval_ms.into());
        m.insert("round_timeout_ms".into(), self.round_timeout_ms.into());
        m.insert(
            "exclude_equivocators".into(),
            self.exclude_equivocators.into(),
        );
        m
    }

    fn message_tag(&self) -> [u8; 4] {
        MESSAGE_TAG
    }

    fn block_keys(&self) -> &'static [&'static str] {
        &["consensus"]
    }

    fn difficulty(&self, _index: u64) -> u32 {
        0
    }

    fn seal(&self, consensus: Option<&Map<String, Value>>) -> Result<Vec<u8>, ModeViolation> {
        let obj = consensus
            .ok_or_else(|| ModeViolation::Rule("a pos block needs a consensus object".into()))?;
        PosBlock::parse(obj).map_err(ModeViolation::Rule)?;
        Ok(PosBlock::seal(obj))
    }

    fn check_producer(&self, header: &Header, parent: &Header) -> Result<(), ModeViolation> {
        self.check(header, parent).map_err(ModeViolation::Rule)
    }

    fn weight(&self, header: &Header) -> Work {
        // One per block, lower rounds a little more: most blocks win, and at equal length the
        // branch whose leaders were skipped less often.
        if header.index == 0 {
            return 0;
        }
        let round = header
            .consensus
            .as_ref()
            .and_then(|c| c.get("round"))
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(MAX_ROUND));
        (1u128 << 32) - u128::from(round)
    }

    fn is_final(&self, _header: &Header, confirmations: u64) -> bool {
        confirmations >= self.finality_depth
    }

    fn on_event(
        &self,
        state: &mut ModeState,
        view: &View<'_>,
        event: &ModeEvent<'_>,
    ) -> Vec<ModeAction> {
        if !matches!(state, ModeState::Pos(_)) {
            *state = ModeState::Pos(Box::default());
        }
        match state {
            ModeState::Pos(s) => s.on_event(self, view, event),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
