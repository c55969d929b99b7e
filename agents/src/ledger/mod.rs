//! The chain: records, signed blocks bound to a genesis, their canonical encoding, the rules,
//! the block tree over the durable main chain, and the miner. The byte-level specification is
//! the "Ledger encoding" section of `topics.md`.
//!
//! # Layout (dependencies run down this list, never up)
//!
//! - [`timestamp`], [`record`]: the strict millisecond timestamp; one committed window.
//! - [`encoding`]: pure canonical bytes — records hash, data hash, the 96-byte header (nonce
//!   last, so mining works on a midstate), sign-bytes; hex newtypes.
//! - [`keys`]: Ed25519 node keys (PKCS#8 PEM, 0600) and the strict verification rule.
//! - [`block`]: the `Block` JSON shape, the light `Header`, `BlockTemplate`.
//! - [`consensus`]: the [`Consensus`] trait and its modes (pow): genesis parameters, seal,
//!   producer rule, fork-choice weight, finality, when to produce.
//! - [`genesis`]: the genesis document, chain id, derived genesis block.
//! - [`rules`]: a block against its parent under a genesis, written once (`Violation`).
//! - [`windows`]: run-length index of which block committed which window.
//! - [`store`]: `ChainStore`, the block tree with fork choice over `chain.jsonl`.
//! - [`verify`]: `verify_file`, the whole-file verifier behind `wattchain chain verify`.
//! - [`pow`]: the midstate, multi-threaded, cancellable SIMD miner (the only unsafe code).

pub mod block;
pub mod consensus;
pub mod encoding;
pub mod genesis;
pub mod keys;
pub mod pow;
pub mod record;
pub mod rules;
pub mod store;
pub mod timestamp;
pub mod verify;
pub mod windows;

pub use block::{Block, BlockData, BlockTemplate, Header, MAX_RECORDS_PER_BLOCK};
pub use consensus::{Consensus, Work};
pub use encoding::{records_hash, Hash32, HeaderPrefix, PublicKey, SignatureBytes};
pub use genesis::{Genesis, GenesisError, GenesisSpec, DEFAULT_FINALITY_DEPTH, GENESIS_FILE};
pub use keys::{KeyError, NodeKey, KEY_FILE};
pub use pow::{Engine, Mined, Miner, Search, UnsupportedEngine};
pub use record::{digest_hex, digest_values, Averages, Digests, Record, RecordProblem};
pub use rules::Violation;
pub use store::{ChainStore, Change, Insert, Limits, Status, StoreError, CHAIN_FILE};
pub use timestamp::{Timestamp, TimestampError};
pub use verify::{verify_file, ChainChecker, VerifyError, VerifyFileError, VerifySummary};
pub use windows::{CabinetWindows, WindowIndex};
