//! The broker's memory bound as a function of its configuration and of the load it carries.
//!
//! What rumqttd 0.20 holds (read from its source, confirmed by [`super::memory`]):
//!
//! - **One commit log per filter ever subscribed.** A message is appended to the log of every
//!   filter it matches (the payload is shared, the entry is not); nothing is stored when no
//!   filter matches. Logs are never removed, even when every subscriber has gone, and delivered
//!   messages are not freed: a log only drops its oldest segment when it needs a new one beyond
//!   `max_segment_count`. A segment takes appends while its *counted* size (4 + topic +
//!   payload per message) is below `max_segment_size`, so one message larger than a segment is
//!   stored whole and only overshoots that segment: a segment counts at most
//!   `max_segment_size - 1 + P` bytes. Each entry also costs a fixed-size struct
//!   ([`log_entry_bytes`], about 230 bytes) that the count ignores, which dominates for small
//!   messages.
//! - **Per connection**: an outgoing queue the router fills up to its hard-coded 200 entries
//!   plus one read batch (`max_outgoing_packet_count` for QoS 0, 100 in-flight slots for QoS 1),
//!   the batch being written (its packets, and a buffer with all of them serialised, which
//!   keeps its largest size until the connection closes), a read buffer of about one packet
//!   and the last will.
//! - **Retained messages**: one per retained topic.
//! - **Not bounded by configuration**: packets read from clients but not yet routed (rumqttd's
//!   network tasks read ahead of its router; the queue only stops growing when the router's
//!   1000-event channel is full) and the cache of topic → filters, one entry per published
//!   topic. Both stay small while the router keeps up.
//!
//! The front door adds, per connection, two 64 KiB relay buffers and, with users configured,
//! the permission gate's one incomplete packet.

use std::mem::size_of;
use std::time::Instant;

use rumqttd::protocol::{Publish, PublishProperties};
use serde::Serialize;

use crate::BrokerConfig;

/// rumqttd's outgoing queue length that pauses a connection (`MAX_CHANNEL_CAPACITY - 1`).
const OUTGOING_QUEUE: u64 = 199;

/// rumqttd's in-flight slots per connection for QoS 1 and 2 (a constant, whatever the config).
const INFLIGHT_SLOTS: u64 = 100;

/// Bytes the front door's relay reads per call, in each direction (`relay::CHUNK`).
const RELAY_BUFFERS: u64 = 2 * 64 * 1024;

/// Entries rumqttd reserves in every new segment.
const SEGMENT_RESERVE: u64 = 1024;

/// Smallest counted size of a message: a one-byte topic and an empty payload.
pub const SMALLEST_MESSAGE: usize = 5;

/// Bytes one log entry occupies besides its topic and payload (rumqttd's `PublishData`: the
/// publish, its MQTT 5 properties and a timestamp; the sum of the parts bounds the struct).
pub fn log_entry_bytes() -> u64 {
    (size_of::<Publish>() + size_of::<Option<PublishProperties>>() + size_of::<Instant>()) as u64
}

/// Entries a segment's vector has room for once it holds `entries`: rumqttd reserves 1024,
/// then the vector doubles.
fn entry_capacity(entries: u64) -> u64 {
    entries.max(SEGMENT_RESERVE).next_power_of_two()
}

/// The traffic a bound is computed for; [`Load::worst_case`] assumes only the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Load {
    /// Distinct filters subscribed since the broker started (`$share/g/f` uses `f`'s log).
    pub filters: usize,
    /// Client connections open at once.
    pub connections: usize,
    /// Retained topics.
    pub retained: usize,
    /// Largest message on the wire, in bytes (at most `max_packet_size`).
    pub largest_message: usize,
    /// Smallest message as rumqttd counts it: 4 + topic + payload bytes (at least 5).
    pub smallest_message: usize,
}

impl Load {
    /// Any traffic the configuration allows: `filters` filters, `max_connections` clients,
    /// `retained` retained topics, messages from 5 counted bytes up to `max_packet_size`.
    pub fn worst_case(config: &BrokerConfig, filters: usize, retained: usize) -> Load {
        Load {
            filters,
            connections: config.max_connections,
            retained,
            largest_message: config.max_packet_size,
            smallest_message: SMALLEST_MESSAGE,
        }
    }
}

/// Upper bounds, in bytes, on what the broker holds for a [`Load`]; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryBound {
    /// Most bytes in one segment: counted bytes plus entry overhead.
    pub per_segment: u64,
    /// Every filter's log full: `filters × max_segment_count × per_segment`.
    pub logs: u64,
    /// rumqttd's buffers for one connection.
    pub per_connection: u64,
    /// The front door's buffers for one connection.
    pub front_door_per_connection: u64,
    /// `connections × (per_connection + front_door_per_connection)`.
    pub connections: u64,
    /// `retained × (largest message + entry)`.
    pub retained: u64,
    /// The sum: what the broker adds to its process's memory at most.
    pub total: u64,
}

/// The bound for `config` under `load`:
///
/// ```text
/// segment    = (S - 1 + P) + E × cap(⌊(S - 1) / e⌋ + 1)   cap(n) = max(n, 1024) rounded up to 2^k
/// logs       = F × C × segment
/// connection = (2 × (199 + B) + 1) × (P + E) + (199 + B) × P + 2 × P      [rumqttd]
///            + 128 KiB (+ P with users)                                   [front door]
/// total      = logs + N × connection + R × (P + E)
/// ```
///
/// S = `max_segment_size`, C = `max_segment_count`, P = largest message, e = smallest counted
/// message, E = [`log_entry_bytes`], B = max(`max_outgoing_packet_count`, 100), F filters,
/// N connections, R retained topics.
pub fn memory_bound(config: &BrokerConfig, load: &Load) -> MemoryBound {
    let tuning = &config.rumqttd;
    let size = tuning.max_segment_size as u64;
    let count = tuning.max_segment_count as u64;
    let largest = load.largest_message as u64;
    let smallest = (load.smallest_message as u64).max(SMALLEST_MESSAGE as u64);
    let entry = log_entry_bytes();

    let span = size.saturating_sub(1);
    let entries = span / smallest + 1;
    let per_segment = span + largest + entry_capacity(entries) * entry;
    let logs = load.filters as u64 * count * per_segment;

    // The router's queue and the batch being written hold publishes (shared with the logs
    // until those drop them); the batch is also serialised whole into the write buffer.
    let batch = tuning.max_outgoing_packet_count.max(INFLIGHT_SLOTS);
    let queued = OUTGOING_QUEUE + batch;
    let published = (2 * queued + 1) * (largest + entry); // queue, batch, last will
    let serialised = queued * largest;
    let read_buffer = 2 * largest;
    let per_connection = published + serialised + read_buffer;
    let gate = if config.users.is_empty() && config.users_file.is_none() {
        0
    } else {
        largest
    };
    let front_door_per_connection = RELAY_BUFFERS + gate;
    let connections = load.connections as u64 * (per_connection + front_door_per_connection);
    let retained = load.retained as u64 * (largest + entry);

    MemoryBound {
        per_segment,
        logs,
        per_connection,
        front_door_per_connection,
        connections,
        retained,
        total: logs + connections + retained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_entry_costs_more_than_its_counted_header() {
        // rumqttd counts 4 bytes per entry; the struct it stores is far larger, which is why
        // small messages cost more than max_segment_size suggests.
        assert!(log_entry_bytes() > 100, "{}", log_entry_bytes());
    }

    #[test]
    fn logs_grow_with_filters_and_segment_count() {
        let config = BrokerConfig::default();
        let load = Load::worst_case(&config, 10, 0);
        let one = memory_bound(&config, &load);
        let twice = memory_bound(
            &config,
            &Load {
                filters: 20,
                ..load
            },
        );
        assert_eq!(twice.logs, 2 * one.logs);
        assert_eq!(
            one.logs,
            10 * config.rumqttd.max_segment_count as u64 * one.per_segment
        );
    }

    #[test]
    fn a_segment_holds_its_size_plus_one_message_that_overshoots_it() {
        let mut config = BrokerConfig::default();
        config.rumqttd.max_segment_size = 1024;
        let big = Load {
            filters: 1,
            connections: 0,
            retained: 0,
            largest_message: 1 << 20,
            smallest_message: 1 << 20,
        };
        let bound = memory_bound(&config, &big);
        // 1023 counted bytes, then one 1 MiB message; two entries in a vector of 1024.
        assert_eq!(
            bound.per_segment,
            1023 + (1 << 20) + 1024 * log_entry_bytes()
        );
    }

    #[test]
    fn small_messages_cost_their_entry_overhead() {
        let config = BrokerConfig::default();
        let load = Load::worst_case(&config, 1, 0);
        let tiny = memory_bound(&config, &load);
        let large = memory_bound(
            &config,
            &Load {
                smallest_message: config.max_packet_size,
                ..load
            },
        );
        let size = config.rumqttd.max_segment_size as u64;
        assert!(tiny.per_segment > size / 5 * log_entry_bytes());
        assert!(large.per_segment < 2 * size + config.max_packet_size as u64 + 1);
    }

    #[test]
    fn total_is_the_sum_of_its_parts() {
        let config = BrokerConfig::default();
        let bound = memory_bound(&config, &Load::worst_case(&config, 3, 2));
        assert_eq!(bound.total, bound.logs + bound.connections + bound.retained);
        assert!(bound.connections >= config.max_connections as u64 * bound.per_connection);
    }
}
