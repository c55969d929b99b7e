//! The chain rules — a block against its parent under a genesis — written once and used by the
//! node's block tree, the cabinets' light client and `wattchain chain verify`.
//!
//! The checks run in the order of the ledger spec ("Validity of a chain file"), so the first
//! failing one is the reported reason everywhere. [`check_header`] is what a light client can
//! check without the records (steps 2 and 4–10); [`check_block`] adds the records (11–13).

use std::collections::HashSet;
use std::fmt;

use super::block::{Block, Header};
use super::consensus::ModeViolation;
use super::encoding::Hash32;
use super::genesis::Genesis;
use super::keys::verify_block;
use super::record::RecordProblem;
use super::timestamp::Timestamp;

/// Why a block (or a line of the chain file) is invalid; checked in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The chain file holds no block at all.
    Empty,
    /// The last line has no newline and does not parse: a write interrupted by a crash.
    TornLine,
    /// The line is not a block (bad JSON, missing or unknown field, bad hex or timestamp).
    Unparseable(String),
    /// `index` is not its parent's plus one (the line's position in a chain file).
    IndexOutOfSequence {
        /// Index this position requires.
        expected: u64,
        /// Index the block states.
        found: u64,
    },
    /// Block 0 is not the block derived from the genesis document.
    NotGenesis {
        /// Hash of the derived genesis block.
        expected: Hash32,
        /// Hash the block states.
        found: Hash32,
    },
    /// `previous_hash` is not the parent's hash.
    BrokenLink {
        /// Hash the link must name.
        expected: Hash32,
        /// Hash it names.
        found: Hash32,
    },
    /// `hash` is not the SHA-256 of the block's header.
    HashMismatch {
        /// Hash written in the block.
        stored: Hash32,
        /// Hash of the block's fields.
        computed: Hash32,
    },
    /// `difficulty` is not what the genesis rules require at this height.
    WrongDifficulty {
        /// What the rules require.
        required: u32,
        /// What the block states.
        found: u32,
    },
    /// The hash has fewer leading zero bits than the difficulty.
    InsufficientWork {
        /// Required leading zero bits.
        difficulty: u32,
        /// Leading zero bits of the hash.
        leading_zeros: u32,
    },
    /// The signature does not verify for the producer over the block's sign-bytes.
    BadSignature,
    /// A rule of the consensus mode (an object it does not allow, leader, certificate).
    Mode(ModeViolation),
    /// The block is older than its parent.
    TimestampWentBack {
        /// The parent's time.
        previous: Timestamp,
        /// This block's time.
        found: Timestamp,
    },
    /// More records than the genesis allows.
    RecordCount {
        /// Records in the block.
        count: usize,
        /// The genesis limit.
        max: usize,
    },
    /// A record breaks a field rule.
    BadRecord {
        /// Position of the record in the block.
        position: usize,
        /// The rule it breaks.
        problem: RecordProblem,
    },
    /// A window is committed twice on one branch (in an earlier block, or twice in this one).
    DuplicateWindow {
        /// Cabinet id.
        cabinet: String,
        /// Window id.
        window: u64,
        /// Index of the block that committed it first.
        first_block: u64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Empty => write!(f, "empty chain: no genesis block"),
            Violation::TornLine => write!(f, "torn last line (no newline, not a block)"),
            Violation::Unparseable(why) => write!(f, "not a block: {why}"),
            Violation::IndexOutOfSequence { expected, found } => {
                write!(
                    f,
                    "index out of sequence: expected {expected}, found {found}"
                )
            }
            Violation::NotGenesis { expected, found } => write!(
                f,
                "not the genesis block of this genesis: hash {}, expected {}",
                found.short(),
                expected.short()
            ),
            Violation::BrokenLink { expected, found } => write!(
                f,
                "broken link: previous_hash {}, expected {}",
                found.short(),
                expected.short()
            ),
            Violation::HashMismatch { stored, computed } => write!(
                f,
                "hash mismatch: stored {}, computed {}",
                stored.short(),
                computed.short()
            ),
            Violation::WrongDifficulty { required, found } => {
                write!(
                    f,
                    "wrong difficulty: {found}, the genesis requires {required}"
                )
            }
            Violation::InsufficientWork {
                difficulty,
                leading_zeros,
            } => write!(
                f,
                "insufficient work: {leading_zeros} leading zero bits, difficulty {difficulty}"
            ),
            Violation::BadSignature => write!(f, "bad signature"),
            Violation::Mode(v) => write!(f, "consensus: {v}"),
            Violation::TimestampWentBack { previous, found } => {
                write!(f, "timestamp went back: {found} after {previous}")
            }
            Violation::RecordCount { count, max } => {
                write!(f, "record count {count}, allowed 0..={max}")
            }
            Violation::BadRecord { position, problem } => {
                write!(f, "bad record #{position}: {problem}")
            }
            Violation::DuplicateWindow {
                cabinet,
                window,
                first_block,
            } => write!(
                f,
                "duplicate window: cabinet {cabinet} window {window} already in block {first_block}"
            ),
        }
    }
}

/// Part of step 1: the optional keys `consensus` and `certificate` only where the mode uses them.
pub fn check_mode_keys(genesis: &Genesis, header: &Header) -> Result<(), Violation> {
    let used = genesis.consensus.block_keys();
    for (key, present) in [
        ("consensus", header.consensus.is_some()),
        ("certificate", header.certificate.is_some()),
    ] {
        if present && !used.contains(&key) {
            return Err(Violation::Unparseable(format!(
                "key {key} is not used under {}",
                genesis.consensus.mode()
            )));
        }
    }
    Ok(())
}

/// Block 0: it must equal the block derived from the genesis document (step 3).
pub fn check_genesis_block(genesis: &Genesis, block: &Block) -> Result<(), Violation> {
    if block.index != 0 {
        return Err(Violation::IndexOutOfSequence {
            expected: 0,
            found: block.index,
        });
    }
    let derived = genesis.block();
    if *block != derived {
        return Err(Violation::NotGenesis {
            expected: derived.hash,
            found: block.hash,
        });
    }
    Ok(())
}

/// Steps 2 and 4–10: everything a light client can check of `header` on `parent`.
pub fn check_header(genesis: &Genesis, header: &Header, parent: &Header) -> Result<(), Violation> {
    check_header_with(genesis, header, parent, &mut Verified::default())
}

/// [`check_header`] with a cache of verified signatures.
pub fn check_header_with(
    genesis: &Genesis,
    header: &Header,
    parent: &Header,
    verified: &mut Verified,
) -> Result<(), Violation> {
    check_mode_keys(genesis, header)?;
    let rules = &genesis.consensus;
    let expected = parent.index.saturating_add(1);
    if header.index != expected {
        return Err(Violation::IndexOutOfSequence {
            expected,
            found: header.index,
        });
    }
    if header.previous_hash != parent.hash {
        return Err(Violation::BrokenLink {
            expected: parent.hash,
            found: header.previous_hash,
        });
    }
    check_detached_with(genesis, header, verified)?;
    rules
        .check_producer(header, parent)
        .map_err(Violation::Mode)?;
    if header.timestamp < parent.timestamp {
        return Err(Violation::TimestampWentBack {
            previous: parent.timestamp,
            found: header.timestamp,
        });
    }
    Ok(())
}

/// Signatures already verified — (block hash, signature) pairs — so that a block seen again (on
/// the bus and in a sync reply, as a header and then as a block) costs no second verification.
/// Bounded: cleared when full.
#[derive(Debug, Default)]
pub struct Verified {
    seen: HashSet<(Hash32, [u8; 64])>,
}

impl Verified {
    const MAX: usize = 16_384;

    fn verify(&mut self, genesis: &Genesis, header: &Header) -> bool {
        let key = (header.hash, header.signature.0);
        if self.seen.contains(&key) {
            return true;
        }
        let ok = verify_block(
            &genesis.id(),
            &header.hash,
            &header.producer,
            &header.signature,
        );
        if ok {
            if self.seen.len() >= Self::MAX {
                self.seen.clear();
            }
            self.seen.insert(key);
        }
        ok
    }
}

/// Steps 5–8 for a header whose parent is not known yet (an orphan): its hash, difficulty, work
/// and signature. A block of another genesis fails here (its signature names another chain).
pub fn check_detached(genesis: &Genesis, header: &Header) -> Result<(), Violation> {
    check_detached_with(genesis, header, &mut Verified::default())
}

/// [`check_detached`] with a cache of verified signatures.
pub fn check_detached_with(
    genesis: &Genesis,
    header: &Header,
    verified: &mut Verified,
) -> Result<(), Violation> {
    check_mode_keys(genesis, header)?;
    let rules = &genesis.consensus;
    let seal = rules
        .seal(header.consensus.as_ref())
        .map_err(Violation::Mode)?;
    let computed = header.computed_hash(&seal);
    if header.hash != computed {
        return Err(Violation::HashMismatch {
            stored: header.hash,
            computed,
        });
    }
    let required = rules.difficulty(header.index);
    if header.difficulty != required {
        return Err(Violation::WrongDifficulty {
            required,
            found: header.difficulty,
        });
    }
    let leading_zeros = header.hash.leading_zero_bits();
    if leading_zeros < required {
        return Err(Violation::InsufficientWork {
            difficulty: required,
            leading_zeros,
        });
    }
    if !verified.verify(genesis, header) {
        return Err(Violation::BadSignature);
    }
    Ok(())
}

/// Steps 2 and 4–13 for a full block on `parent`. `committed` answers, for the branch that
/// `parent` ends, which block already holds a window (step 13).
pub fn check_block(
    genesis: &Genesis,
    block: &Block,
    parent: &Header,
    committed: impl Fn(&str, u64) -> Option<u64>,
) -> Result<(), Violation> {
    check_block_with(genesis, block, parent, committed, &mut Verified::default())
}

/// [`check_block`] with a cache of verified signatures.
pub fn check_block_with(
    genesis: &Genesis,
    block: &Block,
    parent: &Header,
    committed: impl Fn(&str, u64) -> Option<u64>,
    verified: &mut Verified,
) -> Result<(), Violation> {
    check_header_with(genesis, &block.header(), parent, verified)?;
    check_records(genesis, block, committed)
}

/// Steps 11–13 alone (for a caller that already checked the header).
pub fn check_records(
    genesis: &Genesis,
    block: &Block,
    committed: impl Fn(&str, u64) -> Option<u64>,
) -> Result<(), Violation> {
    let count = block.records().len();
    if count > genesis.max_records_per_block {
        return Err(Violation::RecordCount {
            count,
            max: genesis.max_records_per_block,
        });
    }
    for (position, record) in block.records().iter().enumerate() {
        record
            .validate()
            .map_err(|problem| Violation::BadRecord { position, problem })?;
    }
    let mut seen = HashSet::with_capacity(count);
    for record in block.records() {
        let first_block = match committed(&record.cabinet, record.window) {
            Some(first) => Some(first),
            None if !seen.insert((record.cabinet.as_str(), record.window)) => Some(block.index),
            None => None,
        };
        if let Some(first_block) = first_block {
            return Err(Violation::DuplicateWindow {
                cabinet: record.cabinet.clone(),
                window: record.window,
                first_block,
            });
        }
    }
    Ok(())
}
