//! The chain rules, applied one block at a time; shared by the store (on open and append) and
//! by `verify_file`, so both always agree on what a valid chain is.

use std::collections::HashSet;
use std::fmt;

use super::block::{Block, MAX_RECORDS_PER_BLOCK};
use super::encoding::Hash32;
use super::record::RecordProblem;
use super::timestamp::Timestamp;
use super::windows::WindowIndex;

// The record-count message below spells the limit out; keep it in step with the constant.
const _: () = assert!(MAX_RECORDS_PER_BLOCK == 256);

/// Why a block (or a line of the chain file) is invalid; checked in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The chain file holds no block at all.
    Empty,
    /// The last line has no newline and does not parse: a write interrupted by a crash.
    TornLine,
    /// The line is not a block (bad JSON, missing or unknown field, bad hex or timestamp).
    Unparseable(String),
    /// `index` is not the line's position in the chain.
    IndexOutOfSequence {
        /// Index this position requires.
        expected: u64,
        /// Index the block states.
        found: u64,
    },
    /// `previous_hash` is not the previous block's hash (genesis: not all zeros).
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
    /// The hash has fewer leading zero bits than the block's difficulty.
    InsufficientWork {
        /// Required leading zero bits.
        difficulty: u32,
        /// Leading zero bits of the hash.
        leading_zeros: u32,
    },
    /// The block is older than the block before it.
    TimestampWentBack {
        /// The previous block's time.
        previous: Timestamp,
        /// This block's time.
        found: Timestamp,
    },
    /// Genesis with records, or another block with none or too many.
    RecordCount {
        /// Records in the block.
        count: usize,
        /// Allowed range, as text (`0` for genesis, `1..=256` otherwise).
        allowed: &'static str,
    },
    /// A record breaks a field rule.
    BadRecord {
        /// Position of the record in the block.
        position: usize,
        /// The rule it breaks.
        problem: RecordProblem,
    },
    /// A window is committed twice (in an earlier block, or twice in this one).
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
            Violation::InsufficientWork {
                difficulty,
                leading_zeros,
            } => write!(
                f,
                "insufficient work: {leading_zeros} leading zero bits, difficulty {difficulty}"
            ),
            Violation::TimestampWentBack { previous, found } => {
                write!(f, "timestamp went back: {found} after {previous}")
            }
            Violation::RecordCount { count, allowed } => {
                write!(f, "record count {count}, allowed {allowed}")
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

/// Checks each block against the chain so far; holds only the head and the window index.
#[derive(Debug, Default, Clone)]
pub struct ChainChecker {
    head: Option<Block>,
    windows: WindowIndex,
}

impl ChainChecker {
    /// Index the next block must have.
    pub fn next_index(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.index.saturating_add(1))
    }

    /// The last accepted block.
    pub fn head(&self) -> Option<&Block> {
        self.head.as_ref()
    }

    /// Which block committed each window.
    pub fn windows(&self) -> &WindowIndex {
        &self.windows
    }

    /// Checks `block` as the next block of the chain, without accepting it.
    pub fn check(&self, block: &Block) -> Result<(), Violation> {
        let expected = self.next_index();
        if block.index != expected {
            return Err(Violation::IndexOutOfSequence {
                expected,
                found: block.index,
            });
        }
        let link = self.head.as_ref().map_or(Hash32::ZERO, |h| h.hash);
        if block.previous_hash != link {
            return Err(Violation::BrokenLink {
                expected: link,
                found: block.previous_hash,
            });
        }
        let computed = block.computed_hash();
        if block.hash != computed {
            return Err(Violation::HashMismatch {
                stored: block.hash,
                computed,
            });
        }
        let leading_zeros = block.hash.leading_zero_bits();
        if leading_zeros < block.difficulty {
            return Err(Violation::InsufficientWork {
                difficulty: block.difficulty,
                leading_zeros,
            });
        }
        if let Some(head) = &self.head {
            if block.timestamp < head.timestamp {
                return Err(Violation::TimestampWentBack {
                    previous: head.timestamp,
                    found: block.timestamp,
                });
            }
        }
        let count = block.records().len();
        if block.index == 0 && count != 0 {
            return Err(Violation::RecordCount {
                count,
                allowed: "0 (genesis)",
            });
        }
        if block.index != 0 && !(1..=MAX_RECORDS_PER_BLOCK).contains(&count) {
            return Err(Violation::RecordCount {
                count,
                allowed: "1..=256",
            });
        }
        let mut seen = HashSet::with_capacity(count);
        for (position, record) in block.records().iter().enumerate() {
            record
                .validate()
                .map_err(|problem| Violation::BadRecord { position, problem })?;
            let first_block = match self.windows.get(&record.cabinet, record.window) {
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

    /// Accepts a block that [`check`](Self::check) passed: it becomes the head.
    pub fn accept(&mut self, block: Block) {
        for record in block.records() {
            self.windows
                .insert(&record.cabinet, record.window, block.index);
        }
        self.head = Some(block);
    }
}
