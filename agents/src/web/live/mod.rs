//! The live view: what the bus says now (latest quadruplets, averages, windows, statuses, node
//! heads), and the event stream that carries every change to server-sent-event clients.
//!
//! One lock guards both, so a client that subscribes gets a snapshot and then exactly the
//! events after it: no gap, no repeat. Every event gets an id, kept in a bounded ring for
//! `Last-Event-ID` resumption; ids start at the boot time in microseconds so that ids of an
//! earlier run of the server are older than any of this one and resume with a full replay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;

pub use cabinet::{CabinetView, WindowSummary};

use super::chain::StoredBlock;
use crate::messages::{encode, AgentStatus, Average, CabinetStatus, DeadLetter, Quadruplet};
use cabinet::CabinetLive;

mod cabinet;

/// Bounds of the live view (all counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Events kept for `Last-Event-ID` resumption.
    pub ring: usize,
    /// Events a client may fall behind before it is dropped as too slow.
    pub client_buffer: usize,
    /// Quadruplets kept per cabinet for the plots.
    pub history: usize,
    /// Completed windows kept per cabinet.
    pub windows: usize,
    /// Cabinets, agents, nodes and dead-letter roles tracked (each); more are ignored.
    pub keys: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            ring: 4096,
            client_buffer: 1024,
            history: 600,
            windows: 50,
            keys: 256,
        }
    }
}

/// The kinds of event on `/api/v1/events`, as their SSE `event:` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A quadruplet (`Quadruplet` JSON).
    Quad,
    /// One quantity's average of a window (`Average` JSON).
    Average,
    /// A window whose four averages are all in (`WindowSummary` JSON).
    Window,
    /// A cabinet's status (`CabinetStatus` JSON).
    Cabinet,
    /// An agent's status (`AgentStatus` JSON).
    Agent,
    /// A ledger node's head (`{"node", "head"}`).
    Node,
    /// The best head announced on the bus (a block).
    Head,
    /// A block appended to the local chain (the block JSON).
    Block,
    /// A dead letter (`DeadLetter` JSON).
    Deadletter,
}

impl Kind {
    /// The SSE event name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Quad => "quad",
            Kind::Average => "average",
            Kind::Window => "window",
            Kind::Cabinet => "cabinet",
            Kind::Agent => "agent",
            Kind::Node => "node",
            Kind::Head => "head",
            Kind::Block => "block",
            Kind::Deadletter => "deadletter",
        }
    }
}

/// One event, formatted once for every client.
#[derive(Debug)]
pub struct Frame {
    /// Its id (`id:` line).
    pub id: u64,
    /// `id: …\nevent: …\ndata: …\n\n`.
    pub bytes: Bytes,
}

struct Inner {
    next_id: u64,
    ring: VecDeque<Arc<Frame>>,
    latest: BTreeMap<(Kind, String), Arc<Frame>>,
    cabinets: BTreeMap<String, CabinetLive>,
    agents: BTreeMap<String, AgentStatus>,
    nodes: BTreeMap<String, serde_json::Value>,
    head: Option<serde_json::Value>,
    deadletters: BTreeMap<String, u64>,
}

/// The live view and its event stream. Cheap to share (`Arc`).
pub struct Live {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Frame>>,
    limits: LiveLimits,
}

/// What a new event-stream client starts from.
pub struct Subscription {
    /// Frames to send first: the events after `Last-Event-ID`, or the latest of everything.
    pub replay: Vec<Bytes>,
    /// Every event after those.
    pub events: broadcast::Receiver<Arc<Frame>>,
    /// The id of the last replayed event (events up to it are skipped).
    pub last_id: u64,
}

fn boot_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

impl Live {
    /// An empty live view.
    pub fn new(limits: LiveLimits) -> Live {
        let (tx, _) = broadcast::channel(limits.client_buffer.max(1));
        Live {
            inner: Mutex::new(Inner {
                next_id: boot_id(),
                ring: VecDeque::new(),
                latest: BTreeMap::new(),
                cabinets: BTreeMap::new(),
                agents: BTreeMap::new(),
                nodes: BTreeMap::new(),
                head: None,
                deadletters: BTreeMap::new(),
            }),
            tx,
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Updates are single assignments and pushes: a panic cannot leave them half done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event and sends it to every client (under the caller's lock).
    fn emit(&self, inner: &mut Inner, kind: Kind, key: &str, data: &[u8]) {
        let id = inner.next_id;
        inner.next_id += 1;
        let mut b = BytesMut::with_capacity(data.len() + 48);
        b.extend_from_slice(format!("id: {id}\nevent: {}\ndata: ", kind.as_str()).as_bytes());
        b.extend_from_slice(data);
        b.extend_from_slice(b"\n\n");
        let frame = Arc::new(Frame {
            id,
            bytes: b.freeze(),
        });
        inner.ring.push_back(frame.clone());
        if inner.ring.len() > self.limits.ring {
            inner.ring.pop_front();
        }
        inner.latest.insert((kind, key.to_string()), frame.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(frame);
    }

    /// Whether `map` may hold `key` (already there, or room for one more).
    fn admits<V>(&self, map: &BTreeMap<String, V>, key: &str) -> bool {
        map.contains_key(key) || map.len() < self.limits.keys
    }

    /// A quadruplet arrived. `false` if its cabinet is beyond the cap.
    pub fn on_quad(&self, quad: Quadruplet) -> bool {
        let mut inner = self.lock();
        if !self.admits(&inner.cabinets, &quad.cabinet) {
            return false;
        }
        self.emit(&mut inner, Kind::Quad, &quad.cabinet, &encode(&quad));
        let history = self.limits.history;
        let cab = inner.cabinets.entry(quad.cabinet.clone()).or_default();
        cab.push_quad(quad, history);
        true
    }

    /// An average arrived; when it completes its window, a `window` event follows.
    pub fn on_average(&self, avg: Average) -> bool {
        let mut inner = self.lock();
        if !self.admits(&inner.cabinets, &avg.cabinet) {
            return false;
        }
        let key = format!("{}/{}", avg.cabinet, avg.quantity);
        self.emit(&mut inner, Kind::Average, &key, &encode(&avg));
        let windows = self.limits.windows;
        let cab = inner.cabinets.entry(avg.cabinet.clone()).or_default();
        let completed = cab.take_average(avg, windows);
        if let Some(w) = completed {
            let key = w.cabinet.clone();
            self.emit(&mut inner, Kind::Window, &key, &encode(&w));
        }
        true
    }

    /// A cabinet's retained status arrived.
    pub fn on_cabinet_status(&self, status: CabinetStatus) -> bool {
        let mut inner = self.lock();
        if !self.admits(&inner.cabinets, &status.cabinet) {
            return false;
        }
        self.emit(&mut inner, Kind::Cabinet, &status.cabinet, &encode(&status));
        let cab = inner.cabinets.entry(status.cabinet.clone()).or_default();
        cab.status = Some(status);
        true
    }

    /// An agent's retained status arrived.
    pub fn on_agent_status(&self, status: AgentStatus) -> bool {
        let mut inner = self.lock();
        if !self.admits(&inner.agents, &status.id) {
            return false;
        }
        self.emit(&mut inner, Kind::Agent, &status.id, &encode(&status));
        inner.agents.insert(status.id.clone(), status);
        true
    }

    /// A ledger node's retained head arrived (any JSON: shown as it is).
    pub fn on_node_head(&self, node: &str, head: serde_json::Value) -> bool {
        let mut inner = self.lock();
        if !self.admits(&inner.nodes, node) {
            return false;
        }
        let data = encode(&serde_json::json!({ "node": node, "head": head }));
        self.emit(&mut inner, Kind::Node, node, &data);
        inner.nodes.insert(node.to_string(), head);
        true
    }

    /// The best head announced on `ledger/head` arrived.
    pub fn on_head(&self, head: serde_json::Value) {
        let mut inner = self.lock();
        self.emit(&mut inner, Kind::Head, "", &encode(&head));
        inner.head = Some(head);
    }

    /// A dead letter was seen; returns the rejecting role's label for metrics (`other` past
    /// the cap).
    pub fn on_deadletter(&self, role: &str, letter: DeadLetter) -> String {
        let mut inner = self.lock();
        let label = if self.admits(&inner.deadletters, role) {
            role.to_string()
        } else {
            "other".to_string()
        };
        *inner.deadletters.entry(label.clone()).or_default() += 1;
        self.emit(&mut inner, Kind::Deadletter, &label, &encode(&letter));
        label
    }

    /// A block was appended to the local chain.
    pub fn on_block(&self, block: &StoredBlock) {
        let mut inner = self.lock();
        self.emit(&mut inner, Kind::Block, "", block.raw.get().as_bytes());
    }

    /// Subscribes a client that last saw `last_event_id`: the events after it if the ring
    /// still holds them, else the latest of every kind; then everything new.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Subscription {
        let inner = self.lock();
        let events = self.tx.subscribe();
        let newest = inner.next_id - 1;
        let oldest = inner.ring.front().map_or(inner.next_id, |f| f.id);
        let replay: Vec<Arc<Frame>> = match last_event_id {
            Some(seen) if seen >= oldest.saturating_sub(1) && seen <= newest => {
                inner.ring.iter().filter(|f| f.id > seen).cloned().collect()
            }
            _ => {
                let mut latest: Vec<Arc<Frame>> = inner.latest.values().cloned().collect();
                latest.sort_by_key(|f| f.id);
                latest
            }
        };
        Subscription {
            replay: replay.iter().map(|f| f.bytes.clone()).collect(),
            events,
            last_id: newest,
        }
    }

    /// Every cabinet's live view (without history).
    pub fn cabinets(&self) -> Vec<CabinetView> {
        let inner = self.lock();
        inner
            .cabinets
            .iter()
            .map(|(id, c)| c.view(id, false))
            .collect()
    }

    /// One cabinet's live view with its recent quadruplets.
    pub fn cabinet(&self, id: &str) -> Option<CabinetView> {
        let inner = self.lock();
        inner.cabinets.get(id).map(|c| c.view(id, true))
    }

    /// Every agent's latest status.
    pub fn agents(&self) -> Vec<AgentStatus> {
        self.lock().agents.values().cloned().collect()
    }

    /// Every node's latest head, and the best head announced on the bus.
    pub fn nodes(
        &self,
    ) -> (
        BTreeMap<String, serde_json::Value>,
        Option<serde_json::Value>,
    ) {
        let inner = self.lock();
        (inner.nodes.clone(), inner.head.clone())
    }

    /// Dead letters seen, by rejecting role.
    pub fn deadletters(&self) -> BTreeMap<String, u64> {
        self.lock().deadletters.clone()
    }
}

#[cfg(test)]
mod tests;
