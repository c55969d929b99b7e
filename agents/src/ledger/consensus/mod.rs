//! Consensus modes behind one small trait, [`Consensus`]: everything that differs between
//! proof of work, proof of stake and PBFT, and nothing else.
//!
//! The trait has two sides. The **pure side** is what every verifier needs — the node's block
//! tree, a cabinet's light client, `wattchain chain verify` — and depends on nothing but the
//! block encoding: the mode's genesis parameters, the difficulty at a height, the seal bytes
//! of a block's `consensus` object, the producer/leader/certificate rule (step 9 of the
//! validity rules), the weight a block adds to its branch (fork choice: most weight wins,
//! first seen on ties) and finality. The **engine side** ([`Consensus::on_event`]) tells the
//! node engine when to produce a block, which timers to set and which consensus messages to
//! send; it sees the chain only through a [`View`] and keeps its per-node state in a
//! [`ModeState`], so it is as sans-IO as the engine.
//!
//! # How a mode plugs in
//!
//! 1. Add `pos.rs` (or `pbft.rs`) here with a type implementing [`Consensus`] and a
//!    `from_params(params, finality_depth)` constructor that refuses unknown keys.
//! 2. Add its name to [`from_params`] and its per-node state to [`ModeState`].
//! 3. Seal bytes: hash-covered fields of the block's `consensus` object (e.g. `round`, `view`)
//!    go through [`Consensus::seal`]; proofs that cannot be inside the hash (a PBFT commit
//!    certificate) go in the block's `certificate` object, checked by
//!    [`Consensus::check_producer`].
//! 4. Messages ([`ModeAction::Broadcast`], [`ModeEvent::Message`]) are JSON objects; the node
//!    carries them on `{root}/ledger/{mode}/…`, each with the chain id, signed with the node key
//!    under the mode's own 4-byte tag (never `WCS1`).
//!
//! Nothing else changes: encoding, store, sync and the cabinets' light client call the trait.

pub mod pbft;
pub mod pow;
pub mod validators;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::block::Header;
use super::encoding::{Hash32, PublicKey};

/// Cumulative weight of a branch (pow: expected hashes, Σ 2^difficulty).
pub type Work = u128;

/// Why a block breaks its mode's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeViolation {
    /// A key the mode does not use is present in the block (e.g. `consensus` under pow).
    #[error("`{key}` is not allowed under {mode}")]
    UnexpectedObject {
        /// `consensus` or `certificate`.
        key: &'static str,
        /// The genesis mode.
        mode: &'static str,
    },
    /// A mode-specific rule (leader eligibility, certificate) failed.
    #[error("{0}")]
    Rule(String),
}

/// Why a genesis `consensus` object is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// `mode` is missing or not a known mode.
    #[error("consensus.mode {0:?} is not one of: pow")]
    UnknownMode(String),
    /// A required key is absent.
    #[error("consensus.{0} is missing")]
    Missing(&'static str),
    /// A key the mode does not know.
    #[error("consensus.{0} is not a key of this mode")]
    UnknownKey(String),
    /// A value outside its rule.
    #[error("consensus.{key}: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// What is wrong, with the allowed range.
        reason: String,
    },
}

/// What the engine tells a mode about the chain when something happens.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The node's best head.
    pub head: &'a Header,
    /// Records ready to be committed (assembled, not on the main chain).
    pub pending: usize,
    /// Whether some record on the main chain is not final yet.
    pub unfinal: bool,
    /// Whether a peer announces another head with as much weight as ours (a tie that only a
    /// new block breaks).
    pub contested: bool,
    /// This node's public key.
    pub me: &'a PublicKey,
    /// The engine's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// What happened, from a mode's point of view.
#[derive(Debug, Clone, Copy)]
pub enum ModeEvent<'a> {
    /// The best head changed (a block was mined, received or synced; a reorg).
    Head,
    /// Records became ready (or were returned by a reorg).
    Ready,
    /// A timer the mode asked for fired.
    Timer,
    /// A consensus message from another node (already checked for the chain id).
    Message {
        /// The sending node's id as it claims it (authenticate by signature, never by this).
        from: &'a str,
        /// The message object.
        payload: &'a Map<String, Value>,
    },
}

/// What a mode asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ModeAction {
    /// Build a block on `parent` with the ready records and this `consensus` object, seal it
    /// (pow: mine it; other modes mine at difficulty 0, i.e. nonce 0) and sign it.
    Produce {
        /// The block to build on.
        parent: Hash32,
        /// The block's `consensus` object (absent under pow).
        consensus: Option<Map<String, Value>>,
    },
    /// Deliver [`ModeEvent::Timer`] at this time (milliseconds since the epoch).
    SetTimer {
        /// When.
        at_ms: u64,
    },
    /// Send a consensus message to every node.
    Broadcast(Map<String, Value>),
}

/// A mode's per-node engine state (votes, round, view); none for pow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ModeState {
    /// Proof of work keeps no state of its own: the engine's mining is the whole protocol.
    #[default]
    Pow,
}

/// The rules and the protocol of one consensus mode.
pub trait Consensus: Send + Sync + fmt::Debug {
    /// The mode's name in genesis.json (`pow`).
    fn mode(&self) -> &'static str;

    /// The genesis `consensus` object this mode was built from (for writing genesis.json).
    fn params(&self) -> Map<String, Value>;

    /// Which of the optional block keys `consensus` and `certificate` this mode's blocks carry
    /// (pow: none). A block with another is refused at parse time, like an unknown key.
    fn block_keys(&self) -> &'static [&'static str];

    /// The difficulty (leading zero bits) the rules require of a block at `index`.
    fn difficulty(&self, index: u64) -> u32;

    /// The seal bytes of a block's `consensus` object (pow: it must be absent; empty seal).
    fn seal(&self, consensus: Option<&Map<String, Value>>) -> Result<Vec<u8>, ModeViolation>;

    /// Step 9 of the validity rules: may this producer make this block on `parent`
    /// (leader eligibility, certificate)? Pow: anyone; no certificate allowed.
    fn check_producer(&self, header: &Header, parent: &Header) -> Result<(), ModeViolation>;

    /// The weight `header` adds to its branch (fork choice: most cumulative weight).
    fn weight(&self, header: &Header) -> Work;

    /// Whether a block with `confirmations` blocks on top of it on the best branch (and its
    /// own `header`, for a certificate) is final: its windows may leave the cabinets' outboxes.
    fn is_final(&self, header: &Header, confirmations: u64) -> bool;

    /// The engine side: what to do after `event`, given the chain as `view` shows it.
    fn on_event(
        &self,
        state: &mut ModeState,
        view: &View<'_>,
        event: &ModeEvent<'_>,
    ) -> Vec<ModeAction>;
}

/// The mode a genesis `consensus` object names, with its parameters checked.
pub fn from_params(
    params: &Map<String, Value>,
    finality_depth: u64,
) -> Result<Arc<dyn Consensus>, ParamsError> {
    match params.get("mode") {
        Some(Value::String(mode)) if mode == pow::MODE => {
            Ok(Arc::new(pow::Pow::from_params(params, finality_depth)?))
        }
        Some(Value::String(mode)) => Err(ParamsError::UnknownMode(mode.clone())),
        Some(other) => Err(ParamsError::UnknownMode(other.to_string())),
        None => Err(ParamsError::Missing("mode")),
    }
}
