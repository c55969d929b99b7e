//! Sync over MQTT, headers first: ask one peer for the headers after our locator, verify them
//! with the rules as they come (link, hash, work, signature), and only when the verified branch
//! carries more work than ours fetch its blocks and insert them. Every answer is bounded
//! (headers per reply, blocks per request, headers held per session, a deadline per request);
//! an answer that lies — a header that breaks a rule, a block that is not the one asked for,
//! more than asked, a claimed work its headers do not reach — ends the session, is
//! dead-lettered, and the peer is not asked again for a while.

use std::collections::{HashMap, VecDeque};

use tracing::{debug, info};

use super::engine::{Action, Engine, Publication};
use super::wire::{
    SyncKind, SyncReply, SyncRequest, MAX_BLOCKS_PER_REQUEST, MAX_HEADERS_PER_REPLY,
};
use crate::ledger::store::{ChainLog, Status, StoreError};
use crate::ledger::{Hash32, Header, Work};

/// Most bytes of blocks one reply carries (inside a 1 MiB MQTT packet).
const REPLY_BYTES: usize = 768 << 10;
/// How long a peer that lied or timed out is not asked again.
const PENALTY_MS: u64 = 60_000;

#[derive(Debug)]
enum Phase {
    /// Collecting headers of the peer's branch, verified, lowest first.
    Headers { headers: Vec<Header>, work: Work },
    /// Fetching the blocks of verified headers.
    Blocks {
        queue: VecDeque<Header>,
        asked: Vec<Hash32>,
    },
}

#[derive(Debug)]
struct Session {
    peer: String,
    request: u64,
    deadline_ms: u64,
    claimed: Work,
    phase: Phase,
}

/// The sync state of one node.
#[derive(Debug, Default)]
pub struct Syncer {
    session: Option<Session>,
    next_request: u64,
    penalties: HashMap<String, u64>,
}

impl Syncer {
    /// Whether a session is running.
    pub fn active(&self) -> bool {
        self.session.is_some()
    }
}

impl<L: ChainLog> Engine<L> {
    /// Starts syncing from `peer`, which claims `claimed` work, unless a session runs or the
    /// peer is penalised.
    pub(super) fn start_sync(&mut self, peer: &str, claimed: Work, out: &mut Vec<Action>) {
        if self.syncer.session.is_some() || peer == self.id {
            return;
        }
        if self
            .syncer
            .penalties
            .get(peer)
            .is_some_and(|until| self.now_ms < *until)
        {
            return;
        }
        info!(node = %self.id, peer, "syncing: asking for headers");
        self.syncer.session = Some(Session {
            peer: peer.to_owned(),
            request: 0,
            deadline_ms: 0,
            claimed,
            phase: Phase::Headers {
                headers: Vec::new(),
                work: 0,
            },
        });
        let locator = self.store.locator();
        self.ask_headers(locator, out);
        self.announce(out);
    }

    /// Starts syncing from the peer claiming the most work (an orphan arrived).
    pub(super) fn sync_from_best_peer(&mut self, out: &mut Vec<Action>) {
        let now = self.now_ms;
        let best = self
            .peers
            .iter()
            .filter(|(id, _)| self.syncer.penalties.get(*id).is_none_or(|u| now >= *u))
            .max_by_key(|(_, p)| p.work)
            .map(|(id, p)| (id.clone(), p.work));
        if let Some((peer, work)) = best {
            self.start_sync(&peer, work, out);
        }
    }

    fn request(
        &mut self,
        kind: SyncKind,
        locator: Vec<Hash32>,
        hashes: Vec<Hash32>,
        out: &mut Vec<Action>,
    ) {
        let Some(session) = self.syncer.session.as_mut() else {
            return;
        };
        self.syncer.next_request += 1;
        session.request = self.syncer.next_request;
        session.deadline_ms = self.now_ms + self.config.sync_timeout_ms;
        out.push(Action::Publish(Publication::SyncRequest(SyncRequest {
            chain: self.store.genesis().id(),
            from: self.id.clone(),
            to: session.peer.clone(),
            id: session.request,
            kind,
            locator,
            max: MAX_HEADERS_PER_REPLY,
            hashes,
        })));
    }

    fn ask_headers(&mut self, locator: Vec<Hash32>, out: &mut Vec<Action>) {
        self.request(SyncKind::Headers, locator, Vec::new(), out);
    }

    /// Ends the session; a lie penalises the peer for long, silence briefly (messages get lost).
    fn end_sync(&mut self, lie: Option<String>, out: &mut Vec<Action>) {
        self.end_sync_for(lie, PENALTY_MS, out);
    }

    fn end_sync_for(&mut self, lie: Option<String>, penalty_ms: u64, out: &mut Vec<Action>) {
        let Some(session) = self.syncer.session.take() else {
            return;
        };
        if let Some(reason) = lie {
            self.syncer
                .penalties
                .insert(session.peer.clone(), self.now_ms + penalty_ms);
            self.peers.remove(&session.peer);
            let reason = format!("sync reply from {}: {reason}", session.peer);
            self.reject("sync", &reason, &[], out);
        } else {
            debug!(node = %self.id, peer = %session.peer, "sync done");
        }
        self.announce(out);
    }

    pub(super) fn sync_tick(&mut self, out: &mut Vec<Action>) {
        let late = self
            .syncer
            .session
            .as_ref()
            .is_some_and(|s| self.now_ms >= s.deadline_ms);
        if late {
            let penalty = self.config.sync_timeout_ms;
            self.end_sync_for(Some("no answer before the deadline".into()), penalty, out);
        }
        if self.syncer.session.is_none() {
            // Anyone claiming more work than we have, whose head we do not know?
            // Among the peers not under a penalty: with equal claims (every node on one head
            // under pos) the first one alone would otherwise be tried, for a minute if penalised.
            let (ours, now) = (self.store.work(), self.now_ms);
            let penalties = &self.syncer.penalties;
            let claim = self
                .peers
                .iter()
                .filter(|(id, _)| penalties.get(*id).is_none_or(|u| now >= *u))
                .filter(|(_, p)| p.work > ours && self.store.work_of(&p.hash).is_none())
                .max_by_key(|(_, p)| p.work)
                .map(|(id, p)| (id.clone(), p.work));
            if let Some((peer, work)) = claim {
                self.start_sync(&peer, work, out);
            }
        }
    }

    /// Answers a request addressed to this node from the main chain.
    pub(super) fn serve(
        &mut self,
        req: SyncRequest,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        if req.to != self.id {
            return Ok(());
        }
        if req.chain != self.store.genesis().id() {
            self.reject(
                "sync",
                &format!("request for another chain {}", req.chain.short()),
                &[],
                out,
            );
            return Ok(());
        }
        let mut reply = SyncReply {
            chain: self.store.genesis().id(),
            from: self.id.clone(),
            id: req.id,
            tip: self.store.head().clone(),
            work: self.store.work(),
            headers: Vec::new(),
            blocks: Vec::new(),
            more: false,
        };
        match req.kind {
            SyncKind::Headers => {
                let from = self.store.locate(&req.locator) + 1;
                let max = u64::from(req.max.clamp(1, MAX_HEADERS_PER_REPLY));
                reply.headers = self.store.headers(from, max)?;
                reply.more = from + (reply.headers.len() as u64) < self.store.len();
            }
            SyncKind::Blocks => {
                let mut bytes = 0;
                for hash in req.hashes.iter().take(MAX_BLOCKS_PER_REQUEST) {
                    let Some(block) = self.store.block(hash)? else {
                        continue;
                    };
                    bytes += block.to_json().len();
                    if bytes > REPLY_BYTES && !reply.blocks.is_empty() {
                        break;
                    }
                    reply.blocks.push(block);
                }
            }
        }
        out.push(Action::Publish(Publication::SyncReply {
            to: req.from,
            reply,
        }));
        Ok(())
    }

    pub(super) fn on_sync_reply(
        &mut self,
        reply: SyncReply,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let Some(session) = self.syncer.session.as_ref() else {
            return Ok(());
        };
        // Unsolicited, late or from someone else: ignored (never believed).
        if reply.id != session.request || reply.from != session.peer {
            return Ok(());
        }
        if reply.chain != self.store.genesis().id() {
            self.end_sync(
                Some(format!("reply for another chain {}", reply.chain.short())),
                out,
            );
            return Ok(());
        }
        let claimed = session.claimed.max(reply.work);
        if let Some(s) = self.syncer.session.as_mut() {
            s.claimed = claimed;
        }
        let phase = std::mem::replace(
            &mut self.syncer.session.as_mut().expect("checked").phase,
            Phase::Headers {
                headers: Vec::new(),
                work: 0,
            },
        );
        match phase {
            Phase::Headers { headers, work } => self.on_headers(reply, headers, work, out),
            Phase::Blocks { queue, asked } => self.on_blocks(reply, queue, asked, out),
        }
    }

    fn on_headers(
        &mut self,
        reply: SyncReply,
        mut held: Vec<Header>,
        mut work: Work,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        if !reply.blocks.is_empty() {
            self.end_sync(Some("blocks in a headers reply".into()), out);
            return Ok(());
        }
        for header in reply.headers {
            let parent = match held.last() {
                Some(p) => Some(p.clone()),
                None => self.known_header(&header.previous_hash)?,
            };
            let Some(parent) = parent else {
                self.end_sync(
                    Some(format!(
                        "header {} does not connect to our chain",
                        header.index
                    )),
                    out,
                );
                return Ok(());
            };
            if held.is_empty() {
                work = self.store.work_of(&parent.hash).unwrap_or(0);
            }
            if let Err(v) = self.store.check_header(&header, &parent) {
                self.end_sync(Some(format!("header {}: {v}", header.index)), out);
                return Ok(());
            }
            work += self.store.genesis().consensus.weight(&header);
            held.push(header);
            if held.len() > self.config.max_sync_headers {
                self.end_sync(
                    Some(format!(
                        "more than {} headers without more work",
                        self.config.max_sync_headers
                    )),
                    out,
                );
                return Ok(());
            }
        }
        if work > self.store.work() {
            // Proven heavier: fetch the blocks we do not have.
            let queue: VecDeque<Header> = held
                .into_iter()
                .filter(|h| !self.store.knows(&h.hash))
                .collect();
            self.set_phase(Phase::Blocks {
                queue,
                asked: Vec::new(),
            });
            return self.ask_blocks(out);
        }
        match held.last().map(|h| h.hash) {
            Some(last) if reply.more => {
                self.set_phase(Phase::Headers {
                    headers: held,
                    work,
                });
                self.ask_headers(vec![last], out);
            }
            _ => {
                let claimed = self.syncer.session.as_ref().map_or(0, |s| s.claimed);
                let lie = (claimed > self.store.work()
                    && !reply.more
                    && !self.store.knows(&reply.tip.hash))
                .then(|| format!("claims work {claimed} its headers do not reach"));
                self.end_sync(lie, out);
            }
        }
        Ok(())
    }

    fn on_blocks(
        &mut self,
        reply: SyncReply,
        mut queue: VecDeque<Header>,
        asked: Vec<Hash32>,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        if reply.blocks.len() > asked.len() || !reply.headers.is_empty() {
            self.end_sync(Some("more than was asked".into()), out);
            return Ok(());
        }
        if reply.blocks.is_empty() {
            // The peer moved on (a reorg evicted them): not a lie, try again later.
            self.end_sync(None, out);
            return Ok(());
        }
        let mut received = 0;
        self.in_batch = true;
        for block in reply.blocks {
            let Some(pos) = queue.iter().position(|h| h.hash == block.hash) else {
                self.end_sync(
                    Some(format!("block {} was not asked for", block.hash.short())),
                    out,
                );
                return Ok(());
            };
            if block.header() != queue[pos] {
                self.finish_batch(out)?;
                self.end_sync(
                    Some(format!(
                        "block {} is not the one its header announced",
                        block.index
                    )),
                    out,
                );
                return Ok(());
            }
            queue.remove(pos);
            received += 1;
            if let Status::Invalid(v) = self.on_block(block, true, out)? {
                self.finish_batch(out)?;
                self.end_sync(Some(format!("a block breaks the rules: {v}")), out);
                return Ok(());
            }
        }
        self.finish_batch(out)?;
        debug!(node = %self.id, received, left = queue.len(), "sync: blocks inserted");
        if queue.is_empty() {
            // Caught up with what the headers showed; the peer may have more.
            self.set_phase(Phase::Headers {
                headers: Vec::new(),
                work: 0,
            });
            let locator = self.store.locator();
            self.ask_headers(locator, out);
        } else {
            self.set_phase(Phase::Blocks {
                queue,
                asked: Vec::new(),
            });
            self.ask_blocks(out)?;
        }
        Ok(())
    }

    fn set_phase(&mut self, phase: Phase) {
        if let Some(s) = self.syncer.session.as_mut() {
            s.phase = phase;
        }
    }

    fn ask_blocks(&mut self, out: &mut Vec<Action>) -> Result<(), StoreError> {
        let hashes: Vec<Hash32> = match self.syncer.session.as_mut().map(|s| &mut s.phase) {
            Some(Phase::Blocks { queue, asked }) => {
                *asked = queue
                    .iter()
                    .take(MAX_BLOCKS_PER_REQUEST)
                    .map(|h| h.hash)
                    .collect();
                asked.clone()
            }
            _ => return Ok(()),
        };
        if hashes.is_empty() {
            self.end_sync(None, out);
            return Ok(());
        }
        self.request(SyncKind::Blocks, Vec::new(), hashes, out);
        Ok(())
    }

    /// A header of a block this node has (main or side).
    fn known_header(&self, hash: &Hash32) -> Result<Option<Header>, StoreError> {
        Ok(self.store.block(hash)?.map(|b| b.header()))
    }
}
