//! The cabinet's own finality check: a light client of the chain.
//!
//! A window leaves the outbox only when a block holding it (with the digests and sample count
//! this cabinet published) is final by the genesis rules **as this cabinet checks them**: under
//! proof of work, `finality_depth` blocks of valid work on top of it, on the branch with the most
//! work among the headers it verified itself (`ledger::rules::check_header`: link, hash, work,
//! signature). It follows the `ledger/header` stream (small), receives the full blocks that
//! concern it on its commit topic, and asks a node for headers (sync, headers only) when one
//! does not connect. Never one node's word: a forged block, a block of another genesis and a
//! branch with less work are all refused or outweighed.

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;

use super::outbox::Outbox;
use crate::ledger::rules::{
    check_detached_with, check_header_with, check_records, Verified, Violation,
};
use crate::ledger::{Block, Genesis, Hash32, Header, Record, Work};
use crate::messages::WindowTask;
use crate::node::wire::{
    HeadMessage, HeaderMessage, SyncKind, SyncReply, SyncRequest, MAX_HEADERS_PER_REPLY,
};
use crate::topics::Quantity;

/// Headers kept below the best one (older ones are final or forgotten).
const MIN_RETAIN: u64 = 256;
/// Headers kept whose parent is unknown.
const MAX_ORPHANS: usize = 512;
/// Windows watched after their release (see [`Finality::take_reissue`]).
const MAX_WATCHED: usize = 4096;
/// Blocks on top after which a released window is no longer watched: a reorg that deep is
/// beyond what any partition of a few minutes produces at wattchain's block rates.
const DEEP: u64 = 64;
/// Least time between two re-issues of one watched window.
const REISSUE_MS: u64 = 2_000;

/// Blocks remembered per window (forks and re-publications can name several).
const MAX_CANDIDATES: usize = 8;
/// How long a header request may go unanswered.
const SYNC_TIMEOUT_MS: u64 = 5_000;

/// Why a ledger message was refused (the dead-letter reason).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BlockRefusal {
    /// The payload is not a block, header or head of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
    /// For another genesis.
    #[error("for another chain {0}")]
    OtherChain(String),
    /// It breaks a chain rule.
    #[error("block {index}: {violation}")]
    Rules {
        /// Its index.
        index: u64,
        /// The rule.
        violation: Violation,
    },
    /// A record for one of our pending windows has other digests or count than we published.
    #[error("record for window {window} does not match the samples this cabinet published")]
    NotOurSamples {
        /// The window.
        window: u64,
    },
}

#[derive(Debug)]
struct Known {
    header: Header,
    work: Work,
}

/// Verified headers, the most-work one, and what waits for a parent.
#[derive(Debug)]
pub struct LightClient {
    genesis: Genesis,
    headers: HashMap<Hash32, Known>,
    best: Hash32,
    orphans: VecDeque<Header>,
    retain: u64,
    verified: Verified,
}

impl LightClient {
    /// A light client that knows only the genesis block.
    pub fn new(genesis: Genesis) -> LightClient {
        let header = genesis.header();
        let best = header.hash;
        let retain = MIN_RETAIN.max(4 * genesis.finality_depth);
        let mut headers = HashMap::new();
        headers.insert(best, Known { header, work: 0 });
        LightClient {
            genesis,
            headers,
            best,
            orphans: VecDeque::new(),
            retain,
            verified: Verified::default(),
        }
    }

    /// The best verified header.
    pub fn best(&self) -> &Header {
        &self.headers[&self.best].header
    }

    /// Work of the best branch.
    pub fn best_work(&self) -> Work {
        self.headers[&self.best].work
    }

    /// Whether the header is known (verified).
    pub fn knows(&self, hash: &Hash32) -> bool {
        self.headers.contains_key(hash)
    }

    /// Best header and ancestors at exponentially spaced heights, for a sync request.
    pub fn locator(&self) -> Vec<Hash32> {
        let mut out = Vec::new();
        let mut at = self.best;
        let (mut walked, mut next) = (0u64, 0u64);
        while let Some(k) = self.headers.get(&at) {
            if walked == next {
                out.push(at);
                next = if out.len() < 8 {
                    walked + 1
                } else {
                    walked * 2
                };
            }
            if out.len() >= 32 || k.header.index == 0 {
                break;
            }
            at = k.header.previous_hash;
            walked += 1;
        }
        out
    }

    /// Verifies `header` against its parent and keeps it; a header whose parent is unknown is
    /// held (bounded) and `Ok(false)` says so. Connecting orphans follow.
    pub fn offer(&mut self, header: Header) -> Result<bool, Violation> {
        if self.headers.contains_key(&header.hash) {
            return Ok(true);
        }
        let Some(parent) = self.headers.get(&header.previous_hash) else {
            // Checked as far as it can be without the parent, so garbage is not kept.
            check_detached_with(&self.genesis, &header, &mut self.verified)?;
            if !self.orphans.iter().any(|h| h.hash == header.hash) {
                self.orphans.push_back(header);
                if self.orphans.len() > MAX_ORPHANS {
                    self.orphans.pop_front();
                }
            }
            return Ok(false);
        };
        check_header_with(&self.genesis, &header, &parent.header, &mut self.verified)?;
        let work = parent.work + self.genesis.consensus.weight(&header);
        let hash = header.hash;
        self.headers.insert(hash, Known { header, work });
        if work > self.best_work() {
            self.best = hash;
            self.prune();
        }
        if let Some(pos) = self.orphans.iter().position(|h| h.previous_hash == hash) {
            if let Some(child) = self.orphans.remove(pos) {
                // An orphan that fails its parent's check is simply dropped.
                let _ = self.offer(child);
            }
        }
        Ok(true)
    }

    /// Blocks on top of `hash` on the best branch, if it is on it.
    pub fn confirmations(&self, hash: &Hash32) -> Option<u64> {
        let target = self.headers.get(hash)?.header.index;
        let best = self.best();
        let mut at = self.best;
        loop {
            let k = self.headers.get(&at)?;
            if k.header.index == target {
                return (at == *hash).then(|| best.index - target);
            }
            if k.header.index < target {
                return None;
            }
            at = k.header.previous_hash;
        }
    }

    /// Whether `hash` is final: on the best branch with enough confirmations by the rules.
    pub fn is_final(&self, hash: &Hash32) -> bool {
        match (self.headers.get(hash), self.confirmations(hash)) {
            (Some(k), Some(c)) => self.genesis.consensus.is_final(&k.header, c),
            _ => false,
        }
    }

    fn prune(&mut self) {
        let floor = self.best().index.saturating_sub(self.retain);
        if floor > 0 && self.headers.len() as u64 > 2 * self.retain {
            self.headers.retain(|_, k| k.header.index >= floor);
        }
    }
}

/// The windows a cabinet still holds (its outbox; a map in the simulation).
pub trait Held {
    /// The tasks published for `window`, if it is still held.
    fn tasks(&self, window: u64) -> Option<&[WindowTask]>;
}

impl Held for Outbox {
    fn tasks(&self, window: u64) -> Option<&[WindowTask]> {
        self.get(window).map(|p| p.tasks.as_slice())
    }
}

impl Held for BTreeMap<u64, Vec<WindowTask>> {
    fn tasks(&self, window: u64) -> Option<&[WindowTask]> {
        self.get(&window).map(Vec::as_slice)
    }
}

/// What the cabinet should do after a ledger message.
#[derive(Debug, Default)]
pub struct Outcome {
    /// A sync request to publish.
    pub request: Option<SyncRequest>,
}

/// Candidate blocks for our windows, and the light client that decides their finality.
#[derive(Debug)]
pub struct Finality {
    cabinet: String,
    agent: String,
    light: LightClient,
    /// Window → blocks that commit it with our samples (not yet final).
    candidates: BTreeMap<u64, Vec<Hash32>>,
    /// The node we ask for headers, the request number and its deadline.
    sync: Option<(String, u64, u64)>,
    next_request: u64,
    /// Who claimed the best head last (to ask when a header does not connect).
    best_node: Option<String>,
    /// The best header or the candidates changed since the last `take_final`.
    dirty: bool,
    /// Released windows, still watched until buried deep: their tasks, the blocks holding
    /// them, and when they were last re-issued.
    watched: BTreeMap<u64, Watched>,
}

#[derive(Debug)]
struct Watched {
    tasks: Vec<WindowTask>,
    blocks: Vec<Hash32>,
    reissued_ms: u64,
}

impl Finality {
    /// The finality check of cabinet `cabinet` (agent id `agent`, its replies topic).
    pub fn new(cabinet: &str, agent: &str, genesis: Genesis) -> Finality {
        Finality {
            cabinet: cabinet.to_owned(),
            agent: agent.to_owned(),
            light: LightClient::new(genesis),
            candidates: BTreeMap::new(),
            sync: None,
            next_request: 0,
            best_node: None,
            dirty: false,
            watched: BTreeMap::new(),
        }
    }

    /// The light client.
    pub fn light(&self) -> &LightClient {
        &self.light
    }

    fn chain(&self) -> Hash32 {
        self.light.genesis.id()
    }

    fn offer(
        &mut self,
        header: Header,
        now_ms: u64,
        out: &mut Outcome,
    ) -> Result<(), BlockRefusal> {
        let index = header.index;
        let best = self.light.best;
        let offered = self.light.offer(header);
        self.dirty |= self.light.best != best;
        match offered {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.ask(now_ms, out);
                Ok(())
            }
            Err(violation) => Err(BlockRefusal::Rules { index, violation }),
        }
    }

    fn ask(&mut self, now_ms: u64, out: &mut Outcome) {
        if self
            .sync
            .as_ref()
            .is_some_and(|(_, _, deadline)| now_ms < *deadline)
        {
            return;
        }
        let Some(node) = self.best_node.clone() else {
            return;
        };
        self.next_request += 1;
        self.sync = Some((node.clone(), self.next_request, now_ms + SYNC_TIMEOUT_MS));
        out.request = Some(SyncRequest {
            chain: self.chain(),
            from: self.agent.clone(),
            to: node,
            id: self.next_request,
            kind: SyncKind::Headers,
            locator: self.light.locator(),
            max: MAX_HEADERS_PER_REPLY,
            hashes: Vec::new(),
        });
    }

    /// A block on our commit topic: checked, and kept as a candidate for the windows it commits.
    pub fn on_block(
        &mut self,
        block: Block,
        outbox: &impl Held,
        now_ms: u64,
    ) -> Result<Outcome, BlockRefusal> {
        let mut out = Outcome::default();
        let index = block.index;
        check_records(&self.light.genesis, &block, |_, _| None)
            .map_err(|violation| BlockRefusal::Rules { index, violation })?;
        let ours: Vec<&Record> = block
            .records()
            .iter()
            .filter(|r| r.cabinet == self.cabinet)
            .collect();
        for r in &ours {
            // Windows we no longer hold (committed earlier, or from another run) cost nothing.
            let Some(tasks) = outbox.tasks(r.window) else {
                continue;
            };
            let same = tasks
                .iter()
                .all(|t| digest_of(r, t.quantity) == t.digest && r.n as usize == t.values.len());
            if !same {
                return Err(BlockRefusal::NotOurSamples { window: r.window });
            }
        }
        self.offer(block.header(), now_ms, &mut out)?;
        for r in &ours {
            if let Some(w) = self.watched.get_mut(&r.window) {
                if !w.blocks.contains(&block.hash) && w.blocks.len() < MAX_CANDIDATES {
                    w.blocks.push(block.hash);
                }
            }
        }
        for r in ours {
            if outbox.tasks(r.window).is_some() {
                let light = &self.light;
                let list = self.candidates.entry(r.window).or_default();
                if !list.contains(&block.hash) {
                    if list.len() >= MAX_CANDIDATES {
                        // Bounded: forget blocks off the best branch first, then the oldest.
                        list.retain(|h| light.confirmations(h).is_some());
                        if list.len() >= MAX_CANDIDATES {
                            list.remove(0);
                        }
                    }
                    list.push(block.hash);
                    self.dirty = true;
                }
            }
        }
        Ok(out)
    }

    /// A header from `ledger/header`.
    pub fn on_header(&mut self, msg: HeaderMessage, now_ms: u64) -> Result<Outcome, BlockRefusal> {
        if msg.chain != self.chain() {
            return Err(BlockRefusal::OtherChain(msg.chain.short()));
        }
        let mut out = Outcome::default();
        self.offer(msg.header, now_ms, &mut out)?;
        Ok(out)
    }

    /// A head (the best one, or a node's): whom to ask, and whether we lag behind it.
    pub fn on_head(&mut self, msg: HeadMessage, now_ms: u64) -> Result<Outcome, BlockRefusal> {
        if msg.chain != self.chain() {
            return Err(BlockRefusal::OtherChain(msg.chain.short()));
        }
        let mut out = Outcome::default();
        let ahead = !self.light.knows(&msg.header.hash) && msg.work > self.light.best_work();
        if ahead || self.best_node.is_none() {
            self.best_node = Some(msg.node.clone());
        }
        if ahead {
            self.ask(now_ms, &mut out);
        }
        Ok(out)
    }

    /// Headers we asked for.
    pub fn on_sync_reply(
        &mut self,
        reply: SyncReply,
        now_ms: u64,
    ) -> Result<Outcome, BlockRefusal> {
        let mut out = Outcome::default();
        let Some((node, id, _)) = self.sync.clone() else {
            return Ok(out);
        };
        if reply.id != id || reply.from != node {
            return Ok(out);
        }
        self.sync = None;
        if reply.chain != self.chain() {
            return Err(BlockRefusal::OtherChain(reply.chain.short()));
        }
        let more = reply.more && !reply.headers.is_empty();
        let best = self.light.best;
        for header in reply.headers {
            let index = header.index;
            let offered = self.light.offer(header);
            self.dirty |= self.light.best != best;
            match offered {
                Ok(true) => {}
                Ok(false) => return Ok(out),
                Err(violation) => return Err(BlockRefusal::Rules { index, violation }),
            }
        }
        if more {
            self.ask(now_ms, &mut out);
        }
        Ok(out)
    }

    /// Windows now final, removed from the candidates (the caller commits them in the outbox).
    /// They stay watched, in memory, until buried [`DEEP`]: see [`Finality::take_reissue`].
    pub fn take_final(&mut self, outbox: &impl Held) -> Vec<u64> {
        let mut done = Vec::new();
        if !self.dirty {
            return done;
        }
        let light = &self.light;
        let watched = &mut self.watched;
        self.candidates.retain(|&window, blocks| {
            let Some(tasks) = outbox.tasks(window) else {
                return false;
            };
            if blocks.iter().any(|h| light.is_final(h)) {
                done.push(window);
                if watched.len() < MAX_WATCHED {
                    watched.insert(
                        window,
                        Watched {
                            tasks: tasks.to_vec(),
                            blocks: std::mem::take(blocks),
                            reissued_ms: 0,
                        },
                    );
                }
                return false;
            }
            true
        });
        done
    }

    /// Released windows whose block left the best branch (a heavier branch without them came
    /// in: a reorg past finality, possible under proof of work when most of the work was cut
    /// off): their tasks, to publish again so that the nodes commit them anew. Windows buried
    /// [`DEEP`] blocks are forgotten.
    pub fn take_reissue(&mut self, now_ms: u64) -> Vec<Vec<WindowTask>> {
        if !std::mem::take(&mut self.dirty) {
            return Vec::new();
        }
        let light = &self.light;
        let mut again = Vec::new();
        self.watched.retain(|_, w| {
            let depth = w.blocks.iter().filter_map(|h| light.confirmations(h)).max();
            match depth {
                Some(d) if d >= DEEP => false,
                Some(_) => true,
                None => {
                    if now_ms >= w.reissued_ms + REISSUE_MS {
                        w.reissued_ms = now_ms;
                        again.push(w.tasks.clone());
                    }
                    true
                }
            }
        });
        again
    }
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
