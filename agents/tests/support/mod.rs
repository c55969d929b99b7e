//! Shared harness of the agents' integration tests: real brokers (the embedded one in-process,
//! or a mosquitto child process) on free ports, the simulator on port 0, agents on their own
//! MQTT sessions, and a recorder that subscribes like a user's `mosquitto_sub`.
#![allow(dead_code)]

pub mod mutate;
pub mod process;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use wattchain::averager::{self, AveragerConfig, AveragerStats};
use wattchain::bus::{BrokerUrl, Bus, BusOptions};
use wattchain::cabinet::{self, CabinetConfig, CabinetError, CabinetStats};
use wattchain::ledger::{digest_hex, Block, Genesis, GenesisSpec, Timestamp};
use wattchain::messages::{Average, EnergyTotal, Quadruplet, WindowTask};
use wattchain::node::{self, NodeConfig, NodeError, NodeStats};
use wattchain::regmap::RegisterMap;
use wattchain::sim::{SimConfig, Simulator};
use wattchain::topics::{Route, Topics};

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A broker the agents can reach: embedded (in-process) or mosquitto (child process).
pub enum TestBroker {
    Embedded(Option<wattchain_broker::Broker>),
    Mosquitto {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    },
}

impl TestBroker {
    /// The embedded broker on a free port.
    pub async fn embedded() -> TestBroker {
        let config = wattchain_broker::BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let broker = wattchain_broker::start(config)
            .await
            .expect("embedded broker starts");
        TestBroker::Embedded(Some(broker))
    }

    /// A real mosquitto on a free port, for broker-agnostic tests.
    pub async fn mosquitto() -> TestBroker {
        TestBroker::mosquitto_on(free_port()).await
    }

    /// A real mosquitto on `port` (to restart a broker where agents expect it).
    pub async fn mosquitto_on(port: u16) -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_packet_size 2000000\n"),
        )
        .unwrap();
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (scripts/test installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ready = async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("mosquitto accepts connections");
        TestBroker::Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    /// The broker's URL.
    pub fn url(&self) -> BrokerUrl {
        match self {
            TestBroker::Embedded(b) => b.as_ref().unwrap().url().parse().unwrap(),
            TestBroker::Mosquitto { port, .. } => {
                format!("mqtt://127.0.0.1:{port}").parse().unwrap()
            }
        }
    }

    /// Stops the broker.
    pub async fn stop(mut self) {
        match &mut self {
            TestBroker::Embedded(b) => {
                if let Some(b) = b.take() {
                    b.shutdown().await;
                }
            }
            TestBroker::Mosquitto { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let TestBroker::Mosquitto { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port free right now (for processes that cannot bind port 0 and report it).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running simulator.
pub struct TestSim {
    pub sim: Simulator,
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    task: JoinHandle<()>,
}

impl TestSim {
    /// A simulator on port 0; `noise` false makes readings exact.
    pub async fn start(noise: bool, seed: u64) -> TestSim {
        let mut config = SimConfig::new(RegisterMap::default_sim());
        config.noise = noise;
        config.seed = Some(seed);
        let sim = Simulator::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (s, t) = (sim.clone(), stop.clone());
        let task = tokio::spawn(async move {
            s.serve(listener, t).await.expect("simulator serves");
        });
        TestSim {
            sim,
            addr,
            stop,
            task,
        }
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// A running agent: its task and its shutdown token.
pub struct Running<T> {
    pub stop: CancellationToken,
    pub task: JoinHandle<T>,
}

impl<T> Running<T> {
    /// Asks the agent to stop and waits for it (bounded).
    pub async fn stop(self) -> T {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent stops in time")
            .expect("agent does not panic")
    }
}

/// Starts a cabinet agent on two sessions, as `wattchain cabinet` does.
pub async fn start_cabinet(
    url: &BrokerUrl,
    config: CabinetConfig,
) -> Running<Result<CabinetStats, CabinetError>> {
    let options = BusOptions::new(url.clone(), &config.agent_id(), cabinet::ROLE);
    let status = Bus::connect(config.status_bus_options(&options), vec![]).unwrap();
    let bus = Bus::connect(options, config.subscriptions()).unwrap();
    bus.wait_ready(WAIT).await.expect("cabinet subscribed");
    let stop = CancellationToken::new();
    let task = tokio::spawn(cabinet::run(config, bus, status, stop.clone()));
    Running { stop, task }
}

/// Starts an averager serving every quantity.
pub async fn start_averager(url: &BrokerUrl, id: &str) -> Running<AveragerStats> {
    let config = AveragerConfig::new(id, Topics::default());
    let bus = Bus::connect(
        BusOptions::new(url.clone(), id, averager::ROLE),
        config.subscriptions(),
    )
    .unwrap();
    bus.wait_ready(WAIT).await.expect("averager subscribed");
    let stop = CancellationToken::new();
    let task = tokio::spawn(averager::run(config, bus, stop.clone()));
    Running { stop, task }
}

/// The difficulty of the tests' genesis.
pub const TEST_DIFFICULTY: u32 = 4;

/// The tests' genesis: proof of work at `difficulty`, k = 3, a fixed creation time (so every
/// call gives the same chain id).
pub fn genesis_at(difficulty: u32) -> Genesis {
    let mut spec = GenesisSpec::pow(difficulty);
    spec.finality_depth = 3;
    spec.created = Timestamp::parse("2026-11-21T00:00:00.000Z").unwrap();
    Genesis::new(spec).unwrap()
}

/// The tests' genesis at [`TEST_DIFFICULTY`] (what [`fast_cabinet`] follows).
pub fn genesis() -> Genesis {
    genesis_at(TEST_DIFFICULTY)
}

/// Starts ledger node `id` on `data_dir` under the tests' genesis.
pub async fn start_node(
    url: &BrokerUrl,
    id: &str,
    data_dir: &Path,
) -> Running<Result<NodeStats, NodeError>> {
    let config = NodeConfig {
        id: id.into(),
        data_dir: data_dir.to_path_buf(),
        threads: 1,
        ..NodeConfig::default()
    };
    let bus = Bus::connect(
        BusOptions::new(url.clone(), id, node::ROLE),
        config.subscriptions(),
    )
    .unwrap();
    bus.wait_ready(WAIT).await.expect("node subscribed");
    let stop = CancellationToken::new();
    let task = tokio::spawn(node::run(config, Some(genesis()), bus, stop.clone(), None));
    Running { stop, task }
}

/// Starts the one-node case (`publisher`) on `data_dir`.
pub async fn start_publisher(
    url: &BrokerUrl,
    data_dir: &Path,
) -> Running<Result<NodeStats, NodeError>> {
    start_node(url, "publisher", data_dir).await
}

/// A cabinet configuration for fast tests: short period, small windows.
pub fn fast_cabinet(id: &str, modbus: SocketAddr, data_dir: PathBuf) -> CabinetConfig {
    CabinetConfig {
        period: Duration::from_millis(20),
        window: 4,
        modbus_timeout: Duration::from_millis(200),
        reconnect: (Duration::from_millis(50), Duration::from_millis(400)),
        switches_every: Duration::from_millis(200),
        genesis: Some(genesis()),
        ..CabinetConfig::new(id, modbus, data_dir)
    }
}

/// Everything seen under `wattchain/#`, like `mosquitto_sub -t 'wattchain/#' -v`.
#[derive(Default)]
pub struct Seen {
    pub quads: BTreeMap<(String, u64), Quadruplet>,
    /// Every window task publication, duplicates included.
    pub tasks: Vec<WindowTask>,
    pub averages: Vec<Average>,
    /// Every block publication on `ledger/block`, re-publications included.
    pub blocks: Vec<Block>,
    /// Every block publication on a cabinet's commit topic: (that cabinet, the block).
    pub commit_deliveries: Vec<(String, Block)>,
    pub statuses: Vec<(String, serde_json::Value)>,
    pub deadletters: Vec<serde_json::Value>,
    /// Every energy total published, as (cabinet, total).
    pub energy: Vec<(String, EnergyTotal)>,
    /// `ledger/head` publications received.
    pub heads: usize,
    /// `ledger/node/{id}/head` publications: (node, payload).
    pub node_heads: Vec<(String, serde_json::Value)>,
    /// Topics of publications that did not parse as their topic's payload (hostile input).
    pub unparsed: Vec<String>,
}

/// A subscriber recording what the pipeline publishes.
pub struct Recorder {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Recorder {
    /// Subscribes to everything under the default root and waits for the subscription.
    pub async fn start(url: &BrokerUrl, name: &str) -> Recorder {
        let mut o = MqttOptions::new(name, url.host.clone(), url.port);
        o.set_max_packet_size(2 << 20, 2 << 20);
        o.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        client
            .subscribe("wattchain/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(Notify::new());
        let (s, c) = (seen.clone(), changed.clone());
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            let topics = Topics::default();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        record(&topics, &p.topic, &p.payload, &mut s.lock().unwrap());
                        c.notify_waiters();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, subscribed)
            .await
            .expect("recorder subscribed")
            .unwrap();
        Recorder {
            seen,
            changed,
            task,
        }
    }

    /// Waits (at most [`WAIT`]) until `done` holds for what was seen; panics with `what` if not.
    pub async fn wait_until(&self, what: &str, mut done: impl FnMut(&Seen) -> bool) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if done(&self.seen.lock().unwrap()) {
                    return;
                }
                // Re-check periodically too: a predicate may depend on the clock or other state.
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        };
        if tokio::time::timeout(WAIT, wait).await.is_err() {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
    }

    /// Runs `f` on what was seen so far.
    pub fn with<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.seen.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(topics: &Topics, topic: &str, payload: &[u8], seen: &mut Seen) {
    // Hostile tests publish garbage on the agents' topics: count it instead of panicking,
    // which would silently stop the recorder.
    let mut parsed = || -> Option<()> {
        match topics.parse(topic) {
            Some(Route::Quad { cabinet }) => {
                let q: Quadruplet = serde_json::from_slice(payload).ok()?;
                seen.quads.insert((cabinet, q.seq), q);
            }
            Some(Route::Window { .. }) => seen.tasks.push(serde_json::from_slice(payload).ok()?),
            Some(Route::Average { .. }) => {
                seen.averages.push(serde_json::from_slice(payload).ok()?)
            }
            Some(Route::Block) => seen
                .blocks
                .push(Block::from_json(std::str::from_utf8(payload).ok()?).ok()?),
            Some(Route::Commit { cabinet }) => seen.commit_deliveries.push((
                cabinet,
                Block::from_json(std::str::from_utf8(payload).ok()?).ok()?,
            )),
            Some(Route::CabinetStatus { .. }) | Some(Route::AgentStatus { .. }) => seen
                .statuses
                .push((topic.to_string(), serde_json::from_slice(payload).ok()?)),
            Some(Route::Deadletter { .. }) => {
                seen.deadletters.push(serde_json::from_slice(payload).ok()?)
            }
            Some(Route::Head) => seen.heads += 1,
            Some(Route::Energy { cabinet }) => seen
                .energy
                .push((cabinet, serde_json::from_slice(payload).ok()?)),
            Some(Route::NodeHead { node }) => seen
                .node_heads
                .push((node, serde_json::from_slice(payload).ok()?)),
            Some(
                Route::Header | Route::SyncRequest | Route::SyncReply { .. } | Route::Mode { .. },
            ) => {}
            None => {}
        }
        Some(())
    };
    if parsed().is_none() {
        seen.unparsed.push(topic.to_string());
    }
}

impl Seen {
    /// Distinct window ids committed for `cabinet`, with how many blocks (first publication
    /// of each block index) commit each.
    pub fn commits(&self, cabinet: &str) -> BTreeMap<u64, usize> {
        let mut by_index: BTreeMap<u64, &Block> = BTreeMap::new();
        for b in &self.blocks {
            by_index.entry(b.index).or_insert(b);
        }
        let mut commits = BTreeMap::new();
        for b in by_index.values() {
            for r in b.records().iter().filter(|r| r.cabinet == cabinet) {
                *commits.entry(r.window).or_insert(0) += 1;
            }
        }
        commits
    }

    /// Window ids the cabinet published (first publication of each).
    pub fn windows(&self, cabinet: &str) -> BTreeMap<u64, Vec<&WindowTask>> {
        let mut out: BTreeMap<u64, Vec<&WindowTask>> = BTreeMap::new();
        for t in self.tasks.iter().filter(|t| t.cabinet == cabinet) {
            let entry = out.entry(t.window).or_default();
            if !entry.iter().any(|x| x.quantity == t.quantity) {
                entry.push(t);
            }
        }
        out
    }

    /// The latest status JSON published on `topic`.
    pub fn last_status(&self, topic: &str) -> Option<&serde_json::Value> {
        self.statuses
            .iter()
            .rev()
            .find(|(t, _)| t == topic)
            .map(|(_, v)| v)
    }
}

/// `from` of the windows made by [`window_tasks`].
pub const TASK_FROM: &str = "2026-11-21T10:00:00.000Z";
/// `to` of the windows made by [`window_tasks`].
pub const TASK_TO: &str = "2026-11-21T10:00:03.000Z";

/// The four valid tasks of one window of four samples, as a cabinet would publish them.
pub fn window_tasks(cabinet: &str, window: u64) -> Vec<WindowTask> {
    wattchain::topics::Quantity::ALL
        .iter()
        .enumerate()
        .map(|(k, q)| {
            let values: Vec<f64> = (0..4).map(|i| 230.0 + k as f64 * 10.0 + i as f64).collect();
            WindowTask {
                cabinet: cabinet.into(),
                window,
                quantity: *q,
                first_seq: window * 4,
                digest: digest_hex(&values),
                values,
                from: TASK_FROM.into(),
                to: TASK_TO.into(),
            }
        })
        .collect()
}

/// The record a node would make of a cabinet's four tasks (made-up means, real digests).
pub fn record_of(tasks: &[WindowTask]) -> wattchain::ledger::Record {
    use wattchain::ledger::{Averages, Digests, Hash32, Record};
    use wattchain::topics::Quantity;
    let digest = |q: Quantity| {
        Hash32::from_hex(&tasks.iter().find(|t| t.quantity == q).unwrap().digest).unwrap()
    };
    Record {
        cabinet: tasks[0].cabinet.clone(),
        window: tasks[0].window,
        from: tasks[0].from.clone(),
        to: tasks[0].to.clone(),
        n: tasks[0].values.len() as u32,
        averages: Averages {
            u: 1.0,
            i: 1.0,
            pa: 1.0,
            pr: 1.0,
        },
        digests: Digests {
            u: digest(Quantity::U),
            i: digest(Quantity::I),
            pa: digest(Quantity::PA),
            pr: digest(Quantity::PR),
        },
    }
}

/// Mines (signed by `key`) the blocks after `parent` under `genesis`: one per record list.
pub fn mine_blocks(
    genesis: &Genesis,
    parent: &wattchain::ledger::Header,
    key: &wattchain::ledger::NodeKey,
    records: Vec<Vec<wattchain::ledger::Record>>,
) -> Vec<Block> {
    let (miner, cancel) = (wattchain::ledger::Miner::new(1), CancellationToken::new());
    let mut at = parent.clone();
    records
        .into_iter()
        .map(|r| {
            let ts = Timestamp::from_millis(at.timestamp.millis() + 1000).unwrap();
            let b = genesis
                .template(&at, r, ts, key.public())
                .mine(&miner, &cancel, key, &genesis.id())
                .expect("mined");
            at = b.header();
            b
        })
        .collect()
}

/// What a cabinet receives when a window of `tasks` becomes final: the committing block on
/// its commit topic, then the headers of k blocks of valid work on top (tests' genesis).
pub fn final_commit(cabinet: &str, tasks: &[WindowTask]) -> Vec<wattchain::bus::Incoming> {
    let g = genesis();
    let key = wattchain::ledger::NodeKey::from_seed([9; 32]);
    let mut lists = vec![vec![record_of(tasks)]];
    lists.extend((0..g.finality_depth).map(|_| Vec::new()));
    let blocks = mine_blocks(&g, &g.header(), &key, lists);
    let topics = Topics::default();
    let mut out = vec![wattchain::bus::Incoming {
        topic: topics.commit(cabinet),
        payload: blocks[0].to_json().into(),
        retain: false,
    }];
    for b in &blocks {
        let msg = wattchain::node::wire::HeaderMessage {
            chain: g.id(),
            header: b.header(),
        };
        out.push(wattchain::bus::Incoming {
            topic: topics.header(),
            payload: serde_json::to_vec(&msg).unwrap().into(),
            retain: false,
        });
    }
    out
}

/// Writes the tests' genesis into `dir` (once) and returns its path, for processes.
pub fn genesis_file(dir: &Path) -> PathBuf {
    let path = dir.join("test-genesis.json");
    if !path.exists() {
        genesis().write_new(&path).unwrap();
    }
    path
}
