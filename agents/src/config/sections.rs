//! The sections of `wattchain.toml` ([`super::file`]): what each agent can be told, every
//! default in its `Default` impl (taken from the library's own configuration types where they
//! have one), and the conversion into those types.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::averager::AveragerConfig;
use crate::bus::{BrokerUrl, BusError, BusOptions, QoS};
use crate::cabinet::CabinetConfig;
use crate::config::ConfigError;
use crate::ha::HaConfig;
use crate::ledger::consensus::pow::DEFAULT_DIFFICULTY;
use crate::node::NodeConfig;
use crate::sim::Churn;
use crate::topics::{
    DiscoveryTopics, Quantity, TopicError, Topics, DEFAULT_HA_PREFIX, DEFAULT_ROOT,
};
use crate::web::{HttpListen, HttpSettings, WebConfig, DEFAULT_HTTP};

/// The broker agents connect to unless told otherwise.
pub const DEFAULT_BROKER_URL: &str = "mqtt://127.0.0.1:1883";

/// How agents reach the broker (`[bus]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSection {
    /// Broker URL: `mqtt://HOST:PORT`, or `mqtts://HOST:PORT` for TLS.
    pub broker: String,
    /// MQTT username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// MQTT password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// CA certificate (PEM) to trust for `mqtts://`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Root of every topic.
    pub root: String,
    /// QoS of quadruplets (0 or 1).
    pub quad_qos: u8,
}

impl Default for BusSection {
    fn default() -> Self {
        BusSection {
            broker: DEFAULT_BROKER_URL.to_owned(),
            username: None,
            password: None,
            ca_file: None,
            root: DEFAULT_ROOT.to_owned(),
            quad_qos: 0,
        }
    }
}

impl std::fmt::Debug for BusSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSection")
            .field("broker", &self.broker)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("ca_file", &self.ca_file)
            .field("root", &self.root)
            .field("quad_qos", &self.quad_qos)
            .finish()
    }
}

impl BusSection {
    /// The session options of agent `id` in `role`.
    pub fn options(&self, id: &str, role: &str) -> Result<BusOptions, BusError> {
        let url: BrokerUrl = self.broker.parse()?;
        let mut o = BusOptions::new(url, id, role);
        o.topics = self.topics().map_err(ConfigError::from)?;
        self.credentials(&mut o);
        o.ca_file.clone_from(&self.ca_file);
        Ok(o)
    }

    /// Sets the username and password on `options`.
    pub fn credentials(&self, options: &mut BusOptions) {
        options.username.clone_from(&self.username);
        options.password.clone_from(&self.password);
    }

    /// The topic namespace.
    pub fn topics(&self) -> Result<Topics, TopicError> {
        Topics::new(&self.root)
    }

    /// The QoS of quadruplets.
    pub fn quad_qos(&self) -> Result<QoS, ConfigError> {
        match self.quad_qos {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            other => Err(ConfigError::OutOfRange {
                key: "quad-qos",
                value: other.into(),
                min: 0,
                max: 1,
                why: ": quadruplets are sent at most once (0) or at least once (1)",
            }),
        }
    }
}

/// Home Assistant discovery (`[ha]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaSection {
    /// Publish the discovery configs (`true`) or remove them (`false`).
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub prefix: String,
}

impl Default for HaSection {
    fn default() -> Self {
        HaSection {
            discovery: HaConfig::default().enabled,
            prefix: DEFAULT_HA_PREFIX.to_owned(),
        }
    }
}

impl HaSection {
    /// The library's Home Assistant configuration.
    pub fn config(&self) -> Result<HaConfig, TopicError> {
        Ok(HaConfig {
            enabled: self.discovery,
            topics: DiscoveryTopics::new(&self.prefix)?,
        })
    }
}

/// `wattchain cabinet` (`[cabinet]`); `up` reads the timing keys too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CabinetSection {
    /// Cabinet id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The PLC (or simulator) Modbus TCP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modbus: Option<SocketAddr>,
    /// Poll period.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Samples per window.
    pub window: usize,
    /// Outbox directory (default: `data/cabinet/ID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// A window not committed by then is published again.
    #[serde(with = "humantime_serde")]
    pub commit_deadline: Duration,
    /// Most uncommitted windows kept.
    pub outbox_capacity: usize,
    /// Bound on each Modbus request.
    #[serde(with = "humantime_serde")]
    pub modbus_timeout: Duration,
    /// Register map file (default: the simulator's map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<PathBuf>,
    /// The chain's genesis.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis: Option<PathBuf>,
    /// How often the energy total is saved and published.
    #[serde(with = "humantime_serde")]
    pub energy_every: Duration,
}

impl Default for CabinetSection {
    fn default() -> Self {
        let d = CabinetConfig::new("", SocketAddr::from(([127, 0, 0, 1], 0)), PathBuf::new());
        CabinetSection {
            id: None,
            modbus: None,
            period: d.period,
            window: d.window,
            data_dir: None,
            commit_deadline: d.commit_deadline,
            outbox_capacity: d.outbox_capacity,
            modbus_timeout: d.modbus_timeout,
            map: None,
            genesis: None,
            energy_every: d.energy_every,
        }
    }
}

impl CabinetSection {
    /// The configuration of `wattchain cabinet`: `id` and `modbus` required, the outbox in
    /// `data/cabinet/ID` unless `data_dir` says otherwise (register map and genesis are loaded
    /// by the caller).
    pub fn agent_config(
        &self,
        bus: &BusSection,
        ha: &HaSection,
    ) -> Result<CabinetConfig, ConfigError> {
        let id = self.id.as_deref().ok_or(ConfigError::Missing {
            key: "id",
            path: "cabinet.id",
        })?;
        crate::topics::check_id(id)?;
        let modbus = self.modbus.ok_or(ConfigError::Missing {
            key: "modbus",
            path: "cabinet.modbus",
        })?;
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join("cabinet").join(id));
        self.config(id, modbus, data_dir, bus, ha.config()?)
    }

    /// The library configuration for cabinet `id` reading `modbus`, these timings applied
    /// (the register map and genesis are loaded by the caller).
    pub fn config(
        &self,
        id: &str,
        modbus: SocketAddr,
        data_dir: PathBuf,
        bus: &BusSection,
        ha: HaConfig,
    ) -> Result<CabinetConfig, ConfigError> {
        Ok(CabinetConfig {
            period: self.period,
            window: self.window,
            commit_deadline: self.commit_deadline,
            outbox_capacity: self.outbox_capacity,
            modbus_timeout: self.modbus_timeout,
            energy_every: self.energy_every,
            quad_qos: bus.quad_qos()?,
            topics: bus.topics()?,
            ha,
            ..CabinetConfig::new(id, modbus, data_dir)
        })
    }
}

/// `wattchain sim` (`[simulator]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorSection {
    /// Modbus TCP address to serve.
    pub listen: SocketAddr,
    /// Register map file (default: the built-in map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<PathBuf>,
    /// Load churn: a period, a range, or `off`.
    pub churn: Churn,
    /// Seed for noise, drift and churn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Readings equal the ideal physics.
    pub no_noise: bool,
}

impl Default for SimulatorSection {
    fn default() -> Self {
        SimulatorSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 5020)),
            map: None,
            churn: Churn(None),
            seed: None,
            no_noise: false,
        }
    }
}

/// `wattchain averager` (`[averager]`); `up`'s averagers read it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AveragerSection {
    /// Agent id (default: averager-HOST-PID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Quantities served.
    pub quantities: Vec<Quantity>,
    /// Delay of each task (fault drills).
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

impl Default for AveragerSection {
    fn default() -> Self {
        let d = AveragerConfig::new("", Topics::default());
        AveragerSection {
            id: None,
            quantities: d.quantities,
            delay: d.delay,
        }
    }
}

impl AveragerSection {
    /// The library configuration of averager `id`.
    pub fn config(&self, id: &str, topics: Topics) -> AveragerConfig {
        AveragerConfig {
            quantities: self.quantities.clone(),
            delay: self.delay,
            ..AveragerConfig::new(id, topics)
        }
    }
}

/// `wattchain node` and `publisher` (`[node]`); `up`'s nodes read the limits too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Node id (default: `node`, or `publisher`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Directory of genesis.json, node.key and chain.jsonl.
    pub data_dir: PathBuf,
    /// The genesis to follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis: Option<PathBuf>,
    /// Most records per block this node builds.
    pub max_records_per_block: usize,
    /// Most windows in progress.
    pub max_pending: usize,
    /// Mining threads (0: every core).
    pub threads: usize,
    /// HTTP API address, or `off`.
    pub http: HttpListen,
}

impl Default for NodeSection {
    fn default() -> Self {
        let d = NodeConfig::default();
        NodeSection {
            id: None,
            data_dir: d.data_dir,
            genesis: None,
            max_records_per_block: d.max_records_per_block,
            max_pending: d.max_pending,
            threads: d.threads,
            http: HttpListen(None),
        }
    }
}

impl NodeSection {
    /// The library configuration, `default_id` when the section names none.
    pub fn config(&self, default_id: &str, topics: Topics) -> NodeConfig {
        NodeConfig {
            id: self.id.clone().unwrap_or_else(|| default_id.to_owned()),
            data_dir: self.data_dir.clone(),
            max_records_per_block: self.max_records_per_block,
            max_pending: self.max_pending,
            threads: self.threads,
            topics,
            ..NodeConfig::default()
        }
    }
}

/// `wattchain publisher` (`[publisher]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherSection {
    /// Difficulty of the genesis a publisher creates.
    pub difficulty: u32,
}

impl Default for PublisherSection {
    fn default() -> Self {
        PublisherSection {
            difficulty: DEFAULT_DIFFICULTY,
        }
    }
}

/// `wattchain web` and the HTTP API of any process (`[web]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// The chain file `wattchain web` serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<PathBuf>,
    /// Agent id of `wattchain web`'s MQTT session.
    pub id: String,
    /// Address of `wattchain web`.
    pub http: SocketAddr,
    /// Bearer token of the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_token: Option<String>,
    /// Origins allowed cross-origin requests.
    pub http_cors: Vec<String>,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            chain: None,
            id: crate::web::ROLE.to_owned(),
            http: DEFAULT_HTTP.parse().expect("DEFAULT_HTTP is an address"),
            http_token: None,
            http_cors: Vec::new(),
        }
    }
}

impl std::fmt::Debug for WebSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSection")
            .field("chain", &self.chain)
            .field("id", &self.id)
            .field("http", &self.http)
            .field("http_token", &self.http_token.as_ref().map(|_| "<hidden>"))
            .field("http_cors", &self.http_cors)
            .finish()
    }
}

impl WebSection {
    /// The chain file `wattchain web` serves (required).
    pub fn chain(&self) -> Result<&Path, ConfigError> {
        self.chain.as_deref().ok_or(ConfigError::Missing {
            key: "chain",
            path: "web.chain",
        })
    }

    /// The web service's settings on `listen` (`None` for `off`).
    pub fn settings(&self, listen: HttpListen, topics: Topics) -> Option<HttpSettings> {
        listen.0.map(|listen| HttpSettings {
            listen,
            web: WebConfig {
                token: self.http_token.clone().filter(|t| !t.is_empty()),
                cors: self.http_cors.clone(),
                topics,
                ..WebConfig::default()
            },
        })
    }
}

/// `wattchain up` (`[up]`): what only `up` has. Its cabinet, averagers, nodes, simulator and
/// broker also read `[cabinet]`, `[averager]`, `[node]`, `[simulator]` and `[broker]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpSection {
    /// Cabinet id.
    pub cabinet: String,
    /// Ledger nodes.
    pub nodes: usize,
    /// Averaging agents.
    pub averagers: usize,
    /// Where the genesis, chains and outbox are written.
    pub data_dir: PathBuf,
    /// Difficulty of a genesis created on first start.
    pub difficulty: u32,
    /// Simulator load churn.
    pub churn: Churn,
    /// Seed of the simulator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// HTTP API address, or `off`.
    pub http: HttpListen,
}

impl Default for UpSection {
    fn default() -> Self {
        UpSection {
            cabinet: "c1".to_owned(),
            nodes: 1,
            averagers: 2,
            data_dir: PathBuf::from("data"),
            difficulty: DEFAULT_DIFFICULTY,
            churn: "2s..5s".parse().expect("a churn range"),
            seed: None,
            http: DEFAULT_HTTP.parse().expect("DEFAULT_HTTP is an address"),
        }
    }
}
