//! The publisher: assembles averages into records, mines blocks, appends them to the durable
//! chain and publishes them.
//!
//! - [`assembler`]: the four averages of a window → one record; duplicates, bounds.
//!
//! Mining runs on blocking threads (every core by default) while the MQTT session keeps being
//! served; a block carries every window that became ready since the previous block started, up
//! to `max_windows_per_block`, so the chain keeps up however fast windows arrive. A window
//! already on the chain is never committed again: its averages make the publisher re-publish
//! the committing block instead, so a cabinet that missed it can drop the window.

pub mod assembler;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use self::assembler::{Assembler, Offer};
use crate::bus::{Bus, Outlet, QoS};
use crate::ledger::{Block, ChainStore, LedgerError, Miner, Timestamp, MAX_RECORDS_PER_BLOCK};
use crate::messages::{decode, encode, Average, DeadLetter};
use crate::topics::{Route, Topics};

/// The role name, used in status and dead-letter topics.
pub const ROLE: &str = "publisher";

/// Name of the chain file inside the data directory.
pub const CHAIN_FILE: &str = "chain.jsonl";

/// How a publisher runs.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Agent id.
    pub id: String,
    /// Directory holding `chain.jsonl`.
    pub data_dir: PathBuf,
    /// Leading zero bits required of each block hash.
    pub difficulty: u32,
    /// Most windows (records) per block.
    pub max_windows_per_block: usize,
    /// Most windows in progress (partial or ready); beyond, the oldest partial one is dropped.
    pub max_pending: usize,
    /// Mining threads.
    pub threads: usize,
    /// Largest average payload accepted, bytes.
    pub max_payload: usize,
    /// Least time between two re-publications of the same old block.
    pub reack_interval: Duration,
    /// Topic namespace.
    pub topics: Topics,
}

impl PublisherConfig {
    /// A configuration with wattchain's defaults.
    pub fn new(id: &str, data_dir: PathBuf) -> Self {
        PublisherConfig {
            id: id.to_string(),
            data_dir,
            difficulty: 16,
            max_windows_per_block: 64,
            max_pending: 10_000,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_payload: 64 * 1024,
            reack_interval: Duration::from_secs(5),
            topics: Topics::default(),
        }
    }

    /// What the publisher subscribes to: every average.
    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        vec![(self.topics.average_filter(), QoS::AtLeastOnce)]
    }

    /// The chain file.
    pub fn chain_path(&self) -> PathBuf {
        self.data_dir.join(CHAIN_FILE)
    }
}

/// Failures that stop the publisher.
#[derive(Debug, Error)]
pub enum PublisherError {
    /// The chain file is corrupt or cannot be written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// `max_windows_per_block` is outside 1..=MAX_RECORDS_PER_BLOCK.
    #[error("max windows per block must be 1..={MAX_RECORDS_PER_BLOCK}, not {0}")]
    WindowsPerBlock(usize),
}

/// A block the publisher appended, for whoever wants to report it.
#[derive(Debug, Clone)]
pub struct MinedBlock {
    /// The block.
    pub block: Block,
    /// Time spent mining it.
    pub mining: Duration,
}

/// What a publisher did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublisherStats {
    /// Blocks appended by this run.
    pub blocks: u64,
    /// Windows committed by this run.
    pub windows: u64,
    /// Averages ignored as duplicates.
    pub duplicates: u64,
    /// Messages rejected to the dead-letter topic.
    pub rejected: u64,
    /// Old blocks re-published for windows already on the chain.
    pub reacks: u64,
}

struct Mining {
    task: JoinHandle<(Option<Block>, Duration)>,
    cancel: Arc<AtomicBool>,
}

/// Runs the publisher until `shutdown`; `reports` (if given) receives every appended block.
pub async fn run(
    config: PublisherConfig,
    mut bus: Bus,
    shutdown: CancellationToken,
    reports: Option<mpsc::UnboundedSender<MinedBlock>>,
) -> Result<PublisherStats, PublisherError> {
    if !(1..=MAX_RECORDS_PER_BLOCK).contains(&config.max_windows_per_block) {
        return Err(PublisherError::WindowsPerBlock(
            config.max_windows_per_block,
        ));
    }
    let outlet = bus.outlet();
    let miner = Arc::new(Miner::new(config.threads));
    let path = config.chain_path();
    let (store, report) = tokio::task::spawn_blocking(move || ChainStore::open(&path))
        .await
        .expect("chain open does not panic")?;
    for w in report.warnings() {
        warn!(path = %config.chain_path().display(), "{w}");
    }
    info!(path = %config.chain_path().display(), blocks = report.blocks, "chain verified");

    // The genesis block is mined off the runtime too, and a shutdown during it is honoured.
    let cancel = Arc::new(AtomicBool::new(false));
    let (mut store, genesis_result) = {
        let (miner, flag, difficulty) = (miner.clone(), cancel.clone(), config.difficulty);
        let mut mining = tokio::task::spawn_blocking(move || {
            let mut store = store;
            let r = store.ensure_genesis(difficulty, &miner, &flag).map(|_| ());
            (store, r)
        });
        let out = tokio::select! {
            out = &mut mining => out,
            _ = shutdown.cancelled() => {
                cancel.store(true, Ordering::Relaxed);
                mining.await
            }
        };
        out.expect("genesis mining does not panic")
    };
    match genesis_result {
        Ok(()) => {}
        Err(LedgerError::Cancelled) => {
            bus.close().await;
            return Ok(PublisherStats::default());
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(head) = store.head() {
        publish_head(&outlet, &config.topics, head.to_json().into());
    }

    let mut publisher = Publisher {
        assembler: Assembler::new(config.max_pending),
        reacked: HashMap::new(),
        stats: PublisherStats::default(),
        outlet,
        config,
    };
    let mut mining: Option<Mining> = None;
    let result = loop {
        if mining.is_none() && publisher.assembler.ready() > 0 {
            mining = publisher.start_mining(&store, &miner);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            msg = bus.recv() => match msg {
                Some(msg) => publisher.on_message(&store, &msg.topic, &msg.payload).await,
                None => break Ok(()),
            },
            done = async { (&mut mining.as_mut().expect("guarded").task).await }, if mining.is_some() => {
                mining = None;
                let (block, took) = done.expect("mining does not panic");
                if let Some(block) = block {
                    if let Err(e) = publisher.commit(&mut store, block, took, reports.as_ref()).await {
                        break Err(e);
                    }
                }
            }
        }
    };
    if let Some(m) = mining.take() {
        m.cancel.store(true, Ordering::Relaxed);
        let _ = m.task.await;
    }
    let stats = publisher.stats;
    match &result {
        Ok(()) => info!(?stats, "publisher stopped"),
        Err(e) => error!(cause = %e, ?stats, "publisher stopping on a chain error"),
    }
    bus.close().await;
    result.map(|()| stats)
}

struct Publisher {
    config: PublisherConfig,
    outlet: Outlet,
    assembler: Assembler,
    /// When each old block was last re-published (bounded: cleared when large).
    reacked: HashMap<(u64, String), Instant>,
    stats: PublisherStats,
}

impl Publisher {
    async fn on_message(&mut self, store: &ChainStore, topic: &str, payload: &[u8]) {
        let avg = match self.config.topics.parse(topic) {
            Some(Route::Average { cabinet, quantity }) => {
                match decode::<Average>(payload, self.config.max_payload) {
                    Ok(a) if a.cabinet == cabinet && a.quantity == quantity => a,
                    Ok(a) => {
                        return self.reject(
                            topic,
                            &format!("payload is for {}/{}", a.cabinet, a.quantity),
                            payload,
                        )
                    }
                    Err(e) => return self.reject(topic, &e.to_string(), payload),
                }
            }
            _ => return self.reject(topic, "not an average topic", payload),
        };
        if let Some(index) = store.committed_in(&avg.cabinet, avg.window) {
            self.stats.duplicates += 1;
            self.reack(store, index, &avg.cabinet).await;
            return;
        }
        let (cabinet, window) = (avg.cabinet.clone(), avg.window);
        let (offer, evicted) = self.assembler.offer(avg);
        if let Some((cab, win)) = evicted {
            error!(cabinet = %cab, window = win, max_pending = self.config.max_pending,
                "too many windows in progress: dropping the oldest partial window");
            let reason = format!("pending windows full: window {win} of {cab} dropped");
            self.reject(topic, &reason, payload);
        }
        match offer {
            Offer::Stored => {}
            Offer::Ready => debug!(cabinet = %cabinet, window, "window ready"),
            Offer::Duplicate => self.stats.duplicates += 1,
            Offer::Conflict(reason) => self.reject(topic, &reason, payload),
        }
    }

    fn start_mining(&mut self, store: &ChainStore, miner: &Arc<Miner>) -> Option<Mining> {
        let records = self.assembler.take_ready(self.config.max_windows_per_block);
        let keys: Vec<(String, u64)> = records
            .iter()
            .map(|r| (r.cabinet.clone(), r.window))
            .collect();
        let template = match store.next_template(records, self.config.difficulty, Timestamp::now())
        {
            Ok(t) => t,
            Err(e) => {
                // Records are validated on the way in; this is a bug or a forged average.
                error!(cause = %e, "cannot build a block from the ready windows; dropping them");
                self.assembler
                    .release(keys.iter().map(|(c, w)| (c.as_str(), *w)));
                return None;
            }
        };
        debug!(index = template.index, windows = keys.len(), "mining");
        let cancel = Arc::new(AtomicBool::new(false));
        let (miner, flag) = (miner.clone(), cancel.clone());
        let task = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            (template.mine(&miner, &flag), start.elapsed())
        });
        Some(Mining { task, cancel })
    }

    async fn commit(
        &mut self,
        store: &mut ChainStore,
        block: Block,
        took: Duration,
        reports: Option<&mpsc::UnboundedSender<MinedBlock>>,
    ) -> Result<(), PublisherError> {
        store.append(block.clone())?;
        self.stats.blocks += 1;
        self.stats.windows += block.records().len() as u64;
        self.assembler.release(
            block
                .records()
                .iter()
                .map(|r| (r.cabinet.as_str(), r.window)),
        );
        info!(
            index = block.index,
            windows = block.records().len(),
            hash = %block.hash,
            nonce = block.nonce,
            mining_ms = took.as_millis() as u64,
            "block appended"
        );
        publish_block(&self.outlet, &self.config.topics, &block).await;
        if let Some(tx) = reports {
            let _ = tx.send(MinedBlock {
                block,
                mining: took,
            });
        }
        Ok(())
    }

    /// Re-publishes, on the cabinet's commit topic, the block committing a window the cabinet
    /// re-issued (it missed the block); at most once per `reack_interval` per block and cabinet.
    async fn reack(&mut self, store: &ChainStore, index: u64, cabinet: &str) {
        let now = Instant::now();
        let key = (index, cabinet.to_string());
        if self
            .reacked
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < self.config.reack_interval)
        {
            return;
        }
        if self.reacked.len() > 4096 {
            self.reacked.clear();
        }
        self.reacked.insert(key, now);
        match store.read_block(index) {
            Ok(block) => {
                info!(
                    index,
                    cabinet, "re-publishing the block that already commits a re-issued window"
                );
                self.stats.reacks += 1;
                let topic = self.config.topics.commit(cabinet);
                let _ = self
                    .outlet
                    .publish(topic, block.to_json(), QoS::AtLeastOnce, false)
                    .await;
            }
            Err(e) => warn!(index, cause = %e, "cannot read back a committed block"),
        }
    }

    fn reject(&mut self, topic: &str, reason: &str, payload: &[u8]) {
        self.stats.rejected += 1;
        warn!(topic, reason, "rejected a message");
        let letter = DeadLetter::new(ROLE, &self.config.id, topic, reason, payload);
        let _ = self.outlet.try_publish(
            self.config.topics.deadletter(ROLE),
            encode(&letter),
            QoS::AtMostOnce,
            false,
        );
    }
}

/// Publishes a new block once on `ledger/block` for watchers, once on the commit topic of
/// each cabinet whose windows it commits (so no cabinet receives blocks that do not concern
/// it), and retained on `ledger/head`. The payload is shared, not copied, between them.
async fn publish_block(outlet: &Outlet, topics: &Topics, block: &Block) {
    let payload = Bytes::from(block.to_json());
    let _ = outlet
        .publish(topics.block(), payload.clone(), QoS::AtLeastOnce, false)
        .await;
    let cabinets: BTreeSet<&str> = block.records().iter().map(|r| r.cabinet.as_str()).collect();
    for cabinet in cabinets {
        let _ = outlet
            .publish(
                topics.commit(cabinet),
                payload.clone(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
    publish_head(outlet, topics, payload);
}

/// Publishes `payload`, the latest block, retained on `ledger/head`.
fn publish_head(outlet: &Outlet, topics: &Topics, payload: Bytes) {
    if let Err(e) = outlet.publish_retained(topics.head(), payload) {
        warn!(cause = %e, "head not published; it is re-published after the next reconnection");
    }
}
