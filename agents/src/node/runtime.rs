//! The node on MQTT, split by responsibility: a **chain handle** (the engine and its store on a
//! blocking thread, fed events, returning actions), a **producer** (mining jobs on the blocking
//! pool, each under a child of the shutdown token) and the **router** (bus messages decoded into
//! events, actions turned into publications). [`run`] only wires them together.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::engine::{Action, Engine, Event, NodeStats, Publication, Report};
use super::journal::{Journal, JOURNAL_FILE};
use super::wire::{HeadMessage, HeaderMessage, ModeMessage, SyncReply, SyncRequest};
use super::{settle_genesis, settle_key, NodeConfig, NodeError, ROLE};
use crate::bus::{Bus, Incoming, Outlet, QoS};
use crate::ledger::store::{ChainStore, FileLog, StoreError};
use crate::ledger::{Block, BlockTemplate, Genesis, Hash32, Miner, NodeKey};
use crate::messages::{decode, encode, Average, DeadLetter};
use crate::topics::{Route, Topics};

/// A main-chain move, for whoever reports blocks (`wattchain up`'s block lines).
#[derive(Debug, Clone)]
pub struct MinedBlock {
    /// The node that saw it.
    pub node: String,
    /// What happened.
    pub report: Report,
    /// How long this node mined it (when it did).
    pub mining: Option<Duration>,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs a node until `shutdown`: validates its configuration and data directory first (genesis,
/// key, chain file), then serves. `reports` (if given) receives every main-chain move.
pub async fn run(
    config: NodeConfig,
    genesis: Option<Genesis>,
    mut bus: Bus,
    shutdown: CancellationToken,
    reports: Option<mpsc::UnboundedSender<MinedBlock>>,
) -> Result<NodeStats, NodeError> {
    let opened = async {
        config.validate()?;
        let (dir, path, limits) = (
            config.data_dir.clone(),
            config.chain_path(),
            config.limits(),
        );
        tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            let genesis = settle_genesis(&dir, genesis.as_ref())?;
            let (key, created) = settle_key(&dir)?;
            let (store, report) = ChainStore::open(&genesis, &path, limits)?;
            for w in report.warnings() {
                warn!(path = %path.display(), "{w}");
            }
            let journal = if genesis.consensus.journals() {
                let file = dir.join(JOURNAL_FILE);
                let opened = Journal::open(&file, store.head().index + 1).map_err(|e| {
                    NodeError::Config(format!("vote journal {}: {e}", file.display()))
                })?;
                Some(opened)
            } else {
                None
            };
            Ok((genesis, key, created, store, journal))
        })
        .await
        .map_err(|e| NodeError::Config(format!("opening the data directory panicked: {e}")))?
    };
    let (genesis, key, created, store, journal) = match opened.await {
        Ok(v) => v,
        Err(e) => {
            bus.close().await;
            return Err(e);
        }
    };
    info!(node = %config.id, chain = %genesis.id(), producer = %key.public(), new_key = created,
        blocks = store.len(), "node ready");
    let mut engine = Engine::new(&config.id, key.clone(), store, config.engine());
    let journal = journal.map(|(journal, votes)| {
        info!(node = %config.id, votes = votes.len(), path = %journal.path().display(), "vote journal replayed");
        engine.restore(votes);
        journal
    });
    let instance = engine.instance();
    let metrics = crate::metrics::Node::new(&config.id);
    let (events, mut actions, chain) = spawn_chain(engine, metrics.clone());
    let producer = Producer {
        metrics,
        rate: Arc::default(),
        miner: Arc::new(Miner::new(config.mining_threads())),
        key,
        chain_id: genesis.id(),
        events: events.clone(),
        shutdown: shutdown.clone(),
        current: None,
    };
    let mut router = Router {
        journal,
        journal_failed: false,
        mode: genesis.consensus.mode(),
        wake: None,
        outlet: bus.outlet(),
        topics: config.topics.clone(),
        config,
        producer,
        reports,
        instance,
        started_ms: now_ms(),
        mining_since: None,
        refused: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = bus.recv() => match msg {
                Some(msg) => match router.route(msg) {
                    Ok(Some(event)) => {
                        if events.send((now_ms(), event)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                },
                None => break,
            },
            batch = actions.recv() => match batch {
                Some(batch) => {
                    for action in batch {
                        router.act(action).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if events.send((now_ms(), Event::Tick)).await.is_err() {
                    break;
                }
            }
            _ = wake_at(router.wake) => {
                router.wake = None;
                if events.send((now_ms(), Event::Timer)).await.is_err() {
                    break;
                }
            }
        }
    }
    router.producer.cancel();
    drop(events);
    let refused = router.refused;
    drop(router);
    let stats = match chain.await {
        Ok(Ok(stats)) => NodeStats {
            rejected: stats.rejected + refused,
            ..stats
        },
        Ok(Err(e)) => {
            error!(cause = %e, "node stopping on a chain error");
            failure.get_or_insert(NodeError::Store(e));
            NodeStats::default()
        }
        Err(e) => {
            failure.get_or_insert(NodeError::Config(format!("the chain thread panicked: {e}")));
            NodeStats::default()
        }
    };
    bus.close().await;
    match failure {
        Some(e) => Err(e),
        None => {
            info!(?stats, "node stopped");
            Ok(stats)
        }
    }
}

/// Sleeps until the mode timer (tokio time, so paused-time tests drive it); never without one.
async fn wake_at(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type EventTx = mpsc::Sender<(u64, Event)>;

/// The chain handle: the engine on the blocking pool, one event at a time.
fn spawn_chain(
    mut engine: Engine<FileLog>,
    metrics: crate::metrics::Node,
) -> (
    EventTx,
    mpsc::UnboundedReceiver<Vec<Action>>,
    JoinHandle<Result<NodeStats, StoreError>>,
) {
    let (events_tx, mut events_rx) = mpsc::channel::<(u64, Event)>(1024);
    let (actions_tx, actions_rx) = mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        let _ = actions_tx.send(engine.start(now_ms()));
        while let Some((now, event)) = events_rx.blocking_recv() {
            let actions = engine.handle(now, event)?;
            record(&engine, &metrics);
            if !actions.is_empty() && actions_tx.send(actions).is_err() {
                break;
            }
        }
        Ok(engine.stats())
    });
    (events_tx, actions_rx, task)
}

/// Exports the engine's counters (a few atomic stores per event).
fn record(engine: &Engine<FileLog>, m: &crate::metrics::Node) {
    let stats = engine.stats();
    m.produced.absolute(stats.mined);
    m.received.absolute(stats.received);
    m.reorgs.absolute(stats.reorgs);
    m.stale.absolute(stats.stale);
    m.pending.set(engine.pending() as f64);
    m.sync_state.set(if engine.syncing() { 1.0 } else { 0.0 });
}

/// Hashes and mining time since the mining rate was last exported.
#[derive(Debug, Default)]
struct HashRate {
    hashes: u64,
    time: Duration,
}

impl HashRate {
    /// Adds one job's search; exports the rate once a second of mining has accumulated (easy
    /// blocks take microseconds: one job alone says little).
    fn add(&mut self, hashes: u64, time: Duration, m: &crate::metrics::Node) {
        m.hashes.increment(hashes);
        self.hashes += hashes;
        self.time += time;
        if self.time >= Duration::from_secs(1) {
            m.hash_rate
                .set(self.hashes as f64 / self.time.as_secs_f64());
            *self = HashRate::default();
        }
    }
}

/// Runs one mining job at a time on the blocking pool.
struct Producer {
    metrics: crate::metrics::Node,
    rate: Arc<std::sync::Mutex<HashRate>>,
    miner: Arc<Miner>,
    key: NodeKey,
    chain_id: Hash32,
    events: EventTx,
    shutdown: CancellationToken,
    current: Option<(u64, CancellationToken)>,
}

impl Producer {
    fn mine(&mut self, job: u64, template: BlockTemplate) -> Instant {
        self.cancel();
        let token = self.shutdown.child_token();
        self.current = Some((job, token.clone()));
        let (miner, key, chain_id, events) = (
            self.miner.clone(),
            self.key.clone(),
            self.chain_id,
            self.events.clone(),
        );
        let (metrics, rate) = (self.metrics.clone(), self.rate.clone());
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            let (block, hashes) = template.mine_counted(&miner, &token, &key, &chain_id);
            rate.lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(hashes, started.elapsed(), &metrics);
            let _ = events.blocking_send((now_ms(), Event::Mined { job, block }));
        });
        started
    }

    fn cancel_job(&mut self, job: u64) {
        if let Some((_, token)) = self.current.take_if(|(j, _)| *j == job) {
            token.cancel();
        }
    }

    fn cancel(&mut self) {
        if let Some((_, token)) = self.current.take() {
            token.cancel();
        }
    }
}

/// Between the bus and the engine.
struct Router {
    /// The genesis' consensus mode (its messages topic).
    mode: &'static str,
    /// Where votes go before they are sent (PBFT).
    journal: Option<Journal>,
    /// The journal could not be written: no more votes leave this node.
    journal_failed: bool,
    /// When the engine's mode timer is due.
    wake: Option<tokio::time::Instant>,
    config: NodeConfig,
    topics: Topics,
    outlet: Outlet,
    producer: Producer,
    reports: Option<mpsc::UnboundedSender<MinedBlock>>,
    /// This process's instance number, and when it started (ms since the epoch): a node head
    /// for our id with another instance, newer than that, means another process has our id.
    instance: u64,
    started_ms: u64,
    /// When the current mining job started (for the report of the block it yields).
    mining_since: Option<Instant>,
    /// Messages refused before reaching the engine (they count in its `rejected`).
    refused: u64,
}

impl Router {
    /// Decodes a message into an engine event; refused messages are dead-lettered here.
    fn route(&mut self, msg: Incoming) -> Result<Option<Event>, NodeError> {
        let max = self.config.max_payload;
        if msg.payload.is_empty() {
            return Ok(None); // A cleared retained message.
        }
        let event = match self.topics.parse(&msg.topic) {
            Some(Route::Average { cabinet, quantity }) => {
                match decode::<Average>(&msg.payload, self.config.max_average) {
                    Ok(a) if a.cabinet == cabinet && a.quantity == quantity => Event::Average(a),
                    Ok(a) => {
                        return self.refuse(
                            &msg,
                            &format!("payload is for {}/{}", a.cabinet, a.quantity),
                        )
                    }
                    Err(e) => return self.refuse(&msg, &e.to_string()),
                }
            }
            Some(Route::Block) => {
                let parsed = std::str::from_utf8(&msg.payload)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Block::from_json(t).map_err(|e| e.to_string()));
                match parsed {
                    Ok(block) if msg.payload.len() <= max => Event::Block(block),
                    Ok(_) => return self.refuse(&msg, "block larger than the payload limit"),
                    Err(e) => return self.refuse(&msg, &format!("malformed block: {e}")),
                }
            }
            Some(Route::Head) => match decode::<HeadMessage>(&msg.payload, max) {
                Ok(head) => Event::Head { head, best: true },
                Err(e) => return self.refuse(&msg, &e.to_string()),
            },
            Some(Route::NodeHead { node: id }) => match decode::<HeadMessage>(&msg.payload, max) {
                Ok(head) if head.node != id => {
                    return self.refuse(&msg, "node head names another node")
                }
                Ok(head) if id == self.config.id => {
                    // Another instance number in a head published after we started: another
                    // live process has our id (a retained head of our previous run is older).
                    let newer = crate::ledger::Timestamp::parse(&head.ts)
                        .is_ok_and(|t| t.millis() > self.started_ms);
                    if head.instance.is_some_and(|i| i != self.instance) && newer {
                        return Err(NodeError::IdTaken(self.config.id.clone()));
                    }
                    return Ok(None);
                }
                Ok(head) => Event::Head { head, best: false },
                Err(e) => return self.refuse(&msg, &e.to_string()),
            },
            Some(Route::SyncRequest) => match decode::<SyncRequest>(&msg.payload, max) {
                Ok(req) if req.to == self.config.id => Event::SyncRequest(req),
                Ok(_) => return Ok(None),
                Err(e) => return self.refuse(&msg, &e.to_string()),
            },
            Some(Route::SyncReply { .. }) => match decode::<SyncReply>(&msg.payload, max) {
                Ok(reply) => Event::SyncReply(reply),
                Err(e) => return self.refuse(&msg, &e.to_string()),
            },
            Some(Route::Mode { mode }) if mode == self.mode => {
                match decode::<ModeMessage>(&msg.payload, max) {
                    Ok(m) => Event::Mode(m),
                    Err(e) => return self.refuse(&msg, &e.to_string()),
                }
            }
            // Another mode's messages (a node subscribes to every mode's topic).
            Some(Route::Mode { .. }) => return Ok(None),
            _ => return self.refuse(&msg, "not a topic a node reads"),
        };
        Ok(Some(event))
    }

    fn refuse(&mut self, msg: &Incoming, reason: &str) -> Result<Option<Event>, NodeError> {
        self.refused += 1;
        warn!(topic = %msg.topic, reason, "refused a message");
        self.dead_letter(&msg.topic, reason, &msg.payload);
        Ok(None)
    }

    fn dead_letter(&self, topic: &str, reason: &str, payload: &[u8]) {
        let letter = DeadLetter::new(ROLE, &self.config.id, topic, reason, payload);
        let _ = self.outlet.try_publish(
            self.topics.deadletter(ROLE),
            encode(&letter),
            QoS::AtMostOnce,
            false,
        );
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Publish(p) => self.publish(p).await,
            Action::Mine { job, template } => {
                self.mining_since = Some(self.producer.mine(job, template));
            }
            Action::CancelMining { job } => self.producer.cancel_job(job),
            Action::Journal(msg) => {
                if let Some(journal) = &mut self.journal {
                    // A vote that cannot be made durable is not sent: the next action is its
                    // publication, which the replica would otherwise disown after a restart.
                    if let Err(e) = journal.append(&msg) {
                        error!(node = %self.config.id, cause = %e, "cannot journal a vote; stopping");
                        self.journal_failed = true;
                    }
                }
            }
            Action::Wake { at_ms } => {
                let wait = Duration::from_millis(at_ms.saturating_sub(now_ms()));
                self.wake = Some(tokio::time::Instant::now() + wait);
            }
            Action::Report(report) => {
                match &report {
                    Report::Appended { block, mined: true } => {
                        info!(node = %self.config.id, index = block.index,
                        windows = block.records().len(), hash = %block.hash.short(), "block mined")
                    }
                    Report::Appended {
                        block,
                        mined: false,
                    } => debug!(node = %self.config.id, index = block.index,
                        hash = %block.hash.short(), "block received"),
                    Report::Reorg {
                        fork,
                        removed,
                        added,
                    } => info!(node = %self.config.id, fork, removed, added, "reorg"),
                }
                let mining = match &report {
                    Report::Appended { mined: true, .. } => self.mining_since.map(|t| t.elapsed()),
                    _ => None,
                };
                if let Some(tx) = &self.reports {
                    let _ = tx.send(MinedBlock {
                        node: self.config.id.clone(),
                        report,
                        mining,
                    });
                }
            }
        }
    }

    async fn publish(&mut self, p: Publication) {
        let t = &self.topics;
        let qos = QoS::AtLeastOnce;
        let result = match p {
            Publication::Block(block) => {
                let payload = Bytes::from(block.to_json());
                let header = HeaderMessage {
                    chain: self.producer.chain_id,
                    header: block.header(),
                };
                let cabinets: BTreeSet<&str> =
                    block.records().iter().map(|r| r.cabinet.as_str()).collect();
                let mut r = self
                    .outlet
                    .publish(t.block(), payload.clone(), qos, false)
                    .await;
                r = r.and(
                    self.outlet
                        .publish(t.header(), encode(&header), qos, false)
                        .await,
                );
                for cabinet in cabinets {
                    r = r.and(
                        self.outlet
                            .publish(t.commit(cabinet), payload.clone(), qos, false)
                            .await,
                    );
                }
                r
            }
            Publication::BestHead(head) => self.outlet.publish_retained(t.head(), encode(&head)),
            Publication::NodeHead(head) => self
                .outlet
                .publish_retained(t.node_head(&self.config.id), encode(&head)),
            Publication::Commit { cabinet, block } => {
                self.outlet
                    .publish(t.commit(&cabinet), block.to_json(), qos, false)
                    .await
            }
            Publication::SyncRequest(req) => {
                self.outlet
                    .publish(t.sync_request(), encode(&req), qos, false)
                    .await
            }
            Publication::SyncReply { to, reply } => {
                self.outlet
                    .publish(t.sync_reply(&to), encode(&reply), qos, false)
                    .await
            }
            Publication::Mode(_) if self.journal_failed => return,
            Publication::Mode(m) => {
                self.outlet
                    .publish(t.mode(self.mode), encode(&m), qos, false)
                    .await
            }
            Publication::DeadLetter {
                topic,
                reason,
                payload,
            } => {
                self.dead_letter(&topic, &reason, &payload);
                Ok(())
            }
        };
        if let Err(e) = result {
            debug!(cause = %e, "publication not queued");
        }
    }
}
