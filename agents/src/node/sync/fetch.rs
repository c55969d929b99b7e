//! The pipelined fetch of a branch already proven heavier: up to [`WINDOW`] block requests and
//! one headers request in flight at once, so the peer reads and sends the next blocks while this
//! node verifies and stores the last ones. Replies may come in any order, twice, or not at all:
//! blocks are held until the ones before them have arrived and are inserted in chain order;
//! whatever a short reply left out is asked again. Memory stays bounded: at most
//! [`HEADERS_AHEAD`] verified headers (plus one reply) and [`WINDOW`] replies of blocks held.

use std::collections::{HashMap, HashSet, VecDeque};

use tracing::debug;

use super::{Asked, Phase};
use crate::ledger::store::{ChainLog, Status, StoreError};
use crate::ledger::{Block, Hash32, Header};
use crate::node::engine::{Action, Engine};
use crate::node::wire::{SyncReply, MAX_BLOCKS_PER_REQUEST, MAX_HEADERS_PER_REPLY, MAX_LOCATOR};

/// Block requests in flight at once.
pub(super) const WINDOW: usize = 4;
/// Verified headers held ahead of the blocks fetched before more headers are asked for.
pub(super) const HEADERS_AHEAD: usize = 2 * MAX_HEADERS_PER_REPLY as usize;

/// The state of a fetch.
#[derive(Debug)]
pub(super) struct Fetch {
    /// Verified headers whose blocks are not inserted yet, in chain order.
    wanted: VecDeque<Header>,
    /// Those of them asked for in a request in flight.
    asked: HashSet<Hash32>,
    /// Blocks received, waiting for the blocks before them.
    arrived: HashMap<Hash32, Block>,
    /// The last verified header: the next headers must extend it.
    tail: Header,
    /// The peer has headers after `tail`.
    more: bool,
}

impl Fetch {
    pub(super) fn new(wanted: VecDeque<Header>, tail: Header, more: bool) -> Fetch {
        Fetch {
            wanted,
            asked: HashSet::new(),
            arrived: HashMap::new(),
            tail,
            more,
        }
    }
}

impl<L: ChainLog> Engine<L> {
    fn in_flight(&self) -> (bool, usize) {
        self.syncer.session.as_ref().map_or((false, 0), |s| {
            let headers = s.asks.values().any(|a| matches!(a.what, Asked::Headers));
            let blocks = s
                .asks
                .values()
                .filter(|a| matches!(a.what, Asked::Blocks(_)))
                .count();
            (headers, blocks)
        })
    }

    /// Keeps the pipeline full: the next headers, then block requests up to the window; when
    /// everything the headers showed is in, looks for more from our own locator.
    pub(super) fn pump(
        &mut self,
        mut fetch: Fetch,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        let (headers_asked, mut blocks_asked) = self.in_flight();
        if fetch.more && !headers_asked && fetch.wanted.len() < HEADERS_AHEAD {
            // The tail first; our main chain after it, should the peer have left that branch.
            let mut locator = vec![fetch.tail.hash];
            locator.extend(self.store.locator());
            locator.truncate(MAX_LOCATOR);
            self.request(locator, Asked::Headers, out);
        }
        while blocks_asked < WINDOW {
            let next: Vec<Header> = fetch
                .wanted
                .iter()
                .filter(|h| !fetch.asked.contains(&h.hash) && !fetch.arrived.contains_key(&h.hash))
                .take(MAX_BLOCKS_PER_REQUEST)
                .cloned()
                .collect();
            if next.is_empty() {
                break;
            }
            fetch.asked.extend(next.iter().map(|h| h.hash));
            self.request(Vec::new(), Asked::Blocks(next), out);
            blocks_asked += 1;
        }
        let idle = self
            .syncer
            .session
            .as_ref()
            .is_some_and(|s| s.asks.is_empty());
        if idle && fetch.wanted.is_empty() && !fetch.more {
            // Caught up with what the headers showed; the peer may have more.
            self.set_phase(Phase::Headers {
                headers: Vec::new(),
                work: 0,
            });
            let locator = self.store.locator();
            self.ask_headers(locator, out);
        } else if idle {
            // Nothing in flight and nothing left to ask: cannot happen while headers are
            // wanted (they are asked above), but never leave a session without a deadline.
            self.end_sync(None, out);
        } else {
            self.set_phase(Phase::Fetch(Box::new(fetch)));
        }
        Ok(())
    }

    pub(super) fn on_fetch_headers(
        &mut self,
        reply: SyncReply,
        mut fetch: Fetch,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        if !reply.blocks.is_empty() {
            self.end_sync(Some("blocks in a headers reply".into()), out);
            return Ok(());
        }
        fetch.more = reply.more && !reply.headers.is_empty();
        for (i, header) in reply.headers.into_iter().enumerate() {
            if header.previous_hash != fetch.tail.hash {
                if i == 0 && self.store.knows(&header.previous_hash) {
                    // The peer's main chain left the branch we fetch (a reorg there): finish
                    // what was verified, then look again from our locator.
                    fetch.more = false;
                    break;
                }
                self.end_sync(
                    Some(format!(
                        "header {} does not connect to its branch",
                        header.index
                    )),
                    out,
                );
                return Ok(());
            }
            if let Err(v) = self.store.check_header(&header, &fetch.tail) {
                self.end_sync(Some(format!("header {}: {v}", header.index)), out);
                return Ok(());
            }
            fetch.tail = header.clone();
            if !self.store.knows(&header.hash) {
                fetch.wanted.push_back(header);
            }
        }
        self.pump(fetch, out)
    }

    pub(super) fn on_fetch_blocks(
        &mut self,
        reply: SyncReply,
        mut fetch: Fetch,
        mut asked: Vec<Header>,
        out: &mut Vec<Action>,
    ) -> Result<(), StoreError> {
        // Whatever this reply leaves out is asked again.
        for h in &asked {
            fetch.asked.remove(&h.hash);
        }
        if reply.blocks.len() > asked.len() || !reply.headers.is_empty() {
            self.end_sync(Some("more than was asked".into()), out);
            return Ok(());
        }
        if reply.blocks.is_empty() {
            // The peer moved on (a reorg evicted them): not a lie, try again later.
            self.end_sync(None, out);
            return Ok(());
        }
        for block in reply.blocks {
            let Some(pos) = asked.iter().position(|h| h.hash == block.hash) else {
                self.end_sync(
                    Some(format!("block {} was not asked for", block.hash.short())),
                    out,
                );
                return Ok(());
            };
            if block.header() != asked.swap_remove(pos) {
                self.end_sync(
                    Some(format!(
                        "block {} is not the one its header announced",
                        block.index
                    )),
                    out,
                );
                return Ok(());
            }
            fetch.arrived.insert(block.hash, block);
        }
        // Insert what is now in chain order, as one batch (one fsync, one announcement).
        let mut inserted = 0;
        while let Some(block) = fetch
            .wanted
            .front()
            .and_then(|h| fetch.arrived.remove(&h.hash))
        {
            fetch.wanted.pop_front();
            inserted += 1;
            self.in_batch = true;
            if let Status::Invalid(v) = self.on_block(block, true, out)? {
                self.finish_batch(out)?;
                self.end_sync(Some(format!("a block breaks the rules: {v}")), out);
                return Ok(());
            }
        }
        if inserted > 0 {
            self.finish_batch(out)?;
        }
        debug!(node = %self.id, inserted, held = fetch.arrived.len(), left = fetch.wanted.len(), "sync: blocks inserted");
        self.pump(fetch, out)
    }
}
