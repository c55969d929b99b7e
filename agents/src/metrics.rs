//! Prometheus metrics: every name wattchain exports, in one place, and the process-wide
//! recorder that `/metrics` renders.
//!
//! Instrumentation goes through the [`metrics`] facade, so counting something anywhere in the
//! agents is one line (`m.quadruplets.increment(1)`) and needs no registry passed around: the
//! handles below are created once per agent and are no-ops until [`install`] has run. A process
//! that serves HTTP calls [`install`] before it starts its agents.
//!
//! Names follow Prometheus conventions: counters end in `_total`, every label is a bounded id
//! (a cabinet, an agent, a role) and never a value from a payload.
//!
//! The ledger nodes record theirs through a [`Node`] handle set, like the cabinets' [`Cabinet`].

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Quadruplets a cabinet read and published (`rate()` of it is quadruplets/s). Label `cabinet`.
pub const CABINET_QUADRUPLETS: &str = "wattchain_cabinet_quadruplets_total";
/// Windows a cabinet cut and published. Label `cabinet`.
pub const CABINET_WINDOWS_PRODUCED: &str = "wattchain_cabinet_windows_produced_total";
/// Windows of a cabinet seen committed in a block. Label `cabinet`.
pub const CABINET_WINDOWS_COMMITTED: &str = "wattchain_cabinet_windows_committed_total";
/// Windows in a cabinet's outbox, published and not yet committed. Label `cabinet`.
pub const CABINET_OUTBOX: &str = "wattchain_cabinet_outbox_windows";
/// Window tasks an averager answered. Label `agent`.
pub const AVERAGER_AVERAGES: &str = "wattchain_averager_averages_total";
/// Reconnections of an agent's MQTT session (the first connection is not counted). Label `agent`.
pub const BUS_RECONNECTS: &str = "wattchain_bus_reconnects_total";
/// Dead letters seen on the bus, by the role that rejected the message. Label `role`.
pub const DEADLETTERS: &str = "wattchain_deadletters_total";
/// Messages the web service's live view took from the bus. Label `kind`.
pub const WEB_MESSAGES: &str = "wattchain_web_messages_total";
/// Blocks in the chain the web service reads (genesis included).
pub const CHAIN_BLOCKS: &str = "wattchain_chain_blocks";
/// Records (committed windows) in that chain.
pub const CHAIN_RECORDS: &str = "wattchain_chain_records";
/// 1 while every block of that chain verifies, 0 once one does not.
pub const CHAIN_VALID: &str = "wattchain_chain_valid";
/// Head index each ledger node reports on its retained head topic. Label `node`.
pub const NODE_HEIGHT: &str = "wattchain_node_height";
/// Blocks of a node by `origin`: `produced` (it made them and they joined its main chain) or
/// `received` (from peers, sync included, valid, on any branch). Label `node`.
pub const NODE_BLOCKS: &str = "wattchain_node_blocks_total";
/// Hashes a node's miner computed (`rate()` of it is the mining rate). Label `node`.
pub const NODE_HASHES: &str = "wattchain_node_hashes_total";
/// A node's mining rate over its last second or more of mining, hashes/s. Label `node`.
pub const NODE_HASH_RATE: &str = "wattchain_node_hashes_per_second";
/// Reorgs of a node's main chain. Label `node`.
pub const NODE_REORGS: &str = "wattchain_node_reorgs_total";
/// Blocks a node produced on a parent that was no longer its head (stale). Label `node`.
pub const NODE_STALE: &str = "wattchain_node_stale_blocks_total";
/// 1 while a node syncs from a peer, 0 otherwise. Label `node`.
pub const NODE_SYNC_STATE: &str = "wattchain_node_sync_state";
/// Windows a node holds that are not on its main chain yet. Label `node`.
pub const NODE_PENDING: &str = "wattchain_node_pending_records";
/// Server-sent-event clients connected.
pub const WEB_SSE_CLIENTS: &str = "wattchain_web_sse_clients";
/// Server-sent-event clients dropped because they read too slowly.
pub const WEB_SSE_DROPPED: &str = "wattchain_web_sse_dropped_total";
/// HTTP connections closed because the peer stopped reading (a write waited past the deadline).
pub const WEB_STALLED: &str = "wattchain_web_stalled_total";
/// Server-sent-event clients refused because the cap was reached.
pub const WEB_SSE_REFUSED: &str = "wattchain_web_sse_refused_total";
/// HTTP requests answered, by status class (`2xx`, `4xx`, ...). Label `class`.
pub const WEB_REQUESTS: &str = "wattchain_web_requests_total";
/// HTTP requests cut off by the handler time limit or shed under load. Label `reason`.
pub const WEB_REFUSED: &str = "wattchain_web_refused_total";
/// Clients connected to the broker.
pub const BROKER_CONNECTIONS: &str = "wattchain_broker_connections";
/// Sessions the broker holds.
pub const BROKER_SESSIONS: &str = "wattchain_broker_sessions";
/// Subscriptions the broker holds.
pub const BROKER_SUBSCRIPTIONS: &str = "wattchain_broker_subscriptions";
/// Retained messages the broker holds.
pub const BROKER_RETAINED: &str = "wattchain_broker_retained";
/// Messages the broker received from clients.
pub const BROKER_RECEIVED: &str = "wattchain_broker_messages_received_total";
/// Messages the broker sent to clients.
pub const BROKER_SENT: &str = "wattchain_broker_messages_sent_total";
/// Messages the broker dropped (full queues, slow consumers), by who was slow. Label `cause`.
pub const BROKER_DROPPED: &str = "wattchain_broker_dropped_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
///
/// Call it before starting the agents whose metrics should be exported: handles created
/// earlier stay no-ops. `None` if another recorder was installed first by someone else.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Some(handle);
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // Two racing first calls: one wins the recorder, both end up with the winner's handle.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle);
        describe();
    }
    HANDLE.get()
}

/// The metrics in Prometheus text format, `None` if [`install`] never ran.
pub fn render() -> Option<String> {
    HANDLE.get().map(|h| {
        h.run_upkeep();
        h.render()
    })
}

fn describe() {
    for (name, help) in [
        (CABINET_QUADRUPLETS, "Quadruplets read and published"),
        (CABINET_WINDOWS_PRODUCED, "Windows cut and published"),
        (
            CABINET_WINDOWS_COMMITTED,
            "Windows seen committed in a block",
        ),
        (AVERAGER_AVERAGES, "Window tasks averaged and answered"),
        (
            BUS_RECONNECTS,
            "MQTT reconnections after the first connection",
        ),
        (
            DEADLETTERS,
            "Dead letters seen on the bus, by rejecting role",
        ),
        (
            WEB_MESSAGES,
            "Bus messages taken by the web service's live view",
        ),
        (
            WEB_SSE_DROPPED,
            "Event-stream clients dropped for reading too slowly",
        ),
        (WEB_SSE_REFUSED, "Event-stream clients refused at the cap"),
        (
            WEB_STALLED,
            "HTTP connections closed because the peer stopped reading",
        ),
        (WEB_REQUESTS, "HTTP requests answered, by status class"),
        (WEB_REFUSED, "HTTP requests timed out or shed under load"),
        (BROKER_RECEIVED, "Messages the broker received"),
        (BROKER_SENT, "Messages the broker sent"),
        (BROKER_DROPPED, "Messages the broker dropped"),
        (NODE_BLOCKS, "Blocks a node produced or received, by origin"),
        (NODE_HASHES, "Hashes computed by a node's miner"),
        (NODE_REORGS, "Reorgs of a node's main chain"),
        (
            NODE_STALE,
            "Blocks a node produced on a parent no longer its head",
        ),
    ] {
        describe_counter!(name, help);
    }
    for (name, help) in [
        (CABINET_OUTBOX, "Windows published and not yet committed"),
        (CHAIN_BLOCKS, "Blocks in the local chain, genesis included"),
        (
            CHAIN_RECORDS,
            "Records (committed windows) in the local chain",
        ),
        (CHAIN_VALID, "1 while the local chain verifies"),
        (NODE_HEIGHT, "Head index reported by each ledger node"),
        (WEB_SSE_CLIENTS, "Event-stream clients connected"),
        (BROKER_CONNECTIONS, "Clients connected to the broker"),
        (BROKER_SESSIONS, "Sessions held by the broker"),
        (BROKER_SUBSCRIPTIONS, "Subscriptions held by the broker"),
        (BROKER_RETAINED, "Retained messages held by the broker"),
        (
            NODE_HASH_RATE,
            "Mining rate over the last second of mining, hashes/s",
        ),
        (NODE_SYNC_STATE, "1 while the node syncs from a peer"),
        (
            NODE_PENDING,
            "Windows held by the node, not yet on its main chain",
        ),
    ] {
        describe_gauge!(name, help);
    }
}

/// The metric handles of one cabinet agent, created once when it starts.
#[derive(Clone)]
pub struct Cabinet {
    /// [`CABINET_QUADRUPLETS`].
    pub quadruplets: Counter,
    /// [`CABINET_WINDOWS_PRODUCED`].
    pub windows_produced: Counter,
    /// [`CABINET_WINDOWS_COMMITTED`].
    pub windows_committed: Counter,
    /// [`CABINET_OUTBOX`].
    pub outbox: Gauge,
}

impl Cabinet {
    /// The handles labelled with `cabinet`.
    pub fn new(cabinet: &str) -> Self {
        let label = [("cabinet", cabinet.to_string())];
        Cabinet {
            quadruplets: counter!(CABINET_QUADRUPLETS, &label),
            windows_produced: counter!(CABINET_WINDOWS_PRODUCED, &label),
            windows_committed: counter!(CABINET_WINDOWS_COMMITTED, &label),
            outbox: gauge!(CABINET_OUTBOX, &label),
        }
    }
}

/// The metric handles of one ledger node, created once when it starts.
#[derive(Clone)]
pub struct Node {
    /// [`NODE_BLOCKS`] `origin="produced"`.
    pub produced: Counter,
    /// [`NODE_BLOCKS`] `origin="received"`.
    pub received: Counter,
    /// [`NODE_HASHES`].
    pub hashes: Counter,
    /// [`NODE_HASH_RATE`].
    pub hash_rate: Gauge,
    /// [`NODE_REORGS`].
    pub reorgs: Counter,
    /// [`NODE_STALE`].
    pub stale: Counter,
    /// [`NODE_SYNC_STATE`].
    pub sync_state: Gauge,
    /// [`NODE_PENDING`].
    pub pending: Gauge,
}

impl Node {
    /// The handles labelled with `node`.
    pub fn new(node: &str) -> Self {
        let label = [("node", node.to_string())];
        let origin = |o: &str| [("node", node.to_string()), ("origin", o.to_string())];
        Node {
            produced: counter!(NODE_BLOCKS, &origin("produced")),
            received: counter!(NODE_BLOCKS, &origin("received")),
            hashes: counter!(NODE_HASHES, &label),
            hash_rate: gauge!(NODE_HASH_RATE, &label),
            reorgs: counter!(NODE_REORGS, &label),
            stale: counter!(NODE_STALE, &label),
            sync_state: gauge!(NODE_SYNC_STATE, &label),
            pending: gauge!(NODE_PENDING, &label),
        }
    }
}

/// What a broker reports about itself, as [`record_broker`] exports it. The embedded broker's
/// `BrokerStats` converts into this field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerCounts {
    /// Clients connected now.
    pub connections: u64,
    /// Sessions held now.
    pub sessions: u64,
    /// Subscriptions held now.
    pub subscriptions: u64,
    /// Retained messages held now.
    pub retained: u64,
    /// Messages received since start.
    pub messages_received: u64,
    /// Messages sent since start.
    pub messages_sent: u64,
    /// Messages dropped since start, whatever the cause.
    pub dropped: u64,
    /// Of those, dropped because a client read too slowly.
    pub dropped_by_client: u64,
}

impl From<&wattchain_broker::BrokerStats> for BrokerCounts {
    fn from(stats: &wattchain_broker::BrokerStats) -> Self {
        BrokerCounts {
            connections: stats.connections,
            sessions: stats.sessions,
            subscriptions: stats.subscriptions,
            retained: stats.retained,
            messages_received: stats.messages_received,
            messages_sent: stats.messages_delivered,
            dropped: stats.messages_dropped,
            dropped_by_client: stats.dropped_slow,
        }
    }
}

/// Exports a broker's counts (call it periodically, e.g. before each render).
pub fn record_broker(counts: &BrokerCounts) {
    gauge!(BROKER_CONNECTIONS).set(counts.connections as f64);
    gauge!(BROKER_SESSIONS).set(counts.sessions as f64);
    gauge!(BROKER_SUBSCRIPTIONS).set(counts.subscriptions as f64);
    gauge!(BROKER_RETAINED).set(counts.retained as f64);
    counter!(BROKER_RECEIVED).absolute(counts.messages_received);
    counter!(BROKER_SENT).absolute(counts.messages_sent);
    let other = counts.dropped.saturating_sub(counts.dropped_by_client);
    counter!(BROKER_DROPPED, "cause" => "slow_client").absolute(counts.dropped_by_client);
    counter!(BROKER_DROPPED, "cause" => "other").absolute(other);
}
