//! What the broker reports about itself ([`BrokerStats`]) and the counters the engine's hooks
//! feed. A dropped message is never silent: it is counted, per client when a client was too
//! slow, and logged with that client's id.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tracing::warn;

/// Clients whose drops are counted by name; past this, further clients count under
/// [`OTHER_CLIENTS`] so that a stream of new client ids cannot grow the table without bound.
const MAX_CLIENTS_TRACKED: usize = 10_000;

/// The name under which drops of clients past [`MAX_CLIENTS_TRACKED`] are counted.
pub const OTHER_CLIENTS: &str = "<other clients>";

/// A snapshot of the broker's state and counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Clients connected now.
    pub connections: u64,
    /// Sessions held now, connected and offline (persistent) ones.
    pub sessions: u64,
    /// CONNECTs being handled now (between the CONNECT and the CONNACK).
    pub handshakes: u64,
    /// CONNECT packets received since start, accepted or refused.
    pub connects_received: u64,
    /// Subscriptions held now.
    pub subscriptions: u64,
    /// Retained messages held now.
    pub retained: u64,
    /// Messages received from clients (wills included) since start.
    pub messages_received: u64,
    /// Messages delivered to clients since start.
    pub messages_delivered: u64,
    /// Messages dropped since start, whatever the cause (a refused publish, an expired or
    /// undeliverable message, a full queue).
    pub messages_dropped: u64,
    /// Of those, dropped because the receiving client did not keep up (its queue was full).
    pub dropped_slow: u64,
    /// The slow clients' drops by client id, largest first.
    pub dropped_by_client: Vec<(String, u64)>,
}

/// The counters the hooks increment; one per broker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connects: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    dropped_slow: AtomicU64,
    by_client: Mutex<HashMap<String, u64>>,
}

impl Counters {
    pub(crate) fn connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one dropped message; `client` is the receiver when there was one.
    pub(crate) fn dropped(
        &self,
        client: Option<&str>,
        slow: bool,
        topic: &str,
        sender: &str,
        reason: &impl Display,
    ) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(client) = client.filter(|_| slow) else {
            // Logged at every power of two so that a flood stays readable.
            if total.is_power_of_two() {
                warn!(sender, topic, %reason, dropped_total = total, "broker dropped a message");
            }
            return;
        };
        self.dropped_slow.fetch_add(1, Ordering::Relaxed);
        let count = {
            // No lock is held across an await: a std mutex is enough.
            let mut by_client = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
            let key = if by_client.contains_key(client) || by_client.len() < MAX_CLIENTS_TRACKED {
                client
            } else {
                OTHER_CLIENTS
            };
            let count = by_client.entry(key.to_owned()).or_default();
            *count += 1;
            *count
        };
        if count.is_power_of_two() {
            warn!(
                client,
                topic,
                %reason,
                dropped_for_client = count,
                "slow consumer: its queue is full (limits.max_queued_messages), message dropped"
            );
        }
    }

    /// The counters part of [`BrokerStats`]; the caller fills in the engine's gauges.
    pub(crate) fn snapshot(&self) -> BrokerStats {
        let mut dropped_by_client: Vec<(String, u64)> = self
            .by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(client, count)| (client.clone(), *count))
            .collect();
        dropped_by_client.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        BrokerStats {
            connects_received: self.connects.load(Ordering::Relaxed),
            messages_received: self.received.load(Ordering::Relaxed),
            messages_delivered: self.delivered.load(Ordering::Relaxed),
            messages_dropped: self.dropped.load(Ordering::Relaxed),
            dropped_slow: self.dropped_slow.load(Ordering::Relaxed),
            dropped_by_client,
            ..BrokerStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_drops_are_counted_per_client_and_others_only_in_the_total() {
        let counters = Counters::default();
        for _ in 0..3 {
            counters.dropped(Some("slow-1"), true, "t", "pub", &"queue full");
        }
        counters.dropped(Some("slow-2"), true, "t", "pub", &"queue full");
        counters.dropped(None, false, "t", "pub", &"not authorized");
        let stats = counters.snapshot();
        assert_eq!(stats.messages_dropped, 5);
        assert_eq!(stats.dropped_slow, 4);
        assert_eq!(
            stats.dropped_by_client,
            vec![("slow-1".to_owned(), 3), ("slow-2".to_owned(), 1)]
        );
    }

    #[test]
    fn the_per_client_table_is_bounded() {
        let counters = Counters::default();
        for i in 0..MAX_CLIENTS_TRACKED + 5 {
            counters.dropped(Some(&format!("c{i}")), true, "t", "pub", &"queue full");
        }
        let stats = counters.snapshot();
        assert_eq!(stats.dropped_by_client.len(), MAX_CLIENTS_TRACKED + 1);
        assert_eq!(stats.dropped_by_client[0], (OTHER_CLIENTS.to_owned(), 5));
        assert_eq!(stats.dropped_slow, (MAX_CLIENTS_TRACKED + 5) as u64);
    }
}
