//! What the bench sees on the broker: every node's retained head, the first publication of each
//! block (to time its propagation to every node's head) and the replies to its own sync
//! requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::bus::{Bus, Incoming, QoS};
use crate::ledger::{Block, Hash32};
use crate::messages::decode;
use crate::node::wire::{HeadMessage, SyncReply};
use crate::topics::{Route, Topics};

/// A block whose propagation is not timed after this long (it lost a race, or a node skipped it).
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);

/// The bench's own session and what it has seen.
pub(super) struct Observer {
    pub(super) bus: Bus,
    pub(super) topics: Topics,
    /// The bench's id as a sync client (its replies topic).
    pub(super) id: String,
    nodes: Vec<String>,
    max_payload: usize,
    /// Each node's latest head: hash and index.
    heads: BTreeMap<String, (Hash32, u64)>,
    /// Whether block propagation is timed now (every node connected).
    timing: bool,
    /// Blocks seen on `ledger/block` and not yet every node's head: first seen, who has it.
    in_flight: HashMap<Hash32, (Instant, BTreeSet<String>)>,
    /// Propagation times since [`Observer::take_propagation`].
    propagation: Vec<Duration>,
    /// When each reply to our sync requests arrived, by request id.
    replies: HashMap<u64, Instant>,
}

/// The bench's session is gone.
#[derive(Debug)]
pub(super) struct Closed;

impl Observer {
    /// The bench's subscriptions for `id`.
    pub(super) fn subscriptions(topics: &Topics, id: &str) -> Vec<(String, QoS)> {
        vec![
            (topics.block(), QoS::AtLeastOnce),
            (topics.node_head_filter(), QoS::AtLeastOnce),
            (topics.sync_reply(id), QoS::AtLeastOnce),
        ]
    }

    /// Observering `nodes` through `bus`.
    pub(super) fn new(
        bus: Bus,
        topics: Topics,
        id: &str,
        nodes: Vec<String>,
        max_payload: usize,
    ) -> Observer {
        Observer {
            bus,
            topics,
            id: id.into(),
            nodes,
            max_payload,
            heads: BTreeMap::new(),
            timing: false,
            in_flight: HashMap::new(),
            propagation: Vec::new(),
            replies: HashMap::new(),
        }
    }

    /// Node `id`'s latest head.
    pub(super) fn head(&self, id: &str) -> Option<(Hash32, u64)> {
        self.heads.get(id).copied()
    }

    /// The one head every node names, if they agree.
    pub(super) fn agreed(&self) -> Option<(Hash32, u64)> {
        let mut heads = self.nodes.iter().map(|n| self.heads.get(n));
        let first = heads.next()??;
        heads.all(|h| h == Some(first)).then_some(*first)
    }

    /// Starts or stops timing block propagation (only meaningful with every node connected).
    pub(super) fn time_propagation(&mut self, on: bool) {
        self.timing = on;
        self.in_flight.clear();
    }

    /// Blocks whose propagation was timed since the last [`Observer::take_propagation`].
    pub(super) fn timed(&self) -> usize {
        self.propagation.len()
    }

    /// The propagation times measured since the last call.
    pub(super) fn take_propagation(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.propagation)
    }

    /// When the reply to our request `id` arrived.
    pub(super) fn reply(&self, id: u64) -> Option<Instant> {
        self.replies.get(&id).copied()
    }

    /// Takes in messages until `done` holds (true) or `deadline` passes (false).
    pub(super) async fn until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Observer) -> bool,
    ) -> Result<bool, Closed> {
        while !done(self) {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                msg = self.bus.recv() => self.take(msg.ok_or(Closed)?),
            }
        }
        Ok(true)
    }

    /// Takes in one message, stamped with its arrival.
    pub(super) fn take(&mut self, msg: Incoming) {
        let now = Instant::now();
        if msg.payload.is_empty() {
            return;
        }
        match self.topics.parse(&msg.topic) {
            Some(Route::Block) if self.timing => {
                let Some(block) = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|t| Block::from_json(t).ok())
                else {
                    return;
                };
                if self.in_flight.contains_key(&block.hash) {
                    return; // Not its first publication.
                }
                // A node head may overtake the block it names on the way to us.
                let have = self
                    .heads
                    .iter()
                    .filter(|(_, (h, _))| *h == block.hash)
                    .map(|(n, _)| n.clone())
                    .collect();
                self.in_flight.insert(block.hash, (now, have));
                self.in_flight
                    .retain(|_, (seen, _)| now.duration_since(*seen) < PROPAGATION_LIMIT);
                self.settle(block.hash, now);
            }
            Some(Route::NodeHead { node }) => {
                let Ok(head) = decode::<HeadMessage>(&msg.payload, self.max_payload) else {
                    return;
                };
                let hash = head.header.hash;
                self.heads.insert(node.clone(), (hash, head.header.index));
                if let Some((_, have)) = self.in_flight.get_mut(&hash) {
                    have.insert(node);
                    self.settle(hash, now);
                }
            }
            Some(Route::SyncReply { id }) if id == self.id => {
                if let Ok(reply) = decode::<SyncReply>(&msg.payload, self.max_payload) {
                    self.replies.entry(reply.id).or_insert(now);
                }
            }
            _ => {}
        }
    }

    /// Records `hash`'s propagation once every node's head has named it.
    fn settle(&mut self, hash: Hash32, now: Instant) {
        let everyone = self
            .in_flight
            .get(&hash)
            .is_some_and(|(_, have)| self.nodes.iter().all(|n| have.contains(n)));
        if everyone {
            if let Some((seen, _)) = self.in_flight.remove(&hash) {
                self.propagation.push(now.duration_since(seen));
            }
        }
    }
}
