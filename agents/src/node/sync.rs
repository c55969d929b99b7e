//! Sync over MQTT, headers first: ask one peer for the headers after our locator, verify them
//! with the rules as they come (link, hash, work, signature), and only when the verified branch
//! carries more work than ours fetch its blocks and insert them. The fetch is pipelined
//! ([`fetch`]): several block requests and the next headers in flight at once, so the peer
//! serves while this node verifies. Every answer is bounded (headers per reply, blocks per
//! request, requests in flight, headers held per session, a deadline per request); an answer
//! that lies — a header that breaks a rule, a block that is not the one asked for, more than
//! asked, a claimed work its headers do not reach — ends the session, is dead-lettered, and the
//! peer is not asked again for a while. A duplicated or late reply is ignored, never believed.

mod fetch;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use tracing::{debug, info};

use super::engine::{Action, Engine, Publication};
use super::wire::{
    SyncKind, SyncReply, SyncRequest, MAX_BLOCKS_PER_REQUEST, MAX_HEADERS_PER_REPLY,
};
use crate::ledger::store::{block_bytes, ChainLog, StoreError};
use crate::ledger::{Hash32, Header, Work};
use fetch::Fetch;

/// Most bytes of blocks one reply carries (inside a 1 MiB MQTT packet).
const REPLY_BYTES: usize = 768 << 10;
/// How long a peer that lied or timed out is not asked again.
const PENALTY_MS: u64 = 60_000;

#[derive(Debug)]
enum Phase {
    /// Collecting headers of the peer's branch, verified, lowest first, until they prove more
    /// work than ours (one request at a time).
    Headers { headers: Vec<Header>, work: Work },
    /// Fetching the blocks of a branch proven heavier, pipelined.
    Fetch(Box<Fetch>),
}

/// What a request in flight asked for.
#[derive(Debug)]
enum Asked {
    Headers,
    /// The blocks of these verified headers.
    Blocks(Vec<Header>),
}

#[derive(Debug)]
struct Ask {
    deadline_ms: u64,
    what: Asked,
}

#[derive(Debug)]
struct Session {
    peer: String,
    /// Requests in flight, by number.
    asks: BTreeMap<u64, Ask>,
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
            asks: BTreeMap::new(),
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

    /// Sends a request to the session's peer and remembers it until its reply or deadline.
    fn request(&mut self, locator: Vec<Hash32>, what: Asked, out: &mut Vec<Action>) {
        let Some(session) = self.syncer.session.as_mut() else {
            return;
        };
        self.syncer.next_request += 1;
        let id = self.syncer.next_request;
        let (kind, hashes) = match &what {
            Asked::Headers => (SyncKind::Headers, Vec::new()),
            Asked::Blocks(headers) => (SyncKind::Blocks, headers.iter().map(|h| h.hash).collect()),
        };
        session.asks.insert(
            id,
            Ask {
                deadline_ms: self.now_ms + self.config.sync_timeout_ms,
                what,
            },
        );
        out.push(Action::Publish(Publication::SyncRequest(SyncRequest {
            chain: self.store.genesis().id(),
            from: self.id.clone(),
            to: session.peer.clone(),
            id,
            kind,
            locator,
            max: MAX_HEADERS_PER_REPLY,
            hashes,
        })));
    }

    fn ask_headers(&mut self, locator: Vec<Hash32>, out: &mut Vec<Action>) {
        self.request(locator, Asked::Headers, out);
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
            .is_some_and(|s| s.asks.values().any(|a| self.now_ms >= a.deadline_ms));
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
                    // Counting by the store's upper estimate spares serialising every block
                    // twice; blocks with mode data are measured exactly (certificates vary).
                    bytes += if block.consensus.is_some() || block.certificate.is_some() {
                        block.to_json().len()
                    } else {
                        block_bytes(&block)
                    };
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
        let Some(session) = self.syncer.session.as_mut() else {
            return Ok(());
        };
        // From someone else, unsolicited, answered already (a duplicate) or past its deadline:
        // ignored, never believed.
        if reply.from != session.peer {
            return Ok(());
        }
        let Some(ask) = session.asks.remove(&reply.id) else {
            return Ok(());
        };
        if reply.chain != self.store.genesis().id() {
            self.end_sync(
                Some(format!("reply for another chain {}", reply.chain.short())),
                out,
            );
            return Ok(());
        }
        session.claimed = session.claimed.max(reply.work);
        let phase = std::mem::replace(
            &mut session.phase,
            Phase::Headers {
                headers: Vec::new(),
                work: 0,
            },
        );
        match (phase, ask.what) {
            (Phase::Headers { headers, work }, Asked::Headers) => {
                self.on_headers(reply, headers, work, out)
            }
            (Phase::Fetch(fetch), Asked::Headers) => self.on_fetch_headers(reply, *fetch, out),
            (Phase::Fetch(fetch), Asked::Blocks(asked)) => {
                self.on_fetch_blocks(reply, *fetch, asked, out)
            }
            // Blocks asked in a fetch that has ended since: nothing to do with them.
            (phase @ Phase::Headers { .. }, Asked::Blocks(_)) => {
                self.set_phase(phase);
                Ok(())
            }
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
        if let Some(tail) = held.last().filter(|_| work > self.store.work()).cloned() {
            // Proven heavier: fetch the blocks we do not have, and the headers after them.
            let wanted = held
                .into_iter()
                .filter(|h| !self.store.knows(&h.hash))
                .collect();
            return self.pump(Fetch::new(wanted, tail, reply.more), out);
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

    fn set_phase(&mut self, phase: Phase) {
        if let Some(s) = self.syncer.session.as_mut() {
            s.phase = phase;
        }
    }

    /// A header of a block this node has (main or side).
    fn known_header(&self, hash: &Hash32) -> Result<Option<Header>, StoreError> {
        Ok(self.store.block(hash)?.map(|b| b.header()))
    }
}
