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
//!    `from_params(params, finality_depth, chain_id)` constructor that refuses unknown keys.
//! 2. Add its name to [`MODES`], [`from_params`] and [`new_params`] (what `genesis new` and
//!    `up` write), and its per-node state to [`ModeState`].
//! 3. Seal bytes: hash-covered fields of the block's `consensus` object (e.g. `round`, `view`)
//!    go through [`Consensus::seal`]; proofs that cannot be inside the hash (a PBFT commit
//!    certificate) go in the block's `certificate` object, checked by
//!    [`Consensus::check_producer`].
//! 4. Messages ([`ModeAction::Broadcast`], [`ModeEvent::Message`]) are JSON objects; the node
//!    engine carries them on `{root}/ledger/{mode}` in a signed envelope (chain id, sender key,
//!    ed25519 over [`message_sign_bytes`] under the mode's own tag [`Consensus::message_tag`],
//!    never `WCS1`) and hands the mode only messages whose signature verified.
//!
//! Nothing else changes: encoding, store, sync and the cabinets' light client call the trait.

pub mod pbft;
pub mod pos;
pub mod pow;
pub mod validators;

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::block::{Block, Header};
use super::encoding::{Hash32, PublicKey, SignatureBytes};
pub use validators::{parse_validator_arg, Validator, ValidatorSet};

/// The modes this code knows, as genesis.json names them.
pub const MODES: &[&str] = &[pow::MODE, pos::MODE, pbft::MODE];

/// The modes that exchange signed messages on `{root}/ledger/{mode}` (a node subscribes to
/// each and ignores those of another mode than its genesis').
pub const MESSAGE_MODES: &[&str] = &[pos::MODE, pbft::MODE];

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
    #[error("consensus.mode {0:?} is not one of: {modes}", modes = MODES.join(", "))]
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
    /// Whether a peer heard recently announces a head with more weight than ours (this node
    /// is catching up; its claim is not verified).
    pub behind: bool,
    /// This node's public key.
    pub me: &'a PublicKey,
    /// The engine's clock, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The chain rules for a block proposed on `head` (link, hash, signature, time, records),
    /// leader and certificate aside: what a replica checks before it votes.
    pub check: Checker<'a>,
}

/// The engine's check of a proposal (see [`View::check`]).
#[derive(Clone, Copy)]
pub struct Checker<'a>(pub &'a dyn Fn(&Block) -> Result<(), String>);

impl fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checker")
    }
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
    /// A consensus message (this node's own broadcasts come back too, through the broker):
    /// the engine checked its chain id and its signature by `from`; whether `from` is a
    /// validator is the mode's check.
    Message {
        /// The verified signer.
        from: &'a PublicKey,
        /// The message body.
        payload: &'a Map<String, Value>,
        /// The signature (a PBFT vote goes into certificates as it is).
        sig: &'a SignatureBytes,
    },
    /// The block asked for with [`ModeAction::Produce`], built and signed, when the mode
    /// [`proposes`](Consensus::proposes) blocks instead of appending them.
    Produced {
        /// The block.
        block: &'a Block,
    },
    /// A valid block joined the block tree (main chain or side branch; from the bus or sync).
    /// A mode may only note it here (equivocation evidence): [`ModeAction::Produce`] answering
    /// this event is ignored.
    Block {
        /// Its header.
        header: &'a Header,
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
    /// Deliver [`ModeEvent::Timer`] at this time (milliseconds since the epoch). The engine
    /// keeps one mode timer, the earliest asked for: a later request for an earlier time
    /// replaces it, one for a later time is dropped (every event asks the mode again, so a mode
    /// re-asks after each wake-up).
    SetTimer {
        /// When.
        at_ms: u64,
    },
    /// Send a consensus message (its body) to every node, this one included; the engine signs
    /// it with the node key.
    Broadcast(Map<String, Value>),
    /// Append this block (it carries its proof, e.g. a commit certificate) to the main chain
    /// and publish it.
    Append(Box<Block>),
}

/// A mode's per-node engine state (votes, round, view); none for pow.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ModeState {
    /// Proof of work keeps no state of its own: the engine's mining is the whole protocol.
    #[default]
    Pow,
    /// Proof of stake: the round schedule, the slots signed, equivocation evidence.
    Pos(Box<pos::PosState>),
    /// PBFT: the replica (view, votes sent and received, prepared certificate, timers).
    Pbft(Box<pbft::replica::Replica>),
}

/// The rules and the protocol of one consensus mode.
pub trait Consensus: Send + Sync + fmt::Debug {
    /// The mode's name in genesis.json (`pow`).
    fn mode(&self) -> &'static str;

    /// The genesis `consensus` object this mode was built from (for writing genesis.json).
    fn params(&self) -> Map<String, Value>;

    /// The 4-byte domain tag of this mode's signed messages (pow sends none).
    fn message_tag(&self) -> [u8; 4];

    /// Which of the optional block keys `consensus` and `certificate` this mode's blocks carry
    /// (pow: none). A block with another is refused at parse time, like an unknown key.
    fn block_keys(&self) -> &'static [&'static str];

    /// The difficulty (leading zero bits) the rules require of a block at `index`.
    fn difficulty(&self, index: u64) -> u32;

    /// The seal bytes of a block's `consensus` object (pow: it must be absent; empty seal).
    fn seal(&self, consensus: Option<&Map<String, Value>>) -> Result<Vec<u8>, ModeViolation>;

    /// Step 9 of the validity rules: may this producer make this block on `parent`
    /// (leader eligibility, certificate)? The header carries the block's `consensus` and
    /// `certificate` objects. Pow: anyone; no certificate allowed.
    fn check_producer(&self, header: &Header, parent: &Header) -> Result<(), ModeViolation>;

    /// The weight `header` adds to its branch (fork choice: most cumulative weight).
    fn weight(&self, header: &Header) -> Work;

    /// Whether a block with `confirmations` blocks on top of it on the best branch (and its
    /// own `header`, for a certificate) is final: its windows may leave the cabinets' outboxes.
    fn is_final(&self, header: &Header, confirmations: u64) -> bool;

    /// The engine side: what to do after `event`, given the chain as `view` shows it.
    /// Whether a produced block is handed back to the mode ([`ModeEvent::Produced`]) as a
    /// proposal instead of joining the chain (PBFT: only certified blocks join it).
    fn proposes(&self) -> bool {
        false
    }

    /// Whether this node's consensus messages must be journaled durably before they are sent
    /// (PBFT votes: a restarted replica must not vote two ways), and replayed at start.
    fn journals(&self) -> bool {
        false
    }

    fn on_event(
        &self,
        state: &mut ModeState,
        view: &View<'_>,
        event: &ModeEvent<'_>,
    ) -> Vec<ModeAction>;
}

/// The mode a genesis `consensus` object names, with its parameters checked. `chain_id` is the
/// genesis' id (modes that verify signatures inside blocks need it).
pub fn from_params(
    params: &Map<String, Value>,
    finality_depth: u64,
    chain_id: Hash32,
) -> Result<Arc<dyn Consensus>, ParamsError> {
    match params.get("mode") {
        Some(Value::String(mode)) if mode == pow::MODE => {
            Ok(Arc::new(pow::Pow::from_params(params, finality_depth)?))
        }
        Some(Value::String(mode)) if mode == pos::MODE => Ok(Arc::new(pos::Pos::from_params(
            params,
            finality_depth,
            chain_id,
        )?)),
        Some(Value::String(mode)) if mode == pbft::MODE => {
            Ok(Arc::new(pbft::Pbft::from_params(params, &chain_id)?))
        }
        Some(Value::String(mode)) => Err(ParamsError::UnknownMode(mode.clone())),
        Some(other) => Err(ParamsError::UnknownMode(other.to_string())),
        None => Err(ParamsError::Missing("mode")),
    }
}

/// What `genesis new` and `up` know when they write a genesis: each mode takes what it uses and
/// refuses settings that are not its own.
#[derive(Debug, Clone, Default)]
pub struct ModeOptions {
    /// Proof of work: leading zero bits.
    pub difficulty: u32,
    /// Proof of stake, PBFT: the validators (any order; sorted by the mode).
    pub validators: Vec<Validator>,
    /// Mode-specific settings in genesis form (e.g. `block_interval_ms`), only those given.
    pub settings: Map<String, Value>,
}

/// Durations given on the command line or in `wattchain.toml`, in genesis form: each present
/// one as `{key}` in whole milliseconds (e.g. `("block_interval_ms", Some(1s))` → 1000).
pub fn duration_settings(pairs: &[(&str, Option<std::time::Duration>)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter_map(|(key, d)| d.map(|d| ((*key).to_owned(), Value::from(d.as_millis() as u64))))
        .collect()
}

/// The genesis `consensus` object of `mode` from the command line's options (checked by the
/// mode's `from_params` when the genesis is built).
pub fn new_params(mode: &str, options: &ModeOptions) -> Result<Map<String, Value>, ParamsError> {
    match mode {
        pow::MODE => pow::new_params(options),
        pos::MODE => pos::new_params(options),
        pbft::MODE => pbft::new_params(options),
        other => Err(ParamsError::UnknownMode(other.to_owned())),
    }
}

/// The bytes a mode message's signature covers: `tag || chain id || canonical_json(body)`.
pub fn message_sign_bytes(tag: [u8; 4], chain_id: &Hash32, body: &Map<String, Value>) -> Vec<u8> {
    let json = super::genesis::canonical_json(&Value::Object(body.clone()));
    let mut out = Vec::with_capacity(36 + json.len());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&chain_id.0);
    out.extend_from_slice(json.as_bytes());
    out
}
