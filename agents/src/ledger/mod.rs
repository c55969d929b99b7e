//! The chain: records, blocks, their canonical encoding, proof of work, the durable chain file
//! and its verification. The byte-level specification is the "Ledger encoding" section of `topics.md`.
//!
//! # Layout
//!
//! - [`record`]: `Record` (one committed window) and the window digest, `digest_values`.
//! - [`timestamp`]: the strict millisecond UTC timestamp the chain accepts.
//! - [`encoding`]: the canonical bytes: data hash, 96-byte header, `Hash32`.
//! - [`block`]: the `Block` JSON shape and `BlockTemplate`, what a publisher mines.
//! - [`pow`]: the midstate, multi-threaded, cancellable miner and its SIMD engines.
//! - [`windows`]: run-length index of which block committed which window.
//! - [`check`]: the chain rules applied block by block (`ChainChecker`, `Violation`).
//! - [`store`]: `ChainStore`, the append-only, fsynced, verified-on-open chain file.
//! - [`verify`]: `verify_file`, the whole-file verifier behind `wattchain chain verify`.
//!
//! A publisher's round trip:
//!
//! ```no_run
//! # use std::sync::atomic::AtomicBool;
//! # use wattchain::ledger::{ChainStore, Miner, Timestamp};
//! # fn demo(records: Vec<wattchain::ledger::Record>) -> Result<(), wattchain::ledger::LedgerError> {
//! let (mut store, _report) = ChainStore::open("data/chain.jsonl".as_ref())?;
//! let (miner, cancel) = (Miner::all_cores(), AtomicBool::new(false));
//! store.ensure_genesis(16, &miner, &cancel)?;
//! let template = store.next_template(records, 16, Timestamp::now())?;
//! if let Some(block) = template.mine(&miner, &cancel) {
//!     store.append(block)?;
//! }
//! # Ok(()) }
//! ```

pub mod block;
pub mod check;
pub mod encoding;
pub mod pow;
pub mod record;
pub mod store;
pub mod timestamp;
pub mod verify;
pub mod windows;

use std::path::PathBuf;

pub use block::{Block, BlockData, BlockTemplate, MAX_DIFFICULTY, MAX_RECORDS_PER_BLOCK};
pub use check::{ChainChecker, Violation};
pub use encoding::{data_hash, Hash32, HeaderPrefix};
pub use pow::{Engine, Mined, Miner, Search, UnsupportedEngine};
pub use record::{digest_hex, digest_values, Averages, Digests, Record, RecordProblem};
pub use store::{ChainStore, OpenReport};
pub use timestamp::{Timestamp, TimestampError};
pub use verify::{verify_file, TornTail, VerifyError, VerifySummary};
pub use windows::{CabinetWindows, WindowIndex};

/// Errors of the ledger: chain file I/O, corrupt chains, refused blocks and templates.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading or writing the chain file failed.
    #[error("chain file {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The chain file holds an invalid block; the store refuses to open it.
    #[error("chain file {} is invalid: {error}", path.display())]
    Corrupt {
        /// The chain file.
        path: PathBuf,
        /// The first bad block.
        error: VerifyError,
    },
    /// `append` refused a block that does not extend the chain validly.
    #[error("block rejected: {0}")]
    Rejected(Violation),
    /// `read_block` asked for a block past the head.
    #[error("block {index} does not exist (chain has {len} blocks)")]
    NoSuchBlock {
        /// Requested index.
        index: u64,
        /// Blocks in the chain.
        len: u64,
    },
    /// The chain has no genesis block yet (call `ensure_genesis`).
    #[error("the chain has no genesis block yet")]
    NoGenesis,
    /// Mining was cancelled before a nonce was found.
    #[error("mining cancelled")]
    Cancelled,
    /// A difficulty above 256 bits can never be met.
    #[error("difficulty {0} exceeds the 256 bits of a hash")]
    ImpossibleDifficulty(u32),
    /// A non-genesis block needs 1..=MAX_RECORDS_PER_BLOCK records.
    #[error("{count} records; a block holds 1..={max}")]
    RecordCount {
        /// Records offered.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A record offered for a block is malformed.
    #[error("record #{position} (cabinet {cabinet:?}, window {window}): {problem}")]
    BadRecord {
        /// Position in the offered list.
        position: usize,
        /// Its cabinet id.
        cabinet: String,
        /// Its window id.
        window: u64,
        /// What is wrong.
        problem: RecordProblem,
    },
    /// The same window was offered twice for one block.
    #[error("cabinet {cabinet:?} window {window} offered twice for one block")]
    DuplicateInBlock {
        /// Cabinet id.
        cabinet: String,
        /// Window id.
        window: u64,
    },
    /// The head has index u64::MAX.
    #[error("block index space exhausted")]
    ChainFull,
    /// An earlier write could not be undone; reopen the store to re-verify the file.
    #[error("an earlier write failed and could not be undone; reopen the chain file")]
    Poisoned,
}
