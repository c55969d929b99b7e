//! `wattchain bench sync`: a node with an empty data directory catches up with a chain of N
//! blocks held by another node, over the embedded broker (headers first, then the blocks, each
//! verified in full), against the single-core Ed25519 verification rate measured in the same run
//! (signature checks are the floor of what sync can cost).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::roles;
use crate::bus::BusOptions;
use crate::ledger::store::{ChainStore, Limits};
use crate::ledger::{
    digest_values, keys, Averages, Digests, Genesis, GenesisSpec, Hash32, NodeKey, Record,
    Timestamp,
};
use crate::node::{self, NodeConfig};

/// What `bench sync` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncBench {
    /// Blocks in the chain to catch up with (one record each).
    #[arg(long, default_value_t = 100_000)]
    pub blocks: u64,
    /// Where the two nodes' data directories go (a fresh subdirectory, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The measurement.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Blocks synced.
    pub blocks: u64,
    /// Seconds from the empty node's start to its head equal to the source's.
    pub seconds: f64,
    /// Blocks per second of the whole catch-up.
    pub blocks_per_s: f64,
    /// Ed25519 verifications per second on one core, same run.
    pub verifications_per_s: f64,
    /// `blocks_per_s / verifications_per_s` (target ≥ 0.5).
    pub ratio: f64,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sync: {} blocks in {:.1} s = {:.0} blocks/s; one core verifies {:.0} signatures/s; ratio {:.2}",
            self.blocks, self.seconds, self.blocks_per_s, self.verifications_per_s, self.ratio
        )
    }
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum SyncBenchError {
    /// Setting up (broker, files, sessions) failed.
    #[error("bench sync: {0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(e: E) -> SyncBenchError {
    SyncBenchError::Setup(e.to_string())
}

fn record(window: u64) -> Record {
    let d = Hash32(digest_values(&[window as f64]));
    Record {
        cabinet: "bench".into(),
        window,
        from: "2026-11-21T10:00:00.000Z".into(),
        to: "2026-11-21T10:00:01.000Z".into(),
        n: 4,
        averages: Averages {
            u: 230.0,
            i: 1.0,
            pa: 200.0,
            pr: 5.0,
        },
        digests: Digests {
            u: d,
            i: d,
            pa: d,
            pr: d,
        },
    }
}

/// Verifications per second of one Ed25519 signature check on this thread.
fn verification_rate() -> f64 {
    let key = NodeKey::from_seed([7; 32]);
    let sig = key.sign(b"wattchain");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            assert!(keys::verify(&key.public(), b"wattchain", &sig));
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs the bench.
pub async fn run(
    bench: &SyncBench,
    shutdown: CancellationToken,
) -> Result<SyncReport, SyncBenchError> {
    let dir = super::pipeline::BenchDir::create(&bench.data_dir).map_err(setup)?;
    let mut spec = GenesisSpec::pow(0);
    spec.created = Timestamp::from_millis(1_795_000_000_000).ok_or_else(|| setup("time"))?;
    let genesis = Genesis::new(spec).map_err(setup)?;
    // The source chain, written by the store (every block signed and checked).
    let source = dir.path.as_path().join("source");
    let blocks = bench.blocks;
    let g = genesis.clone();
    let src = source.clone();
    tokio::task::spawn_blocking(move || -> Result<(), SyncBenchError> {
        g.write_new(&src.join(crate::ledger::GENESIS_FILE))
            .map_err(setup)?;
        let (mut store, _) =
            ChainStore::open(&g, &src.join(crate::ledger::CHAIN_FILE), Limits::default())
                .map_err(setup)?;
        let key = NodeKey::from_seed([1; 32]);
        for w in 0..blocks {
            let head = store.head().clone();
            let ts = Timestamp::from_millis(head.timestamp.millis() + 1000)
                .ok_or_else(|| setup("time"))?;
            let block =
                g.template(&head, vec![record(w)], ts, key.public())
                    .finish(0, &key, &g.id());
            // One fsync at the end: this is setup, not the measurement.
            store.insert_deferred(block).map_err(setup)?;
        }
        store.flush().map_err(setup)
    })
    .await
    .map_err(setup)??;
    let verifications_per_s = tokio::task::spawn_blocking(verification_rate)
        .await
        .map_err(setup)?;

    let broker = super::roles::loopback_broker().await.map_err(setup)?;
    let url: crate::bus::BrokerUrl = broker.url().parse().map_err(setup)?;
    let stop = shutdown.child_token();
    let start_node = |id: &str, data: PathBuf| {
        let config = NodeConfig {
            id: id.into(),
            data_dir: data,
            threads: 1,
            ..NodeConfig::default()
        };
        let options = BusOptions::new(url.clone(), id, node::ROLE);
        let (g, s) = (genesis.clone(), stop.clone());
        async move {
            let bus = roles::session(options, config.subscriptions())
                .await
                .map_err(setup)?;
            Ok::<_, SyncBenchError>(tokio::spawn(async move {
                let _ = node::run(config, Some(g), bus, s, None).await;
            }))
        }
    };
    let a = start_node("bench-source", source.clone()).await?;
    let target = dir.path.as_path().join("target");
    // The clock starts before the empty node's session: connecting is part of catching up.
    let started = Instant::now();
    let b = start_node("bench-empty", target.clone()).await?;
    let chain = target.join(crate::ledger::CHAIN_FILE);
    let want = blocks + 1;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let have = std::fs::read(&chain)
            .map(|t| t.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0);
        if have >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = a.await;
    let _ = b.await;
    broker.shutdown().await;
    let blocks_per_s = blocks as f64 / seconds;
    Ok(SyncReport {
        blocks,
        seconds,
        blocks_per_s,
        verifications_per_s,
        ratio: blocks_per_s / verifications_per_s,
    })
}
