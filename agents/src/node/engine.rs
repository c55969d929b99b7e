//! The node engine: a sans-IO state machine. Events in (an average, a block, a mining result, a
//! sync message, a peer's head, a timer tick), actions out (publish, mine, cancel mining, report).
//! The engine owns its [`ChainStore`] (synchronous; the runtime runs the engine on the blocking
//! pool, the simulation over a [`MemLog`](crate::ledger::store::MemLog)), and never touches the
//! network, the clock or the miner: time comes with each event, mining is an action whose result
//! comes back as [`Event::Mined`], so the simulation drives it all in virtual time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::assembler::{Assembler, Offer};
use super::sync::Syncer;
use super::wire::{HeadMessage, ModeMessage, SyncReply, SyncRequest};
use crate::ledger::consensus::{Checker, Consensus, ModeAction, ModeEvent, ModeState, View};
use crate::ledger::rules::{check_detached, check_records};
use crate::ledger::store::{ChainLog, ChainStore, Change, Insert, Status, StoreError};
use crate::ledger::{
    Block, BlockTemplate, Hash32, Header, NodeKey, Record, Timestamp, Violation, Work,
};
use crate::messages::Average;

/// The first bytes of a block's JSON, for a dead letter (without serialising all of it).
fn json_head(block: &Block) -> Vec<u8> {
    struct Head(Vec<u8>);
    impl std::io::Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let room = crate::messages::DEADLETTER_HEAD_BYTES.saturating_sub(self.0.len());
            if room == 0 {
                return Err(std::io::Error::other("enough"));
            }
            let n = buf.len().min(room);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut head = Head(Vec::new());
    let _ = serde_json::to_writer(&mut head, block);
    head.0
}

/// Tunables of the engine (part of [`NodeConfig`](super::NodeConfig)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most records per block this node builds (at most the genesis limit).
    pub max_records_per_block: usize,
    /// Most windows in progress before the oldest partial one is dropped.
    pub max_pending: usize,
    /// Least time between two re-publications of the block committing a re-issued window.
    pub reack_interval_ms: u64,
    /// How long a sync request may go unanswered.
    pub sync_timeout_ms: u64,
    /// Most headers held while checking a competing branch.
    pub max_sync_headers: usize,
    /// A peer not heard from for this long is forgotten.
    pub peer_timeout_ms: u64,
    /// The node head is published again after this long without a change (peers that missed
    /// one learn it; their map of who holds what stays fresh).
    pub announce_every_ms: u64,
    /// How long a tie (a peer on another head with as much work) must last before this node
    /// mines a block to break it; plus up to as much again, different for every node (from its
    /// key), so that one node usually breaks it alone instead of all at once.
    pub tie_break_ms: u64,
    /// Under pow, how long a node whose turn it is not waits for the block of the node whose
    /// turn it is (see [`turn`](super::turn)) before mining on the same head itself.
    pub handoff_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_records_per_block: 256,
            max_pending: 10_000,
            reack_interval_ms: 5_000,
            sync_timeout_ms: 5_000,
            max_sync_headers: 100_000,
            peer_timeout_ms: 30_000,
            announce_every_ms: 2_000,
            tie_break_ms: 500,
            handoff_ms: 400,
        }
    }
}

/// What the engine is told.
#[derive(Debug, Clone)]
pub enum Event {
    /// An average (already decoded and checked against its topic).
    Average(Average),
    /// A block from `ledger/block`.
    Block(Block),
    /// The result of [`Action::Mine`] `job`: the block, or `None` if mining was cancelled.
    Mined {
        /// The job number.
        job: u64,
        /// The mined, signed block.
        block: Option<Block>,
    },
    /// Another node's head (`ledger/node/{id}/head`), or the retained best head
    /// (`ledger/head`) when `best` is set.
    Head {
        /// The message.
        head: HeadMessage,
        /// It came from `ledger/head`.
        best: bool,
    },
    /// A sync request addressed to any node.
    SyncRequest(SyncRequest),
    /// A reply to one of our sync requests.
    SyncReply(SyncReply),
    /// The clock moved (the runtime ticks every few hundred milliseconds).
    Tick,
    /// The mode timer asked for with [`Action::Wake`] is due.
    Timer,
    /// A signed consensus message from `{root}/ledger/{mode}` (signature not checked yet).
    Mode(ModeMessage),
}

/// A message the engine wants published; the runtime maps it to topics.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    /// A block this node produced: `ledger/block`, `ledger/header`, and the commit topic of
    /// each cabinet it names.
    Block(Block),
    /// The best head, retained on `ledger/head`.
    BestHead(HeadMessage),
    /// This node's head, retained on `ledger/node/{id}/head`.
    NodeHead(HeadMessage),
    /// A committed block again, for one cabinet that re-issued a window it holds.
    Commit {
        /// The cabinet.
        cabinet: String,
        /// The block.
        block: Block,
    },
    /// A sync request.
    SyncRequest(SyncRequest),
    /// A sync reply for node `to`.
    SyncReply {
        /// The asking node.
        to: String,
        /// The reply.
        reply: SyncReply,
    },
    /// A signed consensus message, for `{root}/ledger/{mode}`; every node receives it, this
    /// one included (the broker loops it back).
    Mode(ModeMessage),
    /// A refused message, for `deadletter/node`.
    DeadLetter {
        /// What it was (a topic name, or `sync` for replies).
        topic: String,
        /// Why it was refused.
        reason: String,
        /// Its first bytes.
        payload: Vec<u8>,
    },
}

/// Something worth telling the operator (and `wattchain up`'s block lines).
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// A block joined the main chain; `mined` when this node produced it.
    Appended {
        /// The block.
        block: Box<Block>,
        /// Produced by this node.
        mined: bool,
    },
    /// The main chain moved to another branch.
    Reorg {
        /// Last common block.
        fork: u64,
        /// Blocks that left the main chain.
        removed: u64,
        /// Blocks that joined it.
        added: u64,
    },
}

/// What the engine asks the runtime to do.
// Actions live for one dispatch, in a Vec handed straight to the runtime: boxing the larger
// variants would allocate once per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish a message.
    Publish(Publication),
    /// Mine (and sign) this template as job `job`; answer with [`Event::Mined`].
    Mine {
        /// The job number.
        job: u64,
        /// What to mine.
        template: BlockTemplate,
    },
    /// Stop mining job `job` (its result, if any, is ignored).
    CancelMining {
        /// The job number.
        job: u64,
    },
    /// Tell the operator.
    Report(Report),
    /// Append this consensus message to the node's journal and make it durable (before the
    /// [`Publication::Mode`] that follows it is published).
    Journal(ModeMessage),
    /// Deliver [`Event::Timer`] at this time (ms since the epoch); replaces an earlier request
    /// (the engine asks only for its earliest mode timer).
    Wake {
        /// When.
        at_ms: u64,
    },
}

/// Counters of one engine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NodeStats {
    /// Blocks this node mined that joined the main chain.
    pub mined: u64,
    /// Blocks mined on a parent that was no longer the head (stale).
    pub stale: u64,
    /// Blocks received and accepted (main or side).
    pub received: u64,
    /// Reorgs.
    pub reorgs: u64,
    /// Averages ignored as duplicates.
    pub duplicates: u64,
    /// Messages refused (dead-lettered).
    pub rejected: u64,
    /// Blocks re-published for re-issued windows.
    pub reacks: u64,
}

#[derive(Debug)]
struct Job {
    id: u64,
    parent: Hash32,
    records: Vec<Record>,
}

/// A peer's claimed head.
#[derive(Debug, Clone)]
pub(super) struct PeerHead {
    pub(super) hash: Hash32,
    pub(super) work: Work,
    pub(super) seen_ms: u64,
}

/// One node's state machine.
pub struct Engine<L: ChainLog> {
    pub(super) id: String,
    key: NodeKey,
    pub(super) store: ChainStore<L>,
    consensus: Arc<dyn Consensus>,
    mode: ModeState,
    pending: Assembler,
    job: Option<Job>,
    next_job: u64,
    pub(super) config: EngineConfig,
    pub(super) peers: BTreeMap<String, PeerHead>,
    /// The retained `ledger/head` as last seen: who, which block, what work it claims.
    best_seen: Option<(String, Hash32, Work)>,
    pub(super) syncer: Syncer,
    reacked: HashMap<(u64, String), u64>,
    /// Height of the newest main-chain block holding records (for finality).
    last_records: u64,
    pub(super) now_ms: u64,
    last_announce_ms: u64,
    /// Work of the heaviest branch ending in a block with valid work that breaks a record rule:
    /// light clients cannot see the records, so the chain must outweigh it.
    rival_work: Work,
    /// Since when a tie with a peer's head has lasted.
    tie_since: Option<u64>,
    /// This process's random instance number (in its node heads).
    instance: u64,
    /// Inserting a batch of blocks from sync: announce and mine once, at its end.
    pub(super) in_batch: bool,
    /// The earliest mode timer pending (ms since the epoch).
    mode_timer: Option<u64>,
    /// The head this node has been waiting on for another node's turn, and since when.
    pub(super) waiting: Option<(Hash32, u64)>,
    stats: NodeStats,
}

impl<L: ChainLog> Engine<L> {
    /// An engine over `store`, signing with `key`.
    pub fn new(id: &str, key: NodeKey, store: ChainStore<L>, config: EngineConfig) -> Engine<L> {
        let consensus = store.genesis().consensus.clone();
        let max = config
            .max_records_per_block
            .min(store.genesis().max_records_per_block);
        let mut engine = Engine {
            id: id.to_owned(),
            key,
            consensus,
            mode: ModeState::default(),
            pending: Assembler::new(config.max_pending),
            job: None,
            next_job: 1,
            config: EngineConfig {
                max_records_per_block: max,
                ..config
            },
            peers: BTreeMap::new(),
            best_seen: None,
            syncer: Syncer::default(),
            reacked: HashMap::new(),
            last_records: 0,
            now_ms: 0,
            last_announce_ms: 0,
            rival_work: 0,
            tie_since: None,
            instance: rand::random(),
            in_batch: false,
            mode_timer: None,
            waiting: None,
            stats: NodeStats::default(),
            store,
        };
        engine.last_records = engine.find_last_records();
        engine
    }

    /// This process's instance number (what its node heads carry).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The store (read-only).
    pub fn store(&self) -> &ChainStore<L> {
        &self.store
    }

    /// Gives the store back (a simulated crash keeps its disk).
    pub fn into_store(self) -> ChainStore<L> {
        self.store
    }

    /// Counters so far.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Whether a sync session is running.
    pub fn syncing(&self) -> bool {
        self.syncer.active()
    }

    /// Windows held, not yet on the main chain (partial, ready, or in the block being mined).
    pub fn pending(&self) -> usize {
        self.pending.pending() + self.job.as_ref().map_or(0, |j| j.records.len())
    }

    /// The first actions after a start: announce the head, start producing if needed.
    pub fn start(&mut self, now_ms: u64) -> Vec<Action> {
        self.now_ms = now_ms;
        let mut out = Vec::new();
        self.announce(&mut out);
        self.drive(ModeEvent::Head, &mut out);
        out
    }

    /// Handles one event at time `now_ms`.
    pub fn handle(&mut self, now_ms: u64, event: Event) -> Result<Vec<Action>, StoreError> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match event {
            Event::Average(avg) => self.on_average(avg, &mut out),
            Event::Block(block) => {
                self.on_block(block, false, &mut out)?;
            }
            Event::Mined { job, block } => self.on_mined(job, block, &mut out)?,
            Event::Head { head, best } => self.on_head(head, best, &mut out),
            Event::SyncRequest(req) => self.serve(req, &mut out)?,
            Event::SyncReply(reply) => self.on_sync_reply(reply, &mut out)?,
            Event::Tick => self.on_tick(&mut out),
            Event::Timer => {
                if self.mode_timer.is_some_and(|t| t <= self.now_ms) {
                    self.mode_timer = None;
                }
                self.drive(ModeEvent::Timer, &mut out);
            }
            Event::Mode(msg) => self.on_mode_message(msg, &mut out),
        }
        Ok(out)
    }

    fn on_average(&mut self, avg: Average, out: &mut Vec<Action>) {
        if let Some(index) = self.store.committed_in(&avg.cabinet, avg.window) {
            self.stats.duplicates += 1;
            self.reack(index, &avg.cabinet, out);
            return;
        }
        let (cabinet, window) = (avg.cabinet.clone(), avg.window);
        let (offer, evicted) = self.pending.offer(avg);
        if let Some((cab, win)) = evicted {
            warn!(cabinet = %cab, window = win, "too many windows in progress: dropping the oldest partial window");
            self.reject(
                "average",
                &format!("pending windows full: window {win} of {cab} dropped"),
                &[],
                out,
            );
        }
        match offer {
            Offer::Stored => {}
            Offer::Ready => {
                debug!(cabinet = %cabinet, window, "window ready");
                self.drive(ModeEvent::Ready, out);
            }
            Offer::Duplicate => self.stats.duplicates += 1,
            Offer::Conflict(reason) => self.reject("average", &reason, &[], out),
        }
    }

    /// Re-publishes, on the cabinet's commit topic, the block committing a window the cabinet
    /// re-issued (it has not seen the block final yet); at most once per interval.
    fn reack(&mut self, index: u64, cabinet: &str, out: &mut Vec<Action>) {
        let key = (index, cabinet.to_string());
        if self
            .reacked
            .get(&key)
            .is_some_and(|t| self.now_ms < t + self.config.reack_interval_ms)
        {
            return;
        }
        if self.reacked.len() > 4096 {
            self.reacked.clear();
        }
        self.reacked.insert(key, self.now_ms);
        match self.store.read(index) {
            Ok(block) => {
                self.stats.reacks += 1;
                out.push(Action::Publish(Publication::Commit {
                    cabinet: cabinet.to_string(),
                    block,
                }));
            }
            Err(e) => warn!(index, cause = %e, "cannot read back a committed block"),
        }
    }

    pub(super) fn on_block(
        &mut self,
        block: Block,
        from_sync: bool,
        out: &mut Vec<Action>,
    ) -> Result<Status, StoreError> {
        let hash = block.hash;
        // For the mode (equivocation evidence) once the block is in the tree.
        let header = block.header();
        // Kept for the dead letter only when refused (most blocks are not).
        let copy = (!from_sync).then(|| block.clone());
        // A batch from sync is made durable once, at its end (`finish_batch`).
        let insert = if from_sync {
            self.store.insert_deferred(block)?
        } else {
            self.store.insert(block)?
        };
        match &insert.status {
            Status::Invalid(v) => {
                if matches!(
                    v,
                    Violation::RecordCount { .. }
                        | Violation::BadRecord { .. }
                        | Violation::DuplicateWindow { .. }
                ) {
                    if let Some(copy) = &copy {
                        if let Some(parent) = self.store.work_of(&copy.previous_hash) {
                            let work = parent + self.consensus.weight(&copy.header());
                            self.rival_work = self.rival_work.max(work);
                        }
                    }
                }
                let reason = format!("block {}: {v}", hash.short());
                let payload = copy.map(|b| json_head(&b)).unwrap_or_default();
                self.reject("block", &reason, &payload, out);
            }
            Status::Orphan => {
                debug!(block = %hash.short(), "block with an unknown parent; asking peers");
                self.sync_from_best_peer(out);
            }
            Status::Side | Status::Extended | Status::Reorged => self.stats.received += 1,
            Status::Known => {}
        }
        if matches!(
            insert.status,
            Status::Side | Status::Extended | Status::Reorged
        ) {
            self.drive(ModeEvent::Block { header: &header }, out);
        }
        let status = insert.status.clone();
        self.apply(insert, None, out);
        Ok(status)
    }

    fn on_mined(
        &mut self,
        job: u64,
        block: Option<Block>,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let Some(current) = self.job.take_if(|j| j.id == job) else {
            if block.is_some() {
                self.stats.stale += 1;
            }
            return Ok(());
        };
        let Some(block) = block else {
            self.pending.restore(current.records);
            self.drive(ModeEvent::Head, out);
            return Ok(());
        };
        if block.previous_hash != self.store.head().hash {
            self.stats.stale += 1;
            self.pending.restore(current.records);
            self.drive(ModeEvent::Head, out);
            return Ok(());
        }
        if self.consensus.proposes() {
            // A proposal, not a chain block yet: its records stay pending until it is
            // certified (then `committed` takes them out) or another block commits them.
            self.pending.restore(current.records);
            self.drive(ModeEvent::Produced { block: &block }, out);
            return Ok(());
        }
        let insert = self.store.insert(block.clone())?;
        match &insert.status {
            Status::Extended => {
                self.stats.mined += 1;
                out.push(Action::Publish(Publication::Block(block.clone())));
            }
            other => {
                // Our own template broke a rule: a bug, or a record that slipped in twice.
                warn!(status = ?other, "a block this node mined was not accepted; its records go back");
                self.pending.restore(current.records);
            }
        }
        self.apply(insert, Some(block.hash), out);
        Ok(())
    }

    /// Follows main-chain moves: pending records, reports, head announcements, mining.
    fn apply(&mut self, insert: Insert, mined: Option<Hash32>, out: &mut Vec<Action>) {
        if insert.changes.is_empty() {
            return;
        }
        for change in insert.changes {
            match change {
                Change::Extended(block) => {
                    self.committed(&block);
                    let mined = mined == Some(block.hash);
                    out.push(Action::Report(Report::Appended { block, mined }));
                }
                Change::Reorg {
                    fork,
                    removed,
                    added,
                } => {
                    self.stats.reorgs += 1;
                    info!(node = %self.id, fork, removed = removed.len(), added = added.len(), "reorg");
                    out.push(Action::Report(Report::Reorg {
                        fork,
                        removed: removed.len() as u64,
                        added: added.len() as u64,
                    }));
                    for block in &added {
                        self.committed(block);
                    }
                    // Orphaned records go back to the pending pool unless the new branch has them.
                    let back: Vec<Record> = removed
                        .iter()
                        .flat_map(|b| b.records().iter().cloned())
                        .filter(|r| self.store.committed_in(&r.cabinet, r.window).is_none())
                        .collect();
                    self.pending.restore(back);
                    for block in added {
                        out.push(Action::Report(Report::Appended {
                            block: Box::new(block),
                            mined: false,
                        }));
                    }
                }
            }
        }
        self.last_records = self.find_last_records();
        // A new head: whatever we were mining is on a stale parent now.
        if let Some(job) = self.job.take_if(|j| j.parent != self.store.head().hash) {
            out.push(Action::CancelMining { job: job.id });
            self.pending.restore(job.records);
        }
        if let Some(job) = &mut self.job {
            // The records another node's block committed are not ours to commit any more.
            let store = &self.store;
            job.records
                .retain(|r| store.committed_in(&r.cabinet, r.window).is_none());
        }
        self.announce(out);
        self.drive(ModeEvent::Head, out);
    }

    fn committed(&mut self, block: &Block) {
        self.pending.committed(
            block
                .records()
                .iter()
                .map(|r| (r.cabinet.as_str(), r.window)),
        );
        if !block.records().is_empty() {
            self.last_records = self.last_records.max(block.index);
        }
    }

    /// Height of the newest main-chain block with records, looking back at most k blocks.
    fn find_last_records(&self) -> u64 {
        let head = self.store.head().index;
        let depth = self.store.genesis().finality_depth;
        for index in (head.saturating_sub(depth)..=head).rev() {
            if self
                .store
                .read(index)
                .is_ok_and(|b| !b.records().is_empty())
            {
                return index;
            }
        }
        0
    }

    /// A consensus message: for this chain, signed by its sender, then the mode's.
    fn on_mode_message(&mut self, msg: ModeMessage, out: &mut Vec<Action>) {
        let why = if msg.chain != self.store.genesis().id() {
            Some(format!(
                "mode message for another chain {}",
                msg.chain.short()
            ))
        } else if !msg.verifies(self.consensus.message_tag()) {
            Some(format!(
                "mode message signature by {} does not verify",
                msg.from.short()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let head = serde_json::to_vec(&msg).unwrap_or_default();
            self.reject(self.consensus.mode(), &why, &head, out);
            return;
        }
        self.drive(
            ModeEvent::Message {
                from: &msg.from,
                payload: &msg.body,
                sig: &msg.sig,
            },
            out,
        );
    }

    /// Asks the consensus mode what to do now, and starts mining if it says produce.
    fn drive(&mut self, event: ModeEvent<'_>, out: &mut Vec<Action>) {
        // A block noted during a sync batch still counts (evidence); producing waits for the end.
        let noting = matches!(event, ModeEvent::Block { .. });
        if self.in_batch && !noting {
            return;
        }
        let head = self.store.head().clone();
        let confirmations = head.index - self.last_records;
        let work = self.store.work();
        let tie = self
            .peers
            .values()
            .any(|p| p.hash != head.hash && p.work >= work);
        let since = if tie {
            *self.tie_since.get_or_insert(self.now_ms)
        } else {
            self.tie_since = None;
            self.now_ms
        };
        let jitter = u64::from(self.key.public().0[0]) * self.config.tie_break_ms / 255;
        let contested = work <= self.rival_work
            || (tie && self.now_ms >= since + self.config.tie_break_ms + jitter);
        let store = &self.store;
        let check = |block: &Block| check_proposal(store, &head, block);
        let view = View {
            head: &head,
            pending: self.pending.ready(),
            unfinal: self.last_records > 0 && !self.consensus.is_final(&head, confirmations),
            contested,
            behind: self.peers.values().any(|p| p.work > work),
            me: &self.key.public(),
            now_ms: self.now_ms,
            check: Checker(&check),
        };
        let actions = self.consensus.on_event(&mut self.mode, &view, &event);
        for action in actions {
            match action {
                ModeAction::Produce { parent, consensus } => {
                    if noting
                        || self.job.is_some()
                        || parent != head.hash
                        || self.syncer.active()
                        || !self.my_turn(&head)
                    {
                        continue;
                    }
                    self.produce(&head, consensus, out);
                }
                ModeAction::SetTimer { at_ms } => {
                    if self
                        .mode_timer
                        .is_none_or(|t| at_ms < t || t <= self.now_ms)
                    {
                        self.mode_timer = Some(at_ms);
                        out.push(Action::Wake { at_ms });
                    }
                }
                ModeAction::Broadcast(body) => {
                    let msg = ModeMessage::sign(
                        &self.key,
                        self.consensus.message_tag(),
                        self.store.genesis().id(),
                        body,
                    );
                    if self.consensus.journals() {
                        // Durable before it leaves: the runtime writes, syncs, then publishes.
                        out.push(Action::Journal(msg.clone()));
                    }
                    out.push(Action::Publish(Publication::Mode(msg)));
                }
                ModeAction::Append(block) => {
                    if let Err(e) = self.append_certified(*block, out) {
                        warn!(node = %self.id, cause = %e, "cannot store a certified block");
                    }
                }
            }
        }
    }

    /// A block the mode certified (PBFT: 2f+1 commits): into the chain, then to everyone.
    fn append_certified(&mut self, block: Block, out: &mut Vec<Action>) -> Result<(), StoreError> {
        let insert = self.store.insert(block.clone())?;
        match &insert.status {
            Status::Extended | Status::Reorged => {
                let mine = block.producer == self.key.public();
                if mine {
                    self.stats.mined += 1;
                }
                out.push(Action::Publish(Publication::Block(block.clone())));
                self.apply(insert, mine.then_some(block.hash), out);
            }
            Status::Known | Status::Side => {}
            other => warn!(node = %self.id, status = ?other, "a certified block was refused"),
        }
        Ok(())
    }

    /// Replays this node's journaled consensus messages into the mode before it starts (what
    /// it would send again is not: it was sent before the restart).
    pub fn restore(&mut self, journal: Vec<ModeMessage>) {
        let (tag, chain, me) = (
            self.consensus.message_tag(),
            self.store.genesis().id(),
            self.key.public(),
        );
        let mut ignored = Vec::new();
        for msg in journal {
            if msg.chain == chain && msg.from == me && msg.verifies(tag) {
                self.drive(
                    ModeEvent::Message {
                        from: &msg.from,
                        payload: &msg.body,
                        sig: &msg.sig,
                    },
                    &mut ignored,
                );
            }
        }
        self.mode_timer = None;
    }

    fn produce(
        &mut self,
        head: &Header,
        consensus: Option<serde_json::Map<String, serde_json::Value>>,
        out: &mut Vec<Action>,
    ) {
        let mut records = self.pending.take_ready(self.config.max_records_per_block);
        records.retain(|r| self.store.committed_in(&r.cabinet, r.window).is_none());
        let seal = match self.consensus.seal(consensus.as_ref()) {
            Ok(seal) => seal,
            Err(e) => {
                warn!(cause = %e, "the consensus mode produced a block object it refuses");
                self.pending.restore(records);
                return;
            }
        };
        let timestamp = Timestamp::from_millis(self.now_ms)
            .unwrap_or(head.timestamp)
            .max(head.timestamp);
        let template = BlockTemplate {
            index: head.index + 1,
            previous_hash: head.hash,
            timestamp,
            difficulty: self.consensus.difficulty(head.index + 1),
            records: records.clone(),
            producer: self.key.public(),
            consensus,
            seal,
        };
        let id = self.next_job;
        self.next_job += 1;
        debug!(node = %self.id, job = id, index = template.index, records = records.len(), "mining");
        self.job = Some(Job {
            id,
            parent: head.hash,
            records,
        });
        out.push(Action::Mine { job: id, template });
    }

    /// The head message of this node.
    fn head_message(&self, state: Option<&str>) -> HeadMessage {
        let peers = if state.is_some() {
            self.peers.keys().cloned().collect()
        } else {
            Vec::new()
        };
        HeadMessage {
            chain: self.store.genesis().id(),
            node: self.id.clone(),
            header: self.store.head().clone(),
            work: self.store.work(),
            state: state.map(str::to_owned),
            peers,
            instance: state.map(|_| self.instance),
            ts: Timestamp::from_millis(self.now_ms)
                .unwrap_or(self.store.head().timestamp)
                .to_string(),
        }
    }

    /// Ends a batch of blocks from sync: durable, then announced and driven once.
    pub(super) fn finish_batch(&mut self, out: &mut Vec<Action>) -> Result<(), StoreError> {
        self.in_batch = false;
        self.store.flush()?;
        self.announce(out);
        self.drive(ModeEvent::Head, out);
        Ok(())
    }

    /// Publishes this node's head, and the best head if ours beats the retained one.
    pub(super) fn announce(&mut self, out: &mut Vec<Action>) {
        if self.in_batch {
            return;
        }
        self.last_announce_ms = self.now_ms;
        let state = if self.syncer.active() {
            "syncing"
        } else if self.job.is_some() {
            "mining"
        } else {
            "synced"
        };
        out.push(Action::Publish(Publication::NodeHead(
            self.head_message(Some(state)),
        )));
        let ours = self.store.work();
        let beats = match &self.best_seen {
            None => true,
            Some((_, hash, _)) if *hash == self.store.head().hash => false,
            Some((_, hash, claimed)) => match self.store.work_of(hash) {
                // We know that block: its real work, not the claim, is what we must beat.
                Some(real) => ours > real,
                None => ours > *claimed,
            },
        };
        if beats {
            self.best_seen = Some((self.id.clone(), self.store.head().hash, ours));
            out.push(Action::Publish(Publication::BestHead(
                self.head_message(None),
            )));
        }
    }

    fn on_head(&mut self, head: HeadMessage, best: bool, out: &mut Vec<Action>) {
        if head.chain != self.store.genesis().id() {
            if best {
                // Another genesis's head on our topic: ours replaces it at the next change.
                self.best_seen = None;
            }
            self.reject(
                "head",
                &format!("head for another chain {}", head.chain.short()),
                &[],
                out,
            );
            return;
        }
        if head.node == self.id {
            if best {
                self.best_seen = Some((head.node, head.header.hash, head.work));
            }
            return;
        }
        if best {
            self.best_seen = Some((head.node.clone(), head.header.hash, head.work));
        } else {
            if self.peers.len() >= 64 && !self.peers.contains_key(&head.node) {
                return;
            }
            self.peers.insert(
                head.node.clone(),
                PeerHead {
                    hash: head.header.hash,
                    work: head.work,
                    seen_ms: self.now_ms,
                },
            );
        }
        // Unknown, or only held as an orphan (its parent missing): a reason to sync, or a
        // failed sync for an orphan would leave this node behind for good.
        if head.work > self.store.work() && self.store.work_of(&head.header.hash).is_none() {
            self.start_sync(&head.node, head.work, out);
        }
    }

    fn on_tick(&mut self, out: &mut Vec<Action>) {
        let timeout = self.config.peer_timeout_ms;
        let now = self.now_ms;
        self.peers
            .retain(|_, p| now.saturating_sub(p.seen_ms) < timeout);
        if now.saturating_sub(self.last_announce_ms) >= self.config.announce_every_ms {
            self.announce(out);
        }
        self.sync_tick(out);
        if self.mode_timer.is_some_and(|t| t <= now) {
            self.mode_timer = None;
        }
        self.drive(ModeEvent::Timer, out);
    }

    pub(super) fn reject(
        &mut self,
        topic: &str,
        reason: &str,
        payload: &[u8],
        out: &mut Vec<Action>,
    ) {
        self.stats.rejected += 1;
        warn!(node = %self.id, topic, reason, "refused a message");
        out.push(Action::Publish(Publication::DeadLetter {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
            payload: payload.iter().copied().take(256).collect(),
        }));
    }
}

/// What a replica checks of a block proposed on `head` before it votes: the chain rules except
/// the leader/certificate step (hash, difficulty, signature, link, time, records, no window
/// twice on this branch).
fn check_proposal<L: ChainLog>(
    store: &ChainStore<L>,
    head: &Header,
    block: &Block,
) -> Result<(), String> {
    let genesis = store.genesis();
    let header = block.header();
    if header.index != head.index + 1 || header.previous_hash != head.hash {
        return Err(format!("not on our head #{}", head.index));
    }
    check_detached(genesis, &header).map_err(|v| v.to_string())?;
    if header.timestamp < head.timestamp {
        return Err(format!(
            "timestamp {} before the parent's",
            header.timestamp
        ));
    }
    check_records(genesis, block, |cabinet, window| {
        store.committed_in(cabinet, window)
    })
    .map_err(|v| v.to_string())
}
