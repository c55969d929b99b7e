//! `wattchain bench converge`: how fast ledger nodes are back on one head after a partition
//! heals, against the block propagation time and one sync round trip measured in the same run
//! (the target: convergence ≤ 2 × propagation + one sync round trip).
//!
//! N proof-of-work nodes, averagers and a light synthetic load (module `roles`, as in `bench
//! pipeline`) run in this process on the embedded broker. Each node reaches the broker through
//! its own TCP relay (module `relay`), so that it can be cut off — its connection dropped, new
//! ones refused — while it keeps running, as a network partition does. Each trial:
//!
//! 1. **propagation**, every node connected: each block's first publication on `ledger/block`,
//!    as the bench receives it, is timed to the moment every node's retained
//!    `ledger/node/{id}/head` names it;
//! 2. **sync round trip**: the bench, as a sync client, asks a node for the headers after its
//!    head on `ledger/sync/request` and times the reply on `ledger/sync/reply/{bench}`;
//! 3. **cut**: one node (each in turn) is cut off for at least `--cut`, and until the others
//!    are `--behind` blocks ahead of it;
//! 4. **heal**: convergence is the time from the cut node's reconnection (its session up
//!    again) to the first moment every node's head names one block.
//!
//! The bench's sessions (and so every time it takes) see the broker as any watcher does.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

mod observer;
mod relay;
mod report;

use self::observer::{Closed, Observer};
use self::relay::Relay;
pub use self::report::{ConvergeReport, Quantiles, TrialReport};
use super::pipeline::BenchDir;
use super::roles::{self, Load, SyntheticCabinet};
use crate::bus::{BrokerUrl, BusOptions, Link, QoS};
use crate::ledger::{Genesis, GenesisSpec, GENESIS_FILE};
use crate::messages::encode;
use crate::node::wire::{SyncKind, SyncRequest};
use crate::node::{self, NodeConfig};
use crate::topics::Topics;

/// How long the roles have to stop at the end.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What `bench converge` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvergeBench {
    /// Ledger nodes (proof of work).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Partitions healed; each cuts the next node off the broker.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Least time the node stays cut off.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub cut: Duration,
    /// Blocks the other nodes must be ahead of the cut node before the cut heals.
    #[arg(long, default_value_t = 3)]
    pub behind: u64,
    /// Time every node is connected before each cut, timing block propagation.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub steady: Duration,
    /// Sync round trips timed before each cut (the trial takes their median).
    #[arg(long, default_value_t = 5)]
    pub probes: usize,
    /// Longest wait for any step (the nodes agreeing, a reply, the chain moving on); a trial
    /// whose step takes longer fails.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Synthetic cabinets (the load that makes the chain grow).
    #[arg(long, default_value_t = 1)]
    pub cabinets: usize,
    /// Readings per second from each cabinet.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Samples per window.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Proof of work: leading zero bits of each block hash.
    #[arg(long, default_value_t = 12)]
    pub difficulty: u32,
    /// Where the nodes' data directories and outboxes go (a fresh subdirectory, removed
    /// afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub data_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ConvergeBench {
    /// `trials` partitions of `nodes` nodes, the other settings at their defaults.
    pub fn new(nodes: usize, trials: usize) -> Self {
        ConvergeBench {
            nodes,
            trials,
            cut: Duration::from_secs(3),
            behind: 3,
            steady: Duration::from_secs(2),
            probes: 5,
            settle: Duration::from_secs(30),
            cabinets: 1,
            rate: 20.0,
            window: 4,
            difficulty: 12,
            data_dir: std::env::temp_dir(),
            json: false,
        }
    }
}

/// Why the bench could not run.
#[derive(Debug, Error)]
pub enum ConvergeBenchError {
    /// A parameter is out of range.
    #[error("invalid bench parameter: {0}")]
    Invalid(&'static str),
    /// Setting up (broker, relays, files, sessions) failed.
    #[error("bench converge: {0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(e: E) -> ConvergeBenchError {
    ConvergeBenchError::Setup(e.to_string())
}

/// A node of the bench: its id, its relay and its session's link state.
struct BenchNode {
    id: String,
    relay: Relay,
    link: watch::Receiver<Link>,
}

/// Runs the bench; `shutdown` cuts it short (the report covers the trials done).
pub async fn run(
    bench: &ConvergeBench,
    shutdown: CancellationToken,
) -> Result<ConvergeReport, ConvergeBenchError> {
    if bench.nodes < 2 || bench.trials == 0 || bench.probes == 0 || bench.behind == 0 {
        return Err(ConvergeBenchError::Invalid(
            "nodes must be ≥ 2; trials, probes and behind ≥ 1",
        ));
    }
    if bench.cabinets == 0 || bench.window == 0 || !(bench.rate.is_finite() && bench.rate > 0.0) {
        return Err(ConvergeBenchError::Invalid(
            "cabinets and window must be ≥ 1, rate positive",
        ));
    }
    let dir = BenchDir::create(&bench.data_dir).map_err(setup)?;
    let genesis = Genesis::new(GenesisSpec::pow(bench.difficulty))
        .map_err(|_| ConvergeBenchError::Invalid("difficulty must be 0..=40"))?;
    genesis
        .write_new(&dir.path.join(GENESIS_FILE))
        .map_err(setup)?;
    let broker = super::roles::loopback_broker().await.map_err(setup)?;
    let stop = shutdown.child_token();
    let mut roles = JoinSet::new();
    let result = drive(bench, &dir.path, &genesis, &broker, &stop, &mut roles).await;
    stop.cancel();
    let mut failures = Vec::new();
    let stop_by = Instant::now() + STOP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(stop_by, roles.join_next()).await {
            Ok(Some(Ok(Ok(())))) => {}
            Ok(Some(Ok(Err(e)))) => failures.push(e),
            Ok(Some(Err(e))) => failures.push(format!("a role panicked: {e}")),
            Ok(None) => break,
            Err(_) => {
                failures.push(format!("{} role(s) did not stop in time", roles.len()));
                roles.abort_all();
                break;
            }
        }
    }
    broker.shutdown().await;
    let (mut report, nodes) = result?;
    for n in nodes {
        n.relay.join().await;
    }
    report.failures.extend(failures);
    Ok(report)
}

type Roles = JoinSet<Result<(), String>>;

async fn drive(
    bench: &ConvergeBench,
    dir: &std::path::Path,
    genesis: &Genesis,
    broker: &wattchain_broker::Broker,
    stop: &CancellationToken,
    roles: &mut Roles,
) -> Result<(ConvergeReport, Vec<BenchNode>), ConvergeBenchError> {
    let url: BrokerUrl = broker.url().parse().map_err(setup)?;
    let topics = Topics::default();
    let nodes = start_nodes(bench, dir, genesis, broker, stop, roles).await?;
    for k in 1..=2 {
        let (config, bus) = roles::averager(&url, &format!("converge-averager-{k}"), &topics)
            .await
            .map_err(setup)?;
        let s = stop.clone();
        roles.spawn(async move {
            crate::averager::run(config, bus, s).await;
            Ok(())
        });
    }
    let me = "bench-converge";
    let bus = roles::session(
        BusOptions::new(url.clone(), me, "bench"),
        Observer::subscriptions(&topics, me),
    )
    .await
    .map_err(setup)?;
    let ids = nodes.iter().map(|n| n.id.clone()).collect();
    let mut watch = Observer::new(bus, topics, me, ids, NodeConfig::default().max_payload);
    let load = Load {
        rate: bench.rate,
        window: bench.window,
        tick: Duration::from_millis(10),
        limit: None,
    };
    for k in 0..bench.cabinets {
        let c = SyntheticCabinet::connect(&url, &format!("converge-{k}"), dir, genesis, load)
            .await
            .map_err(setup)?;
        let s = stop.clone();
        roles.spawn(async move {
            crate::cabinet::run(c.config, c.bus, c.status_bus, s)
                .await
                .map(|_| ())
                .map_err(|e| format!("cabinet: {e}"))
        });
    }
    let mut trials = Vec::new();
    let (mut propagation, mut rtt) = (Vec::new(), Vec::new());
    let ready = Instant::now() + bench.settle;
    let started = watch
        .until(ready, |w| w.agreed().is_some_and(|(_, index)| index > 0))
        .await
        .map_err(|Closed| setup("the bench session closed"))?;
    if !started {
        return Err(setup("the nodes did not agree on a first block"));
    }
    for k in 0..bench.trials {
        if stop.is_cancelled() {
            break;
        }
        let trial = Trial {
            bench,
            genesis,
            cut: k % nodes.len(),
            server: (k + 1) % nodes.len(),
            probe_base: (k * bench.probes) as u64,
        };
        let (report, p, r) = trial
            .run(&mut watch, &nodes)
            .await
            .map_err(|Closed| setup("the bench session closed"))?;
        info!(trial = k, node = %report.node, convergence_ms = ?report.convergence_ms,
            ratio = ?report.ratio, "bench converge: trial done");
        propagation.extend(p);
        rtt.extend(r);
        trials.push(report);
    }
    watch.bus.close().await;
    let report = ConvergeReport::new(nodes.len(), trials, &propagation, &rtt);
    Ok((report, nodes))
}

/// Starts the nodes, each behind its own relay.
async fn start_nodes(
    bench: &ConvergeBench,
    dir: &std::path::Path,
    genesis: &Genesis,
    broker: &wattchain_broker::Broker,
    stop: &CancellationToken,
    roles: &mut Roles,
) -> Result<Vec<BenchNode>, ConvergeBenchError> {
    let mut nodes = Vec::new();
    for n in 1..=bench.nodes {
        let relay = Relay::start(broker.local_addr(), stop.clone())
            .await
            .map_err(setup)?;
        let config = NodeConfig {
            id: format!("converge-node-{n}"),
            data_dir: dir.join(format!("node-{n}")),
            threads: 1,
            ..NodeConfig::default()
        };
        let mut options =
            BusOptions::new(relay.url().parse().map_err(setup)?, &config.id, node::ROLE);
        // A short backoff keeps the trials short; the convergence is timed from the
        // reconnection, so the backoff is not part of it (it is reported on its own).
        options.backoff_min = Duration::from_millis(20);
        options.backoff_max = Duration::from_millis(200);
        let bus = roles::session(options, config.subscriptions())
            .await
            .map_err(setup)?;
        let link = bus.link();
        let id = config.id.clone();
        let (g, s) = (genesis.clone(), stop.clone());
        roles.spawn(async move {
            node::run(config, Some(g), bus, s, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("node: {e}"))
        });
        nodes.push(BenchNode { id, relay, link });
    }
    Ok(nodes)
}

/// One partition: which node is cut, which answers the sync probes.
struct Trial<'a> {
    bench: &'a ConvergeBench,
    genesis: &'a Genesis,
    cut: usize,
    server: usize,
    probe_base: u64,
}

impl Trial<'_> {
    /// Runs the trial: its report, the propagation times and sync round trips it measured.
    async fn run(
        &self,
        watch: &mut Observer,
        nodes: &[BenchNode],
    ) -> Result<(TrialReport, Vec<Duration>, Vec<Duration>), Closed> {
        let bench = self.bench;
        let cut = &nodes[self.cut];
        let mut report = TrialReport {
            node: cut.id.clone(),
            ..TrialReport::default()
        };
        // 1. Propagation, every node connected (at least one block timed).
        watch.time_propagation(true);
        let steady = Instant::now() + bench.steady;
        watch.until(steady, |_| false).await?;
        watch
            .until(Instant::now() + bench.settle, |w| w.timed() > 0)
            .await?;
        let propagation = watch.take_propagation();
        watch.time_propagation(false);
        report.propagation_blocks = propagation.len();
        if propagation.is_empty() {
            report.failure = Some("no block reached every node before the cut".into());
            return Ok((report, propagation, Vec::new()));
        }
        report.propagation_ms = Quantiles::of_ms(&propagation).p50;

        // 2. Sync round trips to a node that stays connected.
        let mut rtt = Vec::new();
        for p in 0..bench.probes as u64 {
            match self
                .probe(watch, &nodes[self.server].id, self.probe_base + p)
                .await?
            {
                Some(d) => rtt.push(d),
                None => {
                    report.failure = Some("a sync request had no reply".into());
                    return Ok((report, propagation, rtt));
                }
            }
        }
        report.sync_rtt_ms = Quantiles::of_ms(&rtt).p50;
        report.bound_ms = 2.0 * report.propagation_ms + report.sync_rtt_ms;

        // 3. The cut, until the others are far enough ahead.
        let connections = match *cut.link.borrow() {
            Link::Up { connections, .. } => connections,
            Link::Down => 0,
        };
        let left_at = watch.head(&cut.id).map_or(0, |(_, index)| index);
        let others: Vec<String> = nodes
            .iter()
            .filter(|n| n.id != cut.id)
            .map(|n| n.id.clone())
            .collect();
        cut.relay.cut();
        let cut_at = Instant::now();
        watch.until(cut_at + bench.cut, |_| false).await?;
        let ahead = |w: &Observer| {
            others
                .iter()
                .filter_map(|n| w.head(n))
                .map(|(_, index)| index)
                .max()
                .unwrap_or(0)
                .saturating_sub(left_at)
        };
        let far = watch
            .until(Instant::now() + bench.settle, |w| ahead(w) >= bench.behind)
            .await?;
        report.behind = ahead(watch);
        // 4. Heal: reconnection, then one head.
        cut.relay.heal();
        let healed_at = Instant::now();
        report.cut_ms = healed_at.duration_since(cut_at).as_secs_f64() * 1e3;
        if !far {
            report.failure = Some(format!("the others were not {} blocks ahead", bench.behind));
            return Ok((report, propagation, rtt));
        }
        let Some(up) = self.reconnected(watch, &cut.link, connections).await? else {
            report.failure = Some("the cut node did not reconnect".into());
            return Ok((report, propagation, rtt));
        };
        report.reconnect_ms = up.duration_since(healed_at).as_secs_f64() * 1e3;
        if watch
            .until(up + bench.settle, |w| w.agreed().is_some())
            .await?
        {
            let converged = Instant::now().saturating_duration_since(up);
            let ms = converged.as_secs_f64() * 1e3;
            report.convergence_ms = Some(ms);
            report.ratio = Some(ms / report.bound_ms);
        } else {
            report.failure = Some("the nodes did not agree within the settle limit".into());
        }
        Ok((report, propagation, rtt))
    }

    /// One sync round trip to `to`: headers after its head (the reply carries none or one).
    async fn probe(
        &self,
        watch: &mut Observer,
        to: &str,
        id: u64,
    ) -> Result<Option<Duration>, Closed> {
        let Some((head, _)) = watch.head(to) else {
            return Ok(None);
        };
        let request = SyncRequest {
            chain: self.genesis.id(),
            from: watch.id.clone(),
            to: to.into(),
            id,
            kind: SyncKind::Headers,
            locator: vec![head],
            max: 1,
            hashes: Vec::new(),
        };
        let sent = Instant::now();
        let topic = watch.topics.sync_request();
        if watch
            .bus
            .outlet()
            .publish(topic, encode(&request), QoS::AtLeastOnce, false)
            .await
            .is_err()
        {
            return Err(Closed);
        }
        let answered = watch
            .until(sent + self.bench.settle, |w| w.reply(id).is_some())
            .await?;
        Ok(answered
            .then(|| watch.reply(id))
            .flatten()
            .map(|at| at.duration_since(sent)))
    }

    /// When the cut node's session is up again (a connection after its `connections`-th),
    /// taking messages in meanwhile.
    async fn reconnected(
        &self,
        watch: &mut Observer,
        link: &watch::Receiver<Link>,
        connections: u64,
    ) -> Result<Option<Instant>, Closed> {
        let mut link = link.clone();
        let by = Instant::now() + self.bench.settle;
        loop {
            if matches!(*link.borrow_and_update(), Link::Up { connections: c, .. } if c > connections)
            {
                return Ok(Some(Instant::now()));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(by) => return Ok(None),
                changed = link.changed() => if changed.is_err() { return Ok(None) },
                msg = watch.bus.recv() => watch.take(msg.ok_or(Closed)?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_partition_heals_to_one_head_and_the_report_adds_up() {
        let mut bench = ConvergeBench::new(3, 2);
        bench.cut = Duration::from_millis(500);
        bench.behind = 1;
        bench.steady = Duration::from_millis(500);
        bench.probes = 2;
        bench.difficulty = 4;
        let report = run(&bench, CancellationToken::new()).await.unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.nodes, 3);
        assert_eq!(report.trials_run, 2);
        assert_eq!(report.converged, 2, "{report}");
        let cut: Vec<&str> = report.trials.iter().map(|t| t.node.as_str()).collect();
        assert_eq!(cut, ["converge-node-1", "converge-node-2"]);
        for t in &report.trials {
            assert!(t.failure.is_none(), "{t:?}");
            assert!(t.behind >= 1, "{t:?}");
            assert!(t.propagation_blocks >= 1);
            assert_eq!(t.bound_ms, 2.0 * t.propagation_ms + t.sync_rtt_ms);
            let (c, r) = (t.convergence_ms.unwrap(), t.ratio.unwrap());
            assert!((r - c / t.bound_ms).abs() < 1e-9, "{t:?}");
        }
        assert_eq!(report.ratio.n, 2);
        assert_eq!(report.sync_rtt_ms.n, 2 * 2);
        assert!(report.propagation_ms.n >= 2);
        assert!(report.convergence_ms.p50 <= report.convergence_ms.max);
        assert!(report.within_bound <= report.converged);
    }
}
