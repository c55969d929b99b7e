//! `wattchain bench pipeline`: the real averagers, ledger nodes and cabinet agents under load.
//!
//! C cabinet agents run with a synthetic source (only the Modbus read is replaced: the window
//! cutter, the durable outbox, publishing and commit handling are the real ones) and publish R
//! quadruplets per second each through the real topics, on the embedded broker or any broker
//! given by URL. By default every role runs in this process, each on its own MQTT session, as
//! in `wattchain up`, and the memory figures are those of the whole process; with
//! `--processes` the broker, nodes and averagers are child processes (module `processes`) and
//! each reports its own.
//!
//! The bench counts from what it sees itself on `ledger/block`: the first publication of each
//! block index, and in it each `(cabinet, window)` against the windows the cabinets produced.
//! Throughout the run it probes one broker hop (module `probe`); under PBFT it also watches
//! the averages, for each window's finality (module `finality`, which says what it spans).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod finality;
mod modes;
mod probe;
mod processes;
mod report;
mod tally;

use self::finality::AverageWatch;
pub use self::finality::Finality;
use self::probe::HopProbe;
use self::processes::Children;
pub use self::processes::RoleMemory;
pub use self::report::PipelineReport;
use self::tally::ChainTally;
use super::modbus::Spread;
use super::roles::{self, Load, SyntheticCabinet};
use crate::averager;
use crate::bus::{BrokerUrl, BusError, BusOptions, QoS};
use crate::cabinet;
use crate::ledger::{Genesis, GENESIS_FILE};
use crate::node::{self, NodeConfig};
use crate::topics::Topics;

/// How long every role has to stop once production and draining are over; a role still
/// running then is reported as a failure instead of hanging the bench.
const ROLE_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What `bench pipeline` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineBench {
    /// Synthetic cabinets.
    #[arg(long, default_value_t = 50)]
    pub cabinets: usize,
    /// Quadruplets per second from each cabinet.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Samples per window.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Proof of work: leading zero bits of each block hash.
    #[arg(long, default_value_t = 8)]
    pub difficulty: u32,
    /// Consensus mode: pow, or pos (the nodes are the validators, stake 1 each).
    #[arg(long, default_value = "pow")]
    pub consensus: String,
    /// Proof of stake: the genesis block interval (default 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub block_interval: Option<Duration>,
    /// Seconds of production.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Use this broker instead of an embedded one (mqtt://HOST:PORT).
    #[arg(long)]
    pub broker: Option<String>,
    /// Averaging agents.
    #[arg(long, default_value_t = 2)]
    pub averagers: usize,
    /// Ledger nodes keeping the chain together.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Cabinet tick: the readings owed are taken, and their windows published, once per tick.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// How long, after production ends, the last windows have to reach the chain.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Where the outboxes and the chain are written (a fresh subdirectory, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_dir: PathBuf,
    /// Run the broker, nodes and averagers as child processes, each measured alone.
    #[arg(long)]
    pub processes: bool,
    /// Start the cabinets spread over one window's duration, like independent cabinets,
    /// instead of all at once (the default: every cabinet cuts its windows in the same tick,
    /// the worst case for latency).
    #[arg(long)]
    pub stagger: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl PipelineBench {
    /// A bench of `cabinets` × `rate` quadruplets/s for `seconds`, on an embedded broker.
    pub fn new(cabinets: usize, rate: f64, seconds: f64) -> Self {
        PipelineBench {
            cabinets,
            rate,
            window: 100,
            difficulty: 8,
            consensus: "pow".into(),
            block_interval: None,
            seconds,
            broker: None,
            averagers: 2,
            nodes: 1,
            tick: Duration::from_millis(10),
            drain: Duration::from_secs(15),
            data_dir: std::env::temp_dir(),
            processes: false,
            stagger: false,
            json: false,
        }
    }
}

/// Why the bench could not run.
#[derive(Debug, Error)]
pub enum PipelineBenchError {
    /// A parameter is out of range.
    #[error("invalid bench parameter: {0}")]
    Invalid(&'static str),
    /// The embedded broker did not start.
    #[error("embedded broker: {0}")]
    Broker(#[from] wattchain_broker::BrokerError),
    /// A session could not be opened or did not become ready.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A child process could not be started.
    #[error("cannot start the {role} process: {source}")]
    Spawn {
        /// Its role.
        role: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A child process did not become ready in time.
    #[error("the {0} did not become ready")]
    NotReady(&'static str),
    /// The data directory could not be created.
    #[error("bench data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The outcome of one role's task.
enum RoleEnd {
    Cabinet(Result<cabinet::CabinetStats, cabinet::CabinetError>),
    Other(String, Result<(), String>),
}

/// Runs the bench and reports; `shutdown` cuts it short (the report covers what was seen).
pub async fn run(
    bench: &PipelineBench,
    shutdown: CancellationToken,
) -> Result<PipelineReport, PipelineBenchError> {
    if bench.cabinets == 0 || bench.window == 0 || bench.averagers == 0 || bench.nodes == 0 {
        return Err(PipelineBenchError::Invalid(
            "cabinets, window, averagers and nodes must be ≥ 1",
        ));
    }
    if !(bench.rate.is_finite()
        && bench.rate > 0.0
        && bench.seconds.is_finite()
        && bench.seconds > 0.0)
    {
        return Err(PipelineBenchError::Invalid(
            "rate and seconds must be positive",
        ));
    }
    if bench.tick.is_zero() {
        return Err(PipelineBenchError::Invalid(
            "--tick must be greater than zero",
        ));
    }
    let dir = BenchDir::create(&bench.data_dir)?;
    let mut children = Children::default();
    let (broker, url, broker_name) = match &bench.broker {
        Some(u) => (None, u.parse::<BrokerUrl>()?, u.clone()),
        None if bench.processes => {
            let url = children.start_broker().await?;
            (None, url, "embedded".to_string())
        }
        None => {
            let b = roles::loopback_broker().await?;
            let url = b.url().parse::<BrokerUrl>()?;
            (Some(b), url, "embedded".to_string())
        }
    };
    let result = drive(bench, &dir.path, url, broker_name, &mut children, &shutdown).await;
    children.stop().await;
    if let Some(b) = broker {
        b.shutdown().await;
    }
    result
}

async fn drive(
    bench: &PipelineBench,
    dir: &Path,
    url: BrokerUrl,
    broker_name: String,
    children: &mut Children,
    shutdown: &CancellationToken,
) -> Result<PipelineReport, PipelineBenchError> {
    let topics = Topics::default();
    let stop = CancellationToken::new();
    let mut roles: JoinSet<RoleEnd> = JoinSet::new();
    let genesis = modes::genesis(bench, dir)?;
    genesis
        .write_new(&dir.join(GENESIS_FILE))
        .map_err(|_| PipelineBenchError::Invalid("cannot write the bench genesis"))?;

    let mut observer = roles::session(
        BusOptions::new(url.clone(), "bench-observer", "bench"),
        vec![
            (topics.block(), QoS::AtLeastOnce),
            (topics.agent_status("+"), QoS::AtLeastOnce),
        ],
    )
    .await?;
    if bench.processes {
        children
            .start_agents(bench, &url, dir, &mut observer, &topics)
            .await?;
    } else {
        spawn_agents(bench, &genesis, &url, dir, &topics, &stop, &mut roles).await?;
    }

    let probe = HopProbe::start(&url, &topics, roles::READY).await?;
    let pbft = bench.consensus == crate::ledger::consensus::pbft::MODE;
    let averages = if pbft {
        Some(AverageWatch::start(&url, &topics, roles::READY).await?)
    } else {
        None
    };

    let per_cabinet = ((bench.rate * bench.seconds) as u64 / bench.window as u64).max(1);
    let load = Load {
        rate: bench.rate,
        window: bench.window,
        tick: bench.tick,
        limit: Some(per_cabinet * bench.window as u64),
    };
    let mut cabinets = Vec::new();
    for k in 0..bench.cabinets {
        let id = format!("bench-{k}");
        let c = SyntheticCabinet::connect(&url, &id, dir, &genesis, load).await?;
        cabinets.push((id, c.config, c.bus, c.status_bus));
    }
    let rss_idle_kib = proc_status_kib("VmRSS").unwrap_or(0);
    children.mark_idle();
    let mut tally = ChainTally::new(cabinets.iter().map(|c| c.0.clone()), per_cabinet);
    let start = Instant::now();
    let window_time = Duration::from_secs_f64(bench.window as f64 / bench.rate);
    let cabinet_count = cabinets.len();
    for (k, (_, config, bus, status_bus)) in cabinets.into_iter().enumerate() {
        let s = stop.clone();
        let offset = if bench.stagger {
            window_time.mul_f64(k as f64 / cabinet_count as f64)
        } else {
            Duration::ZERO
        };
        roles.spawn(async move {
            tokio::select! {
                _ = s.cancelled() => {}
                _ = tokio::time::sleep(offset) => {}
            }
            RoleEnd::Cabinet(cabinet::run(config, bus, status_bus, s).await)
        });
    }
    info!(
        cabinets = bench.cabinets,
        rate = bench.rate,
        windows = per_cabinet,
        "bench: production started"
    );

    let deadline = start + Duration::from_secs_f64(bench.seconds) + bench.drain;
    let mut failures = Vec::new();
    let block_topic = topics.block();
    while !tally.complete() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                warn!(missing = tally.expected() - tally.committed(), "bench: drain time over");
                break;
            }
            msg = observer.recv() => match msg {
                Some(m) if m.topic == block_topic => tally.on_block(&m.payload, start),
                Some(_) => {}
                None => break,
            },
            Some(end) = roles.join_next() => {
                // No role ends before `stop`: this one failed.
                failures.push(describe_early_end(end));
                break;
            }
        }
    }
    // Every window seen in a block; the judge is a node's chain file (a block on the bus may
    // have lost a fork), once the last windows are final there.
    let chain_file = dir.join("node-1").join(crate::ledger::CHAIN_FILE);
    while failures.is_empty() && !shutdown.is_cancelled() {
        let (in_file, _) = tally.in_chain_file(&chain_file);
        if in_file >= tally.expected() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut hops = probe.finish().await;
    let hop = Spread::of(&mut hops);
    let finality = match averages {
        Some(watch) => Some(Finality::of(
            tally.first_seen.iter(),
            &watch.finish().await,
            hop.p50_us,
        )),
        None => None,
    };
    let rss_peak_kib = proc_status_kib("VmHWM").unwrap_or(0);
    let role_memory = children.memory();
    stop.cancel();
    let (mut produced, mut republished) = (0, 0);
    let stop_by = tokio::time::Instant::now() + ROLE_STOP_TIMEOUT;
    loop {
        let end = match tokio::time::timeout_at(stop_by, roles.join_next()).await {
            Ok(Some(end)) => end,
            Ok(None) => break,
            Err(_) => {
                failures.push(format!(
                    "{} role(s) did not stop within {ROLE_STOP_TIMEOUT:?}",
                    roles.len()
                ));
                roles.abort_all();
                break;
            }
        };
        match end {
            Ok(RoleEnd::Cabinet(Ok(stats))) => {
                produced += stats.windows;
                republished += stats.republished;
            }
            Ok(RoleEnd::Cabinet(Err(e))) => failures.push(format!("cabinet: {e}")),
            Ok(RoleEnd::Other(role, Err(e))) => failures.push(format!("{role}: {e}")),
            Ok(RoleEnd::Other(_, Ok(()))) => {}
            Err(e) => failures.push(format!("a role panicked: {e}")),
        }
    }
    observer.close().await;
    let elapsed = tally.last_commit.map_or(Duration::ZERO, |t| t - start);
    let (committed, duplicated) = tally.in_chain_file(&chain_file);
    let chain = modes::figures(&genesis, &chain_file);
    let blocks_final = std::fs::read_to_string(&chain_file)
        .map(|t| t.lines().count().saturating_sub(1) as u64)
        .unwrap_or(0);
    Ok(PipelineReport {
        broker: broker_name,
        cabinets: bench.cabinets,
        staggered: bench.stagger,
        offered_quads_per_s: bench.rate * bench.cabinets as f64,
        sustained_quads_per_s: if elapsed.is_zero() {
            0.0
        } else {
            tally.quads as f64 / elapsed.as_secs_f64()
        },
        windows_produced: produced,
        windows_committed: committed,
        windows_lost: produced.saturating_sub(committed),
        windows_duplicated: duplicated,
        blocks: tally.blocks.len() as u64,
        blocks_final,
        stale_rate: if tally.blocks.is_empty() {
            0.0
        } else {
            1.0 - (blocks_final as f64 / tally.blocks.len() as f64).min(1.0)
        },
        republished,
        window_to_block: Spread::of(&mut tally.latencies),
        hop_samples: hops.len() as u64,
        hop,
        finality,
        rss_idle_kib,
        rss_peak_kib,
        elapsed_s: elapsed.as_secs_f64(),
        roles: role_memory,
        chain,
        failures,
    })
}

/// Starts the nodes and the averagers in this process, each on its own session.
async fn spawn_agents(
    bench: &PipelineBench,
    genesis: &Genesis,
    url: &BrokerUrl,
    dir: &Path,
    topics: &Topics,
    stop: &CancellationToken,
    roles: &mut JoinSet<RoleEnd>,
) -> Result<(), PipelineBenchError> {
    for n in 1..=bench.nodes {
        let nconf = NodeConfig {
            id: format!("bench-node-{n}"),
            data_dir: dir.join(format!("node-{n}")),
            ..NodeConfig::default()
        };
        let options = BusOptions::new(url.clone(), &nconf.id, node::ROLE);
        let bus = roles::session(options, nconf.subscriptions()).await?;
        let (s, g) = (stop.clone(), genesis.clone());
        roles.spawn(async move {
            let r = node::run(nconf, Some(g), bus, s, None).await;
            RoleEnd::Other("node".into(), r.map(|_| ()).map_err(|e| e.to_string()))
        });
    }
    for n in 1..=bench.averagers {
        let (aconf, bus) = roles::averager(url, &format!("bench-averager-{n}"), topics).await?;
        let s = stop.clone();
        roles.spawn(async move {
            averager::run(aconf, bus, s).await;
            RoleEnd::Other("averager".into(), Ok(()))
        });
    }

    Ok(())
}

fn describe_early_end(end: Result<RoleEnd, tokio::task::JoinError>) -> String {
    match end {
        Ok(RoleEnd::Cabinet(Ok(stats))) => format!("a cabinet stopped early: {stats:?}"),
        Ok(RoleEnd::Cabinet(Err(e))) => format!("cabinet: {e}"),
        Ok(RoleEnd::Other(role, Err(e))) => format!("{role}: {e}"),
        Ok(RoleEnd::Other(role, Ok(()))) => format!("{role} stopped early"),
        Err(e) => format!("a role panicked: {e}"),
    }
}

/// A fresh directory for one run, removed when dropped.
/// A fresh data directory for one bench run, removed when dropped.
pub(crate) struct BenchDir {
    pub(crate) path: PathBuf,
}

impl BenchDir {
    pub(crate) fn create(parent: &Path) -> Result<BenchDir, PipelineBenchError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("wattchain-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| PipelineBenchError::DataDir {
            path: path.clone(),
            source,
        })?;
        Ok(BenchDir { path })
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            warn!(path = %self.path.display(), cause = %e, "cannot remove the bench data directory");
        }
    }
}

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    status_kib_of("self", field)
}

/// A `kB` field of `/proc/{who}/status`, `who` a pid or `self`; `None` off Linux.
pub fn status_kib_of(who: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_produced_window_reaches_the_chain_exactly_once() {
        for stagger in [false, true] {
            check_every_window_committed_once(stagger).await;
        }
    }

    async fn check_every_window_committed_once(stagger: bool) {
        let mut bench = PipelineBench::new(3, 200.0, 1.0);
        bench.window = 10;
        bench.difficulty = 4;
        bench.stagger = stagger;
        let report = run(&bench, CancellationToken::new()).await.unwrap();
        assert_eq!(report.staggered, stagger);
        assert_every_window_committed_once(&report, 3 * 20);
        assert!(report.window_to_block.p50_us <= report.window_to_block.max_us);
        assert!(report.rss_peak_kib >= report.rss_idle_kib);
        assert!(
            report.finality.is_none(),
            "finality is reported under pbft only"
        );
    }

    fn assert_every_window_committed_once(report: &PipelineReport, windows: u64) {
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.windows_produced, windows);
        assert_eq!(report.windows_committed, windows);
        assert_eq!((report.windows_lost, report.windows_duplicated), (0, 0));
        assert!(report.sustained_quads_per_s > 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pbft_bench_times_the_finality_of_every_committed_window_and_the_broker_hop() {
        let mut bench = PipelineBench::new(2, 50.0, 2.0);
        bench.window = 10;
        bench.consensus = crate::ledger::consensus::pbft::MODE.into();
        bench.nodes = 4;
        let report = run(&bench, CancellationToken::new()).await.unwrap();
        assert_every_window_committed_once(&report, 2 * 10);
        let finality = report.finality.expect("a pbft run reports its finality");
        assert_eq!(
            (finality.samples, finality.unobserved),
            (report.windows_committed, 0),
            "every committed window was seen complete, then in its block"
        );
        assert!(report.hop_samples > 0, "the probe crossed the broker");
        assert!(report.hop.p50_us > 0.0 && finality.latency.p50_us > 0.0);
        assert!(
            !report.chain.producers.is_empty(),
            "the chain names its primaries"
        );
        for p in &report.chain.producers {
            assert_eq!(p.stake_share, 0.25, "one vote in four: {p:?}");
        }
    }
}
