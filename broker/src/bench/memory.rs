//! Peak memory of the broker under a flood, next to [`super::bound::memory_bound`].
//!
//! A [`MemoryScenario`] starts the broker in this process with a given tuning, subscribes one
//! raw MQTT 3.1.1 client per filter (some never read: a stalled subscriber), floods every
//! filter's topic with QoS 0 messages of one size until each log has rotated through all its
//! segments more than once, and reads the process's peak resident size (`VmHWM`).
//!
//! The clients are hand-rolled on a socket so that they hold nothing: the growth measured is
//! the broker's. rumqttd cannot be stopped, so one process measures one scenario; the bench
//! binary runs each in a child process.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::bound::{memory_bound, Load, MemoryBound};
use super::client::{connect, discard, publish_packet, subscribe};
use crate::{BrokerConfig, BrokerError, RumqttdTuning};

/// Bound on a whole scenario, so a stuck broker fails the bench instead of hanging it.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(600);

/// Topic prefix of the flooded filters; each filter is `membench/NNNN` (13 bytes).
const TOPIC_PREFIX: &str = "membench/";

/// Topic of the marker that proves the router has appended every flood message.
const DONE_TOPIC: &str = "membench-done";

/// Bytes of pre-encoded packets written per system call by the publisher.
const PUBLISH_BATCH: usize = 256 * 1024;

/// One measured configuration and the flood it gets.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryScenario {
    /// Short name shown in the report.
    pub name: String,
    /// rumqttd segment and queue settings under test.
    #[serde(serialize_with = "serialize_tuning")]
    pub tuning: RumqttdTuning,
    /// Distinct filters, each with its own subscriber.
    pub filters: usize,
    /// Of those subscribers, how many never read (their connection stalls).
    pub stalled: usize,
    /// Payload bytes of every flood message.
    pub payload: usize,
    /// Counted bytes published to each filter, as a multiple of its log's capacity
    /// (`max_segment_size × max_segment_count`); above 1 every segment has been rotated out.
    pub fill: f64,
}

/// The tuning's memory-relevant values (the config type itself is only deserialised).
fn serialize_tuning<S: serde::Serializer>(
    tuning: &RumqttdTuning,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut fields = serializer.serialize_struct("RumqttdTuning", 3)?;
    fields.serialize_field("max_segment_size", &tuning.max_segment_size)?;
    fields.serialize_field("max_segment_count", &tuning.max_segment_count)?;
    fields.serialize_field(
        "max_outgoing_packet_count",
        &tuning.max_outgoing_packet_count,
    )?;
    fields.end()
}

/// What a scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// The scenario run.
    pub scenario: MemoryScenario,
    /// Resident bytes of the process before the broker started.
    pub baseline_rss: u64,
    /// Peak resident bytes of the process (`VmHWM`) over the run.
    pub peak_rss: u64,
    /// `peak_rss - baseline_rss`: what the broker and the flood added.
    pub growth: u64,
    /// The bound for this scenario's traffic (message size, filters, connections).
    pub bound: MemoryBound,
    /// The bound for any traffic this configuration allows on the same filters and connections.
    pub worst_case: MemoryBound,
    /// Messages published in all.
    pub messages: u64,
}

impl std::fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let s = &self.scenario;
        write!(
            f,
            "{:<14} S={} KiB C={} out={} | {} filters ({} stalled), {} msgs of {} B | peak growth {:.1} MiB <= bound {:.1} MiB (logs {:.1}, conns {:.1}) [{}]; worst case {:.1} MiB",
            s.name,
            s.tuning.max_segment_size / 1024,
            s.tuning.max_segment_count,
            s.tuning.max_outgoing_packet_count,
            s.filters,
            s.stalled,
            self.messages,
            s.payload,
            mib(self.growth),
            mib(self.bound.total),
            mib(self.bound.logs),
            mib(self.bound.connections),
            if self.growth <= self.bound.total { "holds" } else { "EXCEEDED" },
            mib(self.worst_case.total),
        )
    }
}

impl MemoryScenario {
    /// Counted size of one flood message: rumqttd's 4 bytes + topic + payload.
    fn counted_message(&self) -> usize {
        4 + topic(0).len() + self.payload
    }

    /// Messages published to each filter.
    fn messages_per_filter(&self) -> u64 {
        let capacity = (self.tuning.max_segment_size * self.tuning.max_segment_count) as f64;
        (capacity * self.fill / self.counted_message() as f64).ceil() as u64 + 1
    }

    /// The broker configuration: defaults with this tuning, on a free port.
    fn config(&self) -> BrokerConfig {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rumqttd: self.tuning.clone(),
            ..BrokerConfig::default()
        }
    }

    /// The load this scenario puts on the broker, for the bound.
    fn load(&self) -> Load {
        Load {
            // The flooded filters, the done marker's and the readiness witness's.
            filters: self.filters + 2,
            // Subscribers, the publisher and the done witness.
            connections: self.filters + 2,
            retained: 0,
            largest_message: self.counted_message() + 5,
            smallest_message: self.counted_message(),
        }
    }
}

/// Largest payload that still fits `max_packet_size` with a flood topic (5-byte header).
fn largest_payload(config: &BrokerConfig) -> usize {
    config.max_packet_size - 5 - 2 - topic(0).len()
}

/// The scenarios the bench runs: the given tuning with the largest messages, then with small
/// ones (where entry overhead dominates), each on a few filters with one stalled subscriber;
/// then `filters` filters with 200-byte messages (a site's block-sized traffic).
pub fn presets(tuning: &RumqttdTuning, label: &str, filters: usize) -> Vec<MemoryScenario> {
    let largest = largest_payload(&BrokerConfig::default());
    vec![
        MemoryScenario {
            name: format!("{label}-large"),
            tuning: tuning.clone(),
            filters: 8,
            stalled: 1,
            payload: largest,
            fill: 1.5,
        },
        MemoryScenario {
            name: format!("{label}-stalled"),
            tuning: tuning.clone(),
            filters: 1,
            stalled: 1,
            payload: largest,
            // Enough largest messages to fill rumqttd's queue for the stalled subscriber
            // twice over (199 + one batch), whatever the log keeps.
            fill: 2.0 * (199 + tuning.max_outgoing_packet_count.max(100)) as f64 * largest as f64
                / (tuning.max_segment_size * tuning.max_segment_count) as f64,
        },
        MemoryScenario {
            name: format!("{label}-small"),
            tuning: tuning.clone(),
            filters: 2,
            stalled: 1,
            payload: 8,
            fill: 1.5,
        },
        MemoryScenario {
            name: format!("{label}-{filters}f"),
            tuning: tuning.clone(),
            filters,
            stalled: 1,
            payload: 200,
            fill: 1.5,
        },
    ]
}

/// Runs `scenario` against a broker started in this process; call once per process.
pub async fn run(scenario: &MemoryScenario) -> Result<MemoryReport, BrokerError> {
    let fail = |what: &str| BrokerError::Bench(format!("{}: {what}", scenario.name));
    if scenario.filters == 0 || scenario.stalled > scenario.filters || scenario.fill <= 0.0 {
        return Err(fail("needs filters >= stalled, filters > 0 and fill > 0"));
    }
    let config = scenario.config();
    let baseline_rss = proc_status("VmRSS").map_err(|e| fail(&e))?;
    let broker = crate::start(config.clone()).await?;
    let addr = broker.local_addr();
    let outcome = tokio::time::timeout(SCENARIO_TIMEOUT, flood(addr, scenario)).await;
    broker.shutdown().await;
    let messages = outcome.map_err(|_| fail("timed out"))??;
    let peak_rss = proc_status("VmHWM").map_err(|e| fail(&e))?;
    let load = scenario.load();
    Ok(MemoryReport {
        scenario: scenario.clone(),
        baseline_rss,
        peak_rss,
        growth: peak_rss.saturating_sub(baseline_rss),
        bound: memory_bound(&config, &load),
        worst_case: memory_bound(
            &config,
            &Load::worst_case(&config, load.filters, load.retained),
        ),
        messages,
    })
}

/// Subscribes, floods, and returns once the router has appended every message.
async fn flood(addr: SocketAddr, scenario: &MemoryScenario) -> Result<u64, BrokerError> {
    let stop = CancellationToken::new();
    let mut readers = Vec::new();
    let mut stalled = Vec::new();
    for i in 0..scenario.filters {
        let mut stream = connect(addr, &format!("membench-sub-{i}")).await?;
        subscribe(&mut stream, &topic(i)).await?;
        if i < scenario.stalled {
            // Kept open, never read: rumqttd's queue and write buffer for it fill up.
            stalled.push(stream);
        } else {
            readers.push(tokio::spawn(discard(stream, stop.clone())));
        }
    }
    let mut witness = connect(addr, "membench-witness").await?;
    subscribe(&mut witness, DONE_TOPIC).await?;

    let mut publisher = connect(addr, "membench-pub").await?;
    let per_filter = scenario.messages_per_filter();
    let payload = vec![0x5a; scenario.payload];
    let mut batch = Vec::with_capacity(PUBLISH_BATCH + scenario.payload + 64);
    let io = |err: std::io::Error| BrokerError::Bench(format!("publishing: {err}"));
    for i in 0..scenario.filters {
        let packet = publish_packet(&topic(i), &payload);
        for _ in 0..per_filter {
            batch.extend_from_slice(&packet);
            if batch.len() >= PUBLISH_BATCH {
                publisher.write_all(&batch).await.map_err(io)?;
                batch.clear();
            }
        }
    }
    batch.extend_from_slice(&publish_packet(DONE_TOPIC, b"done"));
    publisher.write_all(&batch).await.map_err(io)?;
    drop(batch);

    // The router handles one connection's packets in order: the marker arrives after every
    // flood message has been appended to its filter's log.
    let mut first = [0u8; 1];
    witness
        .read_exact(&mut first)
        .await
        .map_err(|e| BrokerError::Bench(format!("waiting for the done marker: {e}")))?;
    stop.cancel();
    for reader in readers {
        let _ = reader.await;
    }
    drop(stalled);
    Ok(per_filter * scenario.filters as u64)
}

/// The topic (and filter) of flooded filter `i`.
fn topic(i: usize) -> String {
    format!("{TOPIC_PREFIX}{i:04}")
}

/// A `/proc/self/status` field in bytes (Linux; elsewhere the bench cannot run).
fn proc_status(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status_field(&status, field).ok_or_else(|| format!("no {field} in /proc/self/status"))
}

/// A `Name:   1234 kB` line of a status text, in bytes.
fn status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tbench\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_field(status, "VmHWM"), Some(2 * 1024 * 1024));
        assert_eq!(status_field(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_field(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_reports_a_peak_no_lower_than_its_resident_size() {
        // One read, so both figures describe the same instant.
        let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
        let peak = status_field(&status, "VmHWM").expect("VmHWM");
        let now = status_field(&status, "VmRSS").expect("VmRSS");
        assert!(peak >= now && now > 0);
        assert!(proc_status("VmHWM").is_ok());
    }
}
