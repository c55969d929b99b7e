//! A ledger node: assembles the averages every node sees into records, produces blocks by the
//! genesis's consensus mode, validates every block it receives, follows the most-work branch,
//! syncs from peers over MQTT and publishes its head. `wattchain publisher` is the one-node case.
//!
//! - [`engine`]: the sans-IO state machine (events → actions) over the block tree.
//! - [`assembler`]: four averages → one record; duplicates, bounds, records given back.
//! - [`sync`]: headers-first sync, bounded, lies refused.
//! - `turn`: under pow, the nodes take turns by height to mine (fewer stale blocks).
//! - [`wire`]: head, header and sync payloads.
//! - [`runtime`]: the MQTT side: a chain handle owning the engine on a blocking thread, a
//!   producer (the miner) and a router between the bus and the engine.
//! - `simulation` (tests only): many engines over a seeded virtual network and clock.

pub mod assembler;
pub mod engine;
pub mod journal;
pub mod runtime;
#[cfg(test)]
mod simulation;
pub mod sync;
mod turn;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bus::QoS;
use crate::ledger::{Genesis, GenesisError, KeyError, Limits, StoreError, GENESIS_FILE, KEY_FILE};
use crate::topics::{check_id, TopicError, Topics};
pub use engine::{Action, Engine, EngineConfig, Event, NodeStats, Publication, Report};
pub use runtime::{run, MinedBlock};

/// The role name, used in status and dead-letter topics.
pub const ROLE: &str = "node";

/// Most mining threads a node runs.
pub const MAX_THREADS: usize = 1024;

/// How a node runs. Every default lives here (the command line only overrides).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id: its MQTT client id and the `{id}` of `ledger/node/{id}/head`.
    pub id: String,
    /// Directory of `genesis.json`, `node.key` and `chain.jsonl`.
    pub data_dir: PathBuf,
    /// Mining threads, at most [`MAX_THREADS`] (0: one per core).
    pub threads: usize,
    /// Most records per block this node builds (the genesis may allow fewer).
    pub max_records_per_block: usize,
    /// Most windows in progress before the oldest partial one is dropped.
    pub max_pending: usize,
    /// Largest payload accepted on a ledger topic (blocks, sync replies), bytes.
    pub max_payload: usize,
    /// Largest average payload accepted, bytes.
    pub max_average: usize,
    /// Least time between two re-publications of the same block for a cabinet.
    #[serde(with = "humantime_serde")]
    pub reack_interval: Duration,
    /// How long one sync request may go unanswered.
    #[serde(with = "humantime_serde")]
    pub sync_timeout: Duration,
    /// Most headers held while checking a competing branch.
    pub max_sync_headers: usize,
    /// Most blocks kept on lighter branches.
    pub max_side_blocks: usize,
    /// Most blocks kept whose parent is unknown.
    pub max_orphans: usize,
    /// Topic namespace (not in a config file: `--root`).
    #[serde(skip)]
    pub topics: Topics,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        let limits = Limits::default();
        NodeConfig {
            id: "node".into(),
            data_dir: PathBuf::from("data"),
            threads: 0,
            max_records_per_block: engine.max_records_per_block,
            max_pending: engine.max_pending,
            max_payload: 1 << 20,
            max_average: 64 << 10,
            reack_interval: Duration::from_millis(engine.reack_interval_ms),
            sync_timeout: Duration::from_millis(engine.sync_timeout_ms),
            max_sync_headers: engine.max_sync_headers,
            max_side_blocks: limits.max_side_blocks,
            max_orphans: limits.max_orphans,
            topics: Topics::default(),
        }
    }
}

/// Why a node configuration or its data directory cannot be used.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The id is not a valid agent id.
    #[error(transparent)]
    Id(#[from] TopicError),
    /// A setting outside its range.
    #[error("{0}")]
    Config(String),
    /// The genesis document is missing, unreadable or invalid.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// The data directory holds a genesis other than the one given.
    #[error("{} follows chain {have}, not the given genesis {given}: use another data directory", dir.display())]
    OtherGenesis {
        /// The data directory.
        dir: PathBuf,
        /// Chain id of its genesis.json.
        have: String,
        /// Chain id of the one given.
        given: String,
    },
    /// The data directory is not a directory.
    #[error("data directory {}: {reason}", dir.display())]
    DataDir {
        /// The path.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node key cannot be read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The chain file is corrupt or cannot be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another connection uses this node's id.
    #[error(
        "node id {0:?} is used by another running node on this broker; give each node its own --id"
    )]
    IdTaken(String),
}

impl NodeConfig {
    /// Checks every setting; called before anything is started or written.
    pub fn validate(&self) -> Result<(), NodeError> {
        check_id(&self.id)?;
        let bad = |what: String| Err(NodeError::Config(what));
        if !(1..=crate::ledger::MAX_RECORDS_PER_BLOCK).contains(&self.max_records_per_block) {
            return bad(format!(
                "max records per block must be 1..={}, not {}",
                crate::ledger::MAX_RECORDS_PER_BLOCK,
                self.max_records_per_block
            ));
        }
        if self.threads > MAX_THREADS {
            return bad(format!(
                "mining threads (--threads) must be 0..={MAX_THREADS} (0: one per core), not {}",
                self.threads
            ));
        }
        for (what, value) in [
            ("windows in progress (--max-pending)", self.max_pending),
            ("blocks kept on lighter branches", self.max_side_blocks),
            ("headers held while syncing", self.max_sync_headers),
        ] {
            if value == 0 {
                return bad(format!("{what} must be at least 1, not 0"));
            }
        }
        if self.max_payload < 64 << 10 {
            return bad(format!("max payload {} is below 64 KiB", self.max_payload));
        }
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            return Err(NodeError::DataDir {
                dir: self.data_dir.clone(),
                reason: "exists and is not a directory".into(),
            });
        }
        Ok(())
    }

    /// What a node subscribes to: every average, every block, every head, sync for it, and the
    /// message topic of every mode that has one (the genesis is not known yet when a node
    /// connects; messages of another mode than its genesis' are ignored).
    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        let t = &self.topics;
        [
            t.average_filter(),
            t.block(),
            t.head(),
            t.node_head_filter(),
            t.sync_request(),
            t.sync_reply(&self.id),
        ]
        .into_iter()
        .chain(
            crate::ledger::consensus::MESSAGE_MODES
                .iter()
                .map(|m| t.mode(m)),
        )
        .map(|f| (f, QoS::AtLeastOnce))
        .collect()
    }

    /// The engine's share of the settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            max_records_per_block: self.max_records_per_block,
            max_pending: self.max_pending,
            reack_interval_ms: self.reack_interval.as_millis() as u64,
            sync_timeout_ms: self.sync_timeout.as_millis() as u64,
            max_sync_headers: self.max_sync_headers,
            ..EngineConfig::default()
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> Limits {
        Limits {
            max_side_blocks: self.max_side_blocks,
            max_orphans: self.max_orphans,
            ..Limits::default()
        }
    }

    /// The chain file.
    pub fn chain_path(&self) -> PathBuf {
        self.data_dir.join(crate::ledger::CHAIN_FILE)
    }

    /// Mining threads to run.
    pub fn mining_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        }
    }
}

/// The genesis a node follows: `given` (copied into the data directory on first start), or the
/// data directory's own `genesis.json`. A data directory that follows another genesis is refused.
pub fn settle_genesis(data_dir: &Path, given: Option<&Genesis>) -> Result<Genesis, NodeError> {
    let path = data_dir.join(GENESIS_FILE);
    let have = if path.exists() {
        Some(Genesis::load(&path)?)
    } else {
        None
    };
    match (have, given) {
        (Some(have), Some(given)) if have.id() != given.id() => Err(NodeError::OtherGenesis {
            dir: data_dir.to_path_buf(),
            have: have.id().to_hex(),
            given: given.id().to_hex(),
        }),
        (Some(have), _) => Ok(have),
        (None, Some(given)) => {
            given.write_new(&path)?;
            Ok(given.clone())
        }
        (None, None) => Err(NodeError::Genesis(GenesisError::Io {
            path,
            cause: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no genesis: pass --genesis FILE (made by `wattchain genesis new`)",
            ),
        })),
    }
}

/// The node's key in its data directory, created on first start (0600).
pub fn settle_key(data_dir: &Path) -> Result<(crate::ledger::NodeKey, bool), NodeError> {
    Ok(crate::ledger::NodeKey::load_or_create(
        &data_dir.join(KEY_FILE),
    )?)
}
