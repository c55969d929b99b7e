//! Deciding whether a block received on `cabinet/{cab}/commit` may commit this cabinet's windows.
//!
//! Anyone on the broker can publish on that topic, and a hash that verifies proves little
//! (a block's own difficulty may be 0). Committing removes a window from the outbox for good, so
//! a block is only believed when, for every window of ours it commits that we still hold, it
//! carries the digests and sample count we published. A forger must then know our samples'
//! digests; those are public on the window topics, so full protection needs topic permissions
//! at the broker (only the publisher may write `cabinet/+/commit`).

use thiserror::Error;

use super::outbox::Outbox;
use crate::ledger::{Block, Record, RecordProblem, MAX_RECORDS_PER_BLOCK};
use crate::topics::Quantity;

/// Why a received block was refused (the dead-letter reason).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BlockRefusal {
    /// The payload is not UTF-8 JSON of a block's shape.
    #[error("malformed block: {0}")]
    Malformed(String),
    /// More records than any publisher puts in a block.
    #[error("{count} records exceed the limit of {MAX_RECORDS_PER_BLOCK}")]
    TooManyRecords {
        /// Records in the block.
        count: usize,
    },
    /// `hash` is not the hash of the block's fields.
    #[error("block {index}: hash does not verify")]
    HashMismatch {
        /// The block's index.
        index: u64,
    },
    /// `hash` does not have the leading zero bits the block claims.
    #[error("block {index}: hash does not meet its difficulty {difficulty}")]
    InsufficientWork {
        /// The block's index.
        index: u64,
        /// The claimed difficulty.
        difficulty: u32,
    },
    /// A record for one of our pending windows is not well formed.
    #[error("record for window {window}: {problem}")]
    BadRecord {
        /// The window.
        window: u64,
        /// What is wrong with it.
        problem: RecordProblem,
    },
    /// A record for one of our pending windows has other digests or count than we published.
    #[error("record for window {window} does not match the samples this cabinet published")]
    NotOurSamples {
        /// The window.
        window: u64,
    },
}

/// Parses `payload` and checks that it may commit the windows of `cabinet` held in `outbox`.
pub fn check_block(cabinet: &str, outbox: &Outbox, payload: &[u8]) -> Result<Block, BlockRefusal> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| BlockRefusal::Malformed(format!("not UTF-8: {e}")))?;
    let block = Block::from_json(text).map_err(|e| BlockRefusal::Malformed(e.to_string()))?;
    if block.records().len() > MAX_RECORDS_PER_BLOCK {
        return Err(BlockRefusal::TooManyRecords {
            count: block.records().len(),
        });
    }
    if block.computed_hash() != block.hash {
        return Err(BlockRefusal::HashMismatch { index: block.index });
    }
    if block.hash.leading_zero_bits() < block.difficulty {
        return Err(BlockRefusal::InsufficientWork {
            index: block.index,
            difficulty: block.difficulty,
        });
    }
    for r in block.records().iter().filter(|r| r.cabinet == cabinet) {
        // Windows we no longer hold (committed earlier, or from another run) cost nothing.
        let Some(pending) = outbox.get(r.window) else {
            continue;
        };
        r.validate().map_err(|problem| BlockRefusal::BadRecord {
            window: r.window,
            problem,
        })?;
        let same = pending
            .tasks
            .iter()
            .all(|t| digest_of(r, t.quantity) == t.digest && r.n as usize == t.values.len());
        if !same {
            return Err(BlockRefusal::NotOurSamples { window: r.window });
        }
    }
    Ok(block)
}

fn digest_of(record: &Record, quantity: Quantity) -> String {
    let d = &record.digests;
    match quantity {
        Quantity::U => d.u,
        Quantity::I => d.i,
        Quantity::PA => d.pa,
        Quantity::PR => d.pr,
    }
    .to_hex()
}
