//! `wattchain bench sse`: event-stream fan-out. Quadruplets are published on the embedded
//! broker at a fixed rate; a `wattchain web` child process (the server, measured alone for
//! memory) relays them to many event-stream clients; each client times every quadruplet from
//! its publication to its arrival (`seq` carries the publication instant, one clock).

use std::fmt;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::modbus::Spread;
use super::pipeline::status_kib_of;
use crate::messages::{encode, now_ts, Quadruplet};
use crate::web::client::{self, Client, ClientError, EventReader};

/// What `bench sse` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct SseBench {
    /// Event-stream clients.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Quadruplets published per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds published before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why the bench could not run.
#[derive(Debug, Error)]
pub enum SseBenchError {
    /// The embedded broker did not start.
    #[error("broker: {0}")]
    Broker(#[from] wattchain_broker::BrokerError),
    /// The server process or a scratch file could not be set up.
    #[error("setting up: {0}")]
    Io(#[from] std::io::Error),
    /// The scratch chain could not be written.
    #[error(transparent)]
    Chain(#[from] super::http::HttpBenchError),
    /// The server did not say where it listens, or is not connected to the broker.
    #[error("the web server: {0}")]
    Server(String),
    /// An event-stream request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What `bench sse` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SseReport {
    /// Clients connected.
    pub clients: usize,
    /// Quadruplets per second offered.
    pub rate: u32,
    /// Quadruplets published while measuring.
    pub published: u64,
    /// Of `published × clients`, the deliveries that arrived.
    pub delivered: u64,
    /// Streams that ended before the run did (dropped as too slow, or failed).
    pub streams_lost: usize,
    /// Publication to arrival at a client.
    pub latency: Spread,
    /// Server RSS before the clients connected, kB.
    pub server_rss_idle_kib: u64,
    /// Server RSS at the end of the load, kB.
    pub server_rss_loaded_kib: u64,
    /// Server peak RSS, kB.
    pub server_rss_peak_kib: u64,
}

impl fmt::Display for SseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = self.published * self.clients as u64;
        writeln!(
            f,
            "event-stream fan-out: {} clients, {} quadruplets/s, {} published while measuring",
            self.clients, self.rate, self.published
        )?;
        writeln!(
            f,
            "  delivered      {} of {} ({:.3} %), {} stream(s) lost",
            self.delivered,
            expected,
            100.0 * self.delivered as f64 / expected.max(1) as f64,
            self.streams_lost
        )?;
        writeln!(
            f,
            "  latency        p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (target p99 <= 50 ms)",
            self.latency.p50_us / 1e3,
            self.latency.p99_us / 1e3,
            self.latency.max_us / 1e3
        )?;
        write!(
            f,
            "  server RSS     {:.1} MB idle, {:.1} MB loaded, {:.1} MB peak",
            self.server_rss_idle_kib as f64 / 1024.0,
            self.server_rss_loaded_kib as f64 / 1024.0,
            self.server_rss_peak_kib as f64 / 1024.0
        )
    }
}

/// The `"seq":N` of a quadruplet's JSON, without parsing the rest.
fn seq_of(data: &str) -> Option<u64> {
    let rest = &data[data.find("\"seq\":")? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Starts `wattchain web` on a free port; returns it and its address.
async fn start_server(
    broker: &str,
    chain: &std::path::Path,
) -> Result<(Child, SocketAddr), SseBenchError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "web",
            "--broker",
            broker,
            "--id",
            "bench-web",
            "--http",
            "127.0.0.1:0",
            "--chain",
        ])
        .arg(chain)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SseBenchError::Server("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let find = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line
                .trim_start()
                .strip_prefix("dashboard")
                .and_then(|l| l.split("http://").nth(1))
                .and_then(|l| l.split('/').next())
                .and_then(|a| a.parse().ok())
            {
                return Ok::<_, std::io::Error>(Some(addr));
            }
        }
        Ok(None)
    };
    let addr = tokio::time::timeout(Duration::from_secs(20), find)
        .await
        .map_err(|_| SseBenchError::Server("no address printed within 20 s".into()))??
        .ok_or_else(|| SseBenchError::Server("exited before printing its address".into()))?;
    // Keep reading its stdout so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client::get(addr, "/api/v1/status", &[]).await?;
        if status.json()["mqtt_connected"] == true {
            return Ok((child, addr));
        }
        if Instant::now() > deadline {
            return Err(SseBenchError::Server(
                "not connected to the broker within 20 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Tally {
    latencies: Vec<Duration>,
    received: u64,
    lost: bool,
}

/// Runs the fan-out and reports.
pub async fn run(
    bench: &SseBench,
    shutdown: CancellationToken,
) -> Result<SseReport, SseBenchError> {
    let broker = super::roles::loopback_broker().await?;
    let dir = tempfile::tempdir()?;
    let chain = super::http::make_chain(dir.path(), 3)?;
    let (mut server, addr) = start_server(&broker.url(), &chain).await?;
    let pid = server.id().unwrap_or(0).to_string();
    let server_rss_idle_kib = status_kib_of(&pid, "VmRSS").unwrap_or(0);

    let epoch = Instant::now();
    let warm = Duration::from_secs_f64(bench.warmup.max(0.0));
    let span = Duration::from_secs_f64(bench.seconds.max(0.1));
    let measure_from = epoch + warm + Duration::from_millis(500);
    let stop = shutdown.child_token();

    // Clients first, so that every one sees every measured quadruplet.
    let mut readers = Vec::with_capacity(bench.clients);
    for _ in 0..bench.clients.max(1) {
        let mut c = Client::connect(addr).await?;
        let response = c.send("GET", "/api/v1/events", &[]).await?;
        if response.status() != 200 {
            return Err(SseBenchError::Server(format!(
                "event stream refused: {}",
                response.status()
            )));
        }
        let mut events = EventReader::new(response);
        let stop = stop.clone();
        let from_us = (measure_from - epoch).as_micros() as u64;
        readers.push(tokio::spawn(async move {
            let _connection = c;
            let mut t = Tally {
                latencies: Vec::new(),
                received: 0,
                lost: false,
            };
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    e = events.next() => e,
                };
                let Some(event) = event else {
                    t.lost = true;
                    break;
                };
                if event.event != "quad" {
                    continue;
                }
                if let Some(seq) = seq_of(&event.data).filter(|s| *s >= from_us) {
                    let now = epoch.elapsed();
                    t.latencies
                        .push(now.saturating_sub(Duration::from_micros(seq)));
                    t.received += 1;
                }
            }
            t
        }));
    }

    let mut options = MqttOptions::new(
        "bench-sse-publisher",
        "127.0.0.1",
        broker.local_addr().port(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (mqtt, mut eventloop) = AsyncClient::new(options, 1024);
    let looping = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let per_tick = (bench.rate / 1000).max(1);
    let tick = Duration::from_secs_f64(f64::from(per_tick) / f64::from(bench.rate.max(1)));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = measure_from + span;
    let mut published = 0u64;
    let topic = crate::topics::Topics::default().quad("bench");
    while Instant::now() < end && !stop.is_cancelled() {
        ticker.tick().await;
        for _ in 0..per_tick {
            let sent = epoch.elapsed();
            let quad = Quadruplet {
                cabinet: "bench".into(),
                seq: sent.as_micros() as u64,
                ts: now_ts(),
                u: 230.0,
                i: 1.0,
                pa: 230.0,
                pr: 0.0,
            };
            if mqtt
                .publish(topic.clone(), QoS::AtMostOnce, false, encode(&quad))
                .await
                .is_err()
            {
                break;
            }
            if sent >= measure_from - epoch {
                published += 1;
            }
        }
    }
    let server_rss_loaded_kib = status_kib_of(&pid, "VmRSS").unwrap_or(0);
    let server_rss_peak_kib = status_kib_of(&pid, "VmHWM").unwrap_or(0);
    // Stragglers: what was published last has this long to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut all = Vec::new();
    let (mut delivered, mut lost) = (0, 0);
    for r in readers {
        let t = r.await.expect("reader does not panic");
        delivered += t.received;
        lost += usize::from(t.lost);
        all.extend(t.latencies);
    }
    let _ = mqtt.disconnect().await;
    looping.abort();
    let _ = server.kill().await;
    broker.shutdown().await;
    Ok(SseReport {
        clients: bench.clients.max(1),
        rate: bench.rate,
        published,
        delivered,
        streams_lost: lost,
        latency: Spread::of(&mut all),
        server_rss_idle_kib,
        server_rss_loaded_kib,
        server_rss_peak_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_number_is_read_without_parsing_the_rest() {
        assert_eq!(
            seq_of(r#"{"cabinet":"b","seq":12345,"ts":"x"}"#),
            Some(12345)
        );
        assert_eq!(seq_of(r#"{"seq":7}"#), Some(7));
        assert_eq!(seq_of(r#"{"cabinet":"b"}"#), None);
    }
}
