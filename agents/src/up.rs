//! `wattchain up`: the whole pipeline in one process — embedded broker, simulator with churn,
//! one cabinet agent, N averagers and N ledger nodes (own keys and data directories) — each on
//! its own MQTT session, exactly as they would run on separate machines — and the web service
//! (API, dashboard, `/metrics`). The genesis is created under the data directory on first start.
//!
//! Configured like the separate agents: [`UpConfig::from_config`] reads the `[up]` section and
//! those of the agents it runs (`[broker]`, `[bus]`, `[cabinet]`, `[averager]`, `[node]`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::averager::{self, AveragerConfig};
use crate::bus::{Bus, BusOptions};
use crate::cabinet::{self, CabinetConfig};
use crate::config::file::{AveragerSection, BusSection, CabinetSection, NodeSection};
use crate::config::{self, ConfigError, WattchainConfig};
use crate::ha::{self, HaConfig};
use crate::ledger::{Genesis, GenesisSpec, GENESIS_FILE};
use crate::node::{self, MinedBlock, NodeConfig};
use crate::regmap::RegisterMap;
use crate::sim::{ChurnSpec, SimConfig, Simulator};
use crate::web::{self, HttpSettings, WebSources};

/// How often the embedded broker's counters are copied into the metrics registry.
const BROKER_METRICS_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Everything `wattchain up` can be told.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The embedded broker (listeners, users, limits).
    pub broker: wattchain_broker::BrokerConfig,
    /// Topic root, quadruplet QoS and the credentials the agents log in with.
    pub bus: BusSection,
    /// The cabinet's timings and limits.
    pub cabinet_settings: CabinetSection,
    /// What the averagers serve.
    pub averager: AveragerSection,
    /// The nodes' limits.
    pub node: NodeSection,
    /// Noise and drift in the simulator's readings.
    pub noise: bool,
    /// Proof-of-work difficulty (leading zero bits) of a genesis created on first start.
    pub difficulty: u32,
    /// Ledger nodes.
    pub nodes: usize,
    /// Data directory (chain and cabinet outbox).
    pub data_dir: PathBuf,
    /// Number of averagers.
    pub averagers: usize,
    /// Simulator churn.
    pub churn: Option<ChurnSpec>,
    /// Seed for the simulator.
    pub seed: Option<u64>,
    /// Cabinet id.
    pub cabinet: String,
    /// Mining threads.
    pub threads: usize,
    /// The HTTP API and dashboard; `None` for none.
    pub http: Option<HttpSettings>,
    /// Home Assistant discovery (the cabinet and the ledger).
    pub ha: HaConfig,
}

impl UpConfig {
    /// `up`'s configuration from a whole configuration file (`[up]` and the sections of the
    /// agents it runs).
    pub fn from_config(c: &WattchainConfig) -> Result<Self, ConfigError> {
        let topics = c.bus.topics()?;
        let threads = match c.node.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(UpConfig {
            broker: c.broker.clone(),
            bus: c.bus.clone(),
            cabinet_settings: c.cabinet.clone(),
            averager: c.averager.clone(),
            node: c.node.clone(),
            noise: !c.simulator.no_noise,
            difficulty: c.up.difficulty,
            nodes: c.up.nodes,
            data_dir: c.up.data_dir.clone(),
            averagers: c.up.averagers,
            churn: c.up.churn.0,
            seed: c.up.seed,
            cabinet: c.up.cabinet.clone(),
            threads,
            http: c.web.settings(c.up.http, topics),
            ha: c.ha.config()?,
        })
    }

    /// Checks every value before anything starts (the cabinet's as a cabinet's).
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::within(
            "averagers",
            self.averagers,
            0..=64,
            ": 0 leaves the work to averagers started elsewhere",
        )?;
        config::within("threads", self.threads, 1..=1024, "")?;
        config::within("nodes", self.nodes, 1..=16, "")?;
        config::within(
            "difficulty",
            self.difficulty as usize,
            0..=crate::ledger::consensus::pow::MAX_DIFFICULTY as usize,
            ": beyond 40 bits (2^40 trials) a block takes hours on one machine",
        )?;
        if self.averagers > 0 {
            let topics = self.bus.topics()?;
            self.averager.config("averager-1", topics).validate()?;
        }
        self.cabinet_config(SocketAddr::from(([127, 0, 0, 1], 0)))?
            .validate()
    }

    /// The cabinet agent's configuration, reading the simulator at `modbus`.
    fn cabinet_config(&self, modbus: SocketAddr) -> Result<CabinetConfig, ConfigError> {
        self.cabinet_settings.config(
            &self.cabinet,
            modbus,
            self.data_dir.join("cabinet").join(&self.cabinet),
            &self.bus,
            self.ha.clone(),
        )
    }

    /// Session options of the agent `id` in `role` on the embedded broker at `url`.
    fn options(&self, url: &crate::bus::BrokerUrl, id: &str, role: &str) -> BusOptions {
        let mut options = BusOptions::new(url.clone(), id, role);
        options.topics = self.bus.topics().unwrap_or_default();
        self.bus.credentials(&mut options);
        options
    }
}

/// What `up` tells its caller as it runs.
#[derive(Debug)]
pub enum UpEvent {
    /// Everything started; where to look.
    Started {
        /// The broker's URL.
        broker: String,
        /// The broker's MQTT-over-WebSocket and TLS addresses, when `[broker]` has them.
        ws: Option<SocketAddr>,
        /// See `ws`.
        tls: Option<SocketAddr>,
        /// The simulator's Modbus address.
        modbus: SocketAddr,
        /// The first node's chain file.
        chain: PathBuf,
        /// The genesis file.
        genesis: PathBuf,
        /// The chain id.
        chain_id: String,
        /// Node ids.
        nodes: Vec<String>,
        /// Where the HTTP API and dashboard listen, if they do.
        http: Option<SocketAddr>,
    },
    /// A node's main chain moved (a block it mined, a reorg).
    Block(MinedBlock),
}

/// Runs the pipeline until `shutdown`, reporting through `events`.
pub async fn run(
    config: UpConfig,
    shutdown: CancellationToken,
    events: mpsc::UnboundedSender<UpEvent>,
) -> Result<()> {
    config.validate()?;
    // The chain's rules are settled (and checked) before anything starts.
    let genesis_path = config.data_dir.join(GENESIS_FILE);
    let (genesis, new_genesis) = if genesis_path.exists() {
        (Genesis::load(&genesis_path)?, false)
    } else {
        (Genesis::new(GenesisSpec::pow(config.difficulty))?, true)
    };
    // Bound first, so that a busy port fails before anything else starts; the recorder is
    // installed before the agents take their metric handles.
    let http = match &config.http {
        Some(h) => {
            crate::metrics::install();
            Some((web::bind(h.listen).await?, h.web.clone()))
        }
        None => None,
    };
    let http_addr = match &http {
        Some((listener, _)) => Some(listener.local_addr()?),
        None => None,
    };
    if new_genesis {
        genesis.write_new(&genesis_path)?;
        info!(path = %genesis_path.display(), chain = %genesis.id(), "genesis created");
    }
    let broker = wattchain_broker::start(config.broker.clone())
        .await
        .context("starting the embedded broker")?;
    let url: crate::bus::BrokerUrl = broker.url().parse()?;
    let topics = config.bus.topics()?;

    let sim_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let modbus = sim_listener.local_addr()?;
    let mut sim_config = SimConfig::new(RegisterMap::default_sim());
    sim_config.churn = config.churn;
    sim_config.seed = config.seed;
    sim_config.noise = config.noise;
    let sim = Simulator::new(sim_config);

    let mut tasks = JoinSet::new();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        sim.serve(sim_listener, stop)
            .await
            .context("cabinet simulator")
    });

    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let mut node_ids = Vec::new();
    let mut chain = PathBuf::new();
    for n in 1..=config.nodes.max(1) {
        let id = format!("node-{n}");
        let nconf = NodeConfig {
            data_dir: config.data_dir.join(&id),
            // Nodes share the machine: split the cores between them.
            threads: (config.threads / config.nodes.max(1)).max(1),
            ..config.node.config(&id, topics.clone())
        };
        nconf.validate()?;
        if n == 1 {
            chain = nconf.chain_path();
        }
        let mut options = config.options(&url, &id, node::ROLE);
        options.republish_on = config.ha.birth();
        let bus = Bus::connect(options, nconf.subscriptions())?;
        if n == 1 {
            // One ledger device in Home Assistant: the first node announces it.
            let ledger = ha::ledger_entities(&config.ha, &topics, &id);
            ha::announce(&bus.outlet(), &config.ha, &ledger);
        }
        let (stop, tx, g) = (shutdown.clone(), report_tx.clone(), genesis.clone());
        tasks.spawn(async move {
            node::run(nconf, Some(g), bus, stop, Some(tx))
                .await
                .map(|_| ())
                .context("ledger node")
        });
        node_ids.push(id);
    }
    drop(report_tx);

    for n in 1..=config.averagers {
        let id = format!("averager-{n}");
        let aconf: AveragerConfig = config.averager.config(&id, topics.clone());
        let bus = Bus::connect(
            config.options(&url, &id, averager::ROLE),
            aconf.subscriptions(),
        )?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            averager::run(aconf, bus, stop).await;
            Ok(())
        });
    }

    let mut cconf = config.cabinet_config(modbus)?;
    cconf.genesis = Some(genesis.clone());
    let options = config.options(&url, &cconf.agent_id(), cabinet::ROLE);
    let status_bus = Bus::connect(cconf.status_bus_options(&options), vec![])?;
    let bus = Bus::connect(options, cconf.subscriptions())?;
    let stop = shutdown.clone();
    tasks.spawn(async move {
        cabinet::run(cconf, bus, status_bus, stop)
            .await
            .map(|_| ())
            .context("cabinet agent")
    });

    if let Some((listener, web_config)) = http {
        let bus = Bus::connect(
            config.options(&url, web::ROLE, web::ROLE),
            web::feed::subscriptions(&web_config.topics),
        )?;
        let sources = WebSources {
            chain: chain.clone(),
            bus,
            broker: broker.url(),
        };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            web::run(web_config, listener, sources, stop)
                .await
                .context("web service")
        });
    }

    let _ = events.send(UpEvent::Started {
        broker: broker.url(),
        ws: broker.ws_local_addr(),
        tls: broker.tls_local_addr(),
        modbus,
        chain,
        genesis: genesis_path,
        chain_id: genesis.id().to_hex(),
        nodes: node_ids,
        http: http_addr,
    });
    info!(broker = %broker.url(), "wattchain is up");

    let mut failure = None;
    // The embedded broker's counters reach /metrics through this tick (only with --http).
    let mut metrics_tick = tokio::time::interval(BROKER_METRICS_PERIOD);
    metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(block) = report_rx.recv() => { let _ = events.send(UpEvent::Block(block)); }
            _ = metrics_tick.tick(), if http_addr.is_some() => {
                crate::metrics::record_broker(&(&broker.stats().await).into());
            }
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    error!(cause = %format!("{e:#}"), "a component failed; stopping");
                    failure.get_or_insert(e);
                    shutdown.cancel();
                }
                Some(Err(join)) => {
                    failure.get_or_insert(anyhow::anyhow!("a component panicked: {join}"));
                    shutdown.cancel();
                }
            },
        }
    }
    while let Ok(block) = report_rx.try_recv() {
        let _ = events.send(UpEvent::Block(block));
    }
    broker.shutdown().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
