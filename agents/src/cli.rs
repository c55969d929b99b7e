//! The command line: every subcommand and flag, with the help text users see.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use wattchain::bench;
use wattchain::config::file::{BusSection, HaSection, WebSection};
use wattchain::config::WattchainConfig;
use wattchain::ledger;
use wattchain::sim::{Churn, ChurnSpec};
use wattchain::topics::Quantity;
use wattchain::web::HttpListen;

mod help;

/// The command line with every flag's default shown in its help.
pub(crate) fn command() -> clap::Command {
    help::with_defaults(Cli::command())
}

/// wattchain: electrical cabinet measurements over MQTT into a signed chain kept by ledger nodes.
///
/// Run with no subcommand to start everything in one process (`wattchain up`).
#[derive(Parser)]
#[command(name = "wattchain", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Configuration file (TOML; `wattchain generate-config` prints every key and default).
    /// Flags given override it; it overrides the defaults.
    #[arg(long, global = true, env = "WATTCHAIN_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the whole pipeline in one process: broker, simulator, cabinet, averagers, nodes.
    Up(UpArgs),
    /// Create the genesis document that fixes a chain's rules and id.
    Genesis {
        #[command(subcommand)]
        command: GenesisCommand,
    },
    /// Run a ledger node (or `node keygen` to create its identity).
    Node(Box<NodeArgs>),
    /// Run the MQTT broker (MQTT 3.1.1 and 5 on one port).
    Broker(BrokerArgs),
    /// Run the cabinet simulator, a Modbus TCP server.
    Sim(SimArgs),
    /// Run the cabinet acquisition agent (or `cabinet churn` to switch a real PLC's loads).
    Cabinet(Box<CabinetArgs>),
    /// Run an averaging agent.
    Averager(AveragerArgs),
    /// Run one ledger node that creates its own genesis if it has none (the one-node case).
    Publisher(PublisherArgs),
    /// Serve the HTTP API, live dashboard and /metrics for a chain file and a broker (watch only).
    Web(WebArgs),
    /// Inspect the chain.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// Measure this machine: mining rate, the pipeline under load, the Modbus acquisition.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Print the whole configuration file (wattchain.toml), every key with its default.
    GenerateConfig,
}

/// How agents reach the broker (`[bus]`).
#[derive(Args, Clone)]
pub(crate) struct BusArgs {
    /// Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS.
    #[arg(long, env = "WATTCHAIN_BROKER")]
    pub(crate) broker: Option<String>,
    /// MQTT username.
    #[arg(long, env = "WATTCHAIN_USERNAME")]
    pub(crate) username: Option<String>,
    /// MQTT password (prefer the environment variable to keep it out of `ps`).
    #[arg(long, env = "WATTCHAIN_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
    /// CA certificate (PEM) to trust for mqtts://.
    #[arg(long)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Root of every topic.
    #[arg(long)]
    pub(crate) root: Option<String>,
}

impl BusArgs {
    /// The flags given, over `bus`.
    pub(crate) fn apply(&self, bus: &mut BusSection) {
        set(&mut bus.broker, &self.broker);
        set_some(&mut bus.username, &self.username);
        set_some(&mut bus.password, &self.password);
        set_some(&mut bus.ca_file, &self.ca_file);
        set(&mut bus.root, &self.root);
    }
}

/// `*field = value` when the flag was given.
fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
    if let Some(v) = flag {
        field.clone_from(v);
    }
}

/// `*field = Some(value)` when the flag was given.
fn set_some<T: Clone>(field: &mut Option<T>, flag: &Option<T>) {
    if flag.is_some() {
        field.clone_from(flag);
    }
}

/// How the HTTP API is protected and shared (with `--http`; `[web]`).
#[derive(Args, Clone)]
pub(crate) struct HttpArgs {
    /// Bearer token every API request must carry (Authorization: Bearer TOKEN). Without it,
    /// serving beyond loopback exposes the data to anyone who can reach the port.
    #[arg(long, env = "WATTCHAIN_HTTP_TOKEN", hide_env_values = true)]
    pub(crate) http_token: Option<String>,
    /// Allow cross-origin API requests from ORIGIN (repeatable; "*" for any). Off by default.
    #[arg(long = "http-cors", value_name = "ORIGIN")]
    pub(crate) http_cors: Vec<String>,
}

impl HttpArgs {
    /// The flags given, over `web`.
    pub(crate) fn apply(&self, web: &mut WebSection) {
        set_some(&mut web.http_token, &self.http_token);
        if !self.http_cors.is_empty() {
            web.http_cors.clone_from(&self.http_cors);
        }
    }
}

/// On or off.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Switch {
    On,
    Off,
}

/// Home Assistant MQTT discovery (`[ha]`).
#[derive(Args, Clone)]
pub(crate) struct HaArgs {
    /// Home Assistant MQTT discovery: `on` publishes retained configs (a device per cabinet,
    /// its sensors, the ledger), `off` removes them from Home Assistant.
    #[arg(long, value_enum)]
    pub(crate) ha_discovery: Option<Switch>,
    /// Home Assistant's discovery prefix (as set in its MQTT options).
    #[arg(long)]
    pub(crate) ha_prefix: Option<String>,
}

impl HaArgs {
    /// The flags given, over `ha`.
    pub(crate) fn apply(&self, ha: &mut HaSection) {
        set(
            &mut ha.discovery,
            &self.ha_discovery.map(|s| s == Switch::On),
        );
        set(&mut ha.prefix, &self.ha_prefix);
    }
}

/// `wattchain up`: its own `[up]` keys, and those of the agents it runs.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// Broker address (`[broker] listen`; 0.0.0.0:1883 exposes it to the network).
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Also serve MQTT over WebSocket on ADDR (`[broker.ws] listen`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) ws: Option<SocketAddr>,
    /// Cabinet poll period.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) period: Option<Duration>,
    /// Samples per window.
    #[arg(long)]
    pub(crate) window: Option<usize>,
    /// Proof of work of a genesis created on first start: leading zero bits of each block hash.
    #[arg(long)]
    pub(crate) difficulty: Option<u32>,
    /// Ledger nodes, each with its own key and data directory (DATA_DIR/node-N).
    #[arg(long)]
    pub(crate) nodes: Option<usize>,
    /// Consensus mode of a genesis created on first start (`[up] consensus`): pow, pos (the
    /// nodes' own keys are the validators, stake 1 each) or pbft (the nodes are the
    /// validators; --nodes must be 3f+1: 4, 7, 10, …).
    #[arg(long)]
    pub(crate) consensus: Option<String>,
    #[command(flatten)]
    pub(crate) mode: ModeFlags,
    /// Where the genesis, the nodes' chains and the cabinet's outbox are written.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Number of averaging agents.
    #[arg(long)]
    pub(crate) averagers: Option<usize>,
    /// Simulator load churn: a period ("2s") or a range ("1s..5s"); "off" to disable.
    #[arg(long)]
    pub(crate) churn: Option<Churn>,
    /// Seed for the simulator (noise and churn), for reproducible runs.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Cabinet id.
    #[arg(long)]
    pub(crate) cabinet: Option<String>,
    /// A window not committed by then is published again.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) commit_deadline: Option<Duration>,
    /// QoS of quadruplets (0 or 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) quad_qos: Option<u8>,
    /// Root of every topic.
    #[arg(long)]
    pub(crate) root: Option<String>,
    /// Mining threads, shared by the nodes (0: every core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// HTTP API, dashboard and /metrics address ("off" to disable; port 0 picks a free one).
    #[arg(long, value_name = "ADDR|off")]
    pub(crate) http: Option<HttpListen>,
    #[command(flatten)]
    pub(crate) http_args: HttpArgs,
    #[command(flatten)]
    pub(crate) ha: HaArgs,
}

impl UpArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        set(&mut config.broker.listen, &self.listen);
        if let Some(listen) = self.ws {
            config.broker.ws = Some(wattchain_broker::WsConfig { listen });
        }
        let (up, cabinet) = (&mut config.up, &mut config.cabinet);
        set(&mut cabinet.period, &self.period);
        set(&mut cabinet.window, &self.window);
        set(&mut cabinet.commit_deadline, &self.commit_deadline);
        set(&mut up.difficulty, &self.difficulty);
        set(&mut up.nodes, &self.nodes);
        set(&mut up.consensus, &self.consensus);
        set_some(&mut up.block_interval, &self.mode.block_interval);
        set_some(&mut up.round_timeout, &self.mode.round_timeout);
        set_some(&mut up.view_timeout, &self.mode.view_timeout);
        set_some(&mut up.f, &self.mode.f);
        set(&mut up.data_dir, &self.data_dir);
        set(&mut up.averagers, &self.averagers);
        set(&mut up.churn, &self.churn);
        set_some(&mut up.seed, &self.seed);
        set(&mut up.cabinet, &self.cabinet);
        set(&mut up.http, &self.http);
        set(&mut config.bus.quad_qos, &self.quad_qos);
        set(&mut config.bus.root, &self.root);
        set(&mut config.node.threads, &self.threads);
        self.http_args.apply(&mut config.web);
        self.ha.apply(&mut config.ha);
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BrokerArgs {
    #[command(subcommand)]
    pub(crate) command: Option<BrokerCommand>,
    /// Address of the public MQTT port (`[broker] listen`); 0.0.0.0:1883 exposes it.
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
pub(crate) enum BrokerCommand {
    /// Print the broker's commented default configuration alone (`wattchain generate-config`
    /// prints the whole file, this under `[broker]`).
    GenerateConfig,
    /// Read a password from stdin (first line) and print its argon2 hash for a users file.
    HashPassword,
}

/// `wattchain sim` (`[simulator]`).
#[derive(Args)]
pub(crate) struct SimArgs {
    /// Modbus TCP address to serve (port 0 picks a free port and prints it).
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Register map (TOML); default: the built-in simulator map.
    #[arg(long)]
    pub(crate) map: Option<PathBuf>,
    /// Toggle a random load every period ("2s") or random period in a range ("1s..5s");
    /// "off" for none.
    #[arg(long)]
    pub(crate) churn: Option<Churn>,
    /// Seed for noise, drift and churn.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Disable noise and drift: readings equal the ideal physics.
    #[arg(long)]
    pub(crate) no_noise: bool,
}

impl SimArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        let sim = &mut config.simulator;
        set(&mut sim.listen, &self.listen);
        set_some(&mut sim.map, &self.map);
        set(&mut sim.churn, &self.churn);
        set_some(&mut sim.seed, &self.seed);
        sim.no_noise |= self.no_noise;
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct CabinetArgs {
    #[command(subcommand)]
    pub(crate) command: Option<CabinetCommand>,
    #[command(flatten)]
    pub(crate) run: CabinetRunArgs,
}

/// `wattchain cabinet` (`[cabinet]`).
#[derive(Args)]
pub(crate) struct CabinetRunArgs {
    #[command(flatten)]
    pub(crate) bus: BusArgs,
    /// The PLC (or simulator) Modbus TCP address (required, here or in the file).
    #[arg(long)]
    pub(crate) modbus: Option<SocketAddr>,
    /// Cabinet id (letters, digits, '-', '_'; required, here or in the file).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Poll period.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) period: Option<Duration>,
    /// Samples per window.
    #[arg(long)]
    pub(crate) window: Option<usize>,
    /// Directory for the outbox journal (default: data/cabinet/ID).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// A window not committed by then is published again.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) commit_deadline: Option<Duration>,
    /// Most uncommitted windows kept before the oldest is dead-lettered.
    #[arg(long)]
    pub(crate) outbox_capacity: Option<usize>,
    /// Bound on each Modbus request.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) modbus_timeout: Option<Duration>,
    /// Register map (TOML); default: the simulator's map.
    #[arg(long)]
    pub(crate) map: Option<PathBuf>,
    /// QoS of quadruplets (0 or 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) quad_qos: Option<u8>,
    /// The chain's genesis.json (required): windows leave the outbox only when final under
    /// its rules, as the cabinet checks them itself.
    #[arg(long)]
    pub(crate) genesis: Option<PathBuf>,
    /// How often the energy total is saved (DATA_DIR/energy.json) and published.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) energy_every: Option<Duration>,
    #[command(flatten)]
    pub(crate) ha: HaArgs,
}

impl CabinetRunArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        self.bus.apply(&mut config.bus);
        self.ha.apply(&mut config.ha);
        set(&mut config.bus.quad_qos, &self.quad_qos);
        let c = &mut config.cabinet;
        set_some(&mut c.modbus, &self.modbus);
        set_some(&mut c.id, &self.id);
        set(&mut c.period, &self.period);
        set(&mut c.window, &self.window);
        set_some(&mut c.data_dir, &self.data_dir);
        set(&mut c.commit_deadline, &self.commit_deadline);
        set(&mut c.outbox_capacity, &self.outbox_capacity);
        set(&mut c.modbus_timeout, &self.modbus_timeout);
        set_some(&mut c.map, &self.map);
        set_some(&mut c.genesis, &self.genesis);
        set(&mut c.energy_every, &self.energy_every);
    }
}

#[derive(Subcommand)]
pub(crate) enum CabinetCommand {
    /// Switch random loads and sources of a PLC (or simulator) over Modbus, like `sim --churn`.
    Churn {
        /// The PLC's Modbus TCP address (default: `[cabinet] modbus`).
        #[arg(long)]
        modbus: Option<SocketAddr>,
        /// Period ("2s") or range ("1s..5s") between switchings.
        #[arg(long, default_value = "2s")]
        churn: ChurnSpec,
        /// Seed, for a reproducible sequence.
        #[arg(long)]
        seed: Option<u64>,
        /// Register map (TOML); default: the simulator's map.
        #[arg(long)]
        map: Option<PathBuf>,
        /// Bound on each Modbus request.
        #[arg(long, value_parser = humantime::parse_duration)]
        modbus_timeout: Option<Duration>,
    },
    /// Decommission a cabinet: clear its retained topics on the broker (Home Assistant
    /// discovery configs, status, energy total, agent status). Stop its agent first.
    Forget {
        #[command(flatten)]
        bus: BusArgs,
        /// Cabinet id (default: `[cabinet] id`).
        #[arg(long)]
        id: Option<String>,
        /// Home Assistant's discovery prefix (as set in its MQTT options).
        #[arg(long)]
        ha_prefix: Option<String>,
        /// How long to wait for the broker.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

/// `wattchain averager` (`[averager]`).
#[derive(Args)]
pub(crate) struct AveragerArgs {
    #[command(flatten)]
    pub(crate) bus: BusArgs,
    /// Agent id (default: averager-HOST-PID).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Quantities to serve, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) quantities: Option<Vec<Quantity>>,
    /// Delay each task (fault drills: a slow averager).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) delay: Option<Duration>,
}

impl AveragerArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        self.bus.apply(&mut config.bus);
        let a = &mut config.averager;
        set_some(&mut a.id, &self.id);
        set(&mut a.quantities, &self.quantities);
        set(&mut a.delay, &self.delay);
    }
}

#[derive(Subcommand)]
pub(crate) enum GenesisCommand {
    /// Write a new genesis.json (refuses to overwrite one).
    New(GenesisNewArgs),
}

/// Each mode's own genesis settings (only the ones given are written; the mode refuses
/// another mode's).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ModeFlags {
    /// Proof of stake: least time from a block to the next (default 1s). Blocks come at this
    /// pace while there is something to commit; an idle chain does not grow.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) block_interval: Option<Duration>,
    /// Proof of stake: how long round 0's leader has before the next one may produce
    /// (default 2s); each later round twice as long as the one before, at most 16 times.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) round_timeout: Option<Duration>,
    /// PBFT: faults tolerated; the genesis must list exactly 3f+1 validators (default: the
    /// largest f the validators allow, e.g. 1 for 4).
    #[arg(long = "f", value_name = "F")]
    pub(crate) f: Option<u64>,
    /// PBFT: how long a view may go without committing before the replicas change the
    /// primary (default 2s); each further view change at one height doubles it.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub(crate) view_timeout: Option<Duration>,
}

impl ModeFlags {
    /// The settings given, in genesis form.
    pub(crate) fn settings(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = ledger::consensus::duration_settings(&[
            ("block_interval_ms", self.block_interval),
            ("round_timeout_ms", self.round_timeout),
        ]);
        if let Some(d) = self.view_timeout {
            m.insert("view_timeout".into(), (d.as_millis() as u64).into());
        }
        if let Some(f) = self.f {
            m.insert("f".into(), f.into());
        }
        m
    }
}

#[derive(Args)]
pub(crate) struct GenesisNewArgs {
    /// Consensus mode: pow (anyone mines), pos (validators take turns by stake) or pbft
    /// (3f+1 validators commit each block with 2f+1 signatures: immediate finality).
    #[arg(long, default_value = "pow")]
    pub(crate) consensus: String,
    /// Proof of work: leading zero bits of every block hash, 0..=40.
    #[arg(long, default_value_t = ledger::consensus::pow::DEFAULT_DIFFICULTY)]
    pub(crate) difficulty: u32,
    /// A validator (pos, pbft), repeated: NAME=PUBKEY[:STAKE] with the key `wattchain node
    /// keygen` printed; stake 1 when omitted (pbft has no stakes).
    #[arg(long = "validator", value_name = "NAME=PUBKEY[:STAKE]",
          value_parser = ledger::consensus::parse_validator_arg)]
    pub(crate) validators: Vec<ledger::consensus::Validator>,
    #[command(flatten)]
    pub(crate) mode: ModeFlags,
    /// Blocks on top that make a block final (1..=1000).
    #[arg(long, default_value_t = ledger::DEFAULT_FINALITY_DEPTH)]
    pub(crate) finality_depth: u64,
    /// Most records per block (1..=256).
    #[arg(long, default_value_t = ledger::MAX_RECORDS_PER_BLOCK)]
    pub(crate) max_records_per_block: usize,
    /// Display name, hashed into the chain id (A-Z a-z 0-9 . _ -).
    #[arg(long, default_value = "wattchain")]
    pub(crate) name: String,
    /// Where to write it.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    pub(crate) command: Option<NodeCommand>,
    #[command(flatten)]
    pub(crate) run: NodeRunArgs,
}

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Create a node key (Ed25519, PKCS#8 PEM, mode 0600) and print its public key.
    Keygen {
        /// Where to write it (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
}

/// A node's settings (`[node]`); each overrides the file, which overrides the library's
/// defaults (`NodeConfig::default()`).
#[derive(Args)]
pub(crate) struct NodeRunArgs {
    #[command(flatten)]
    pub(crate) bus: BusArgs,
    /// Node id: its MQTT client id, unique on the broker (default: node).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Directory of genesis.json, node.key and chain.jsonl (default: data).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The genesis to follow, copied into the data directory on first start.
    #[arg(long)]
    pub(crate) genesis: Option<PathBuf>,
    /// Most records per block this node builds (at most the genesis's).
    #[arg(long)]
    pub(crate) max_records_per_block: Option<usize>,
    /// Most windows in progress before the oldest partial one is dropped.
    #[arg(long)]
    pub(crate) max_pending: Option<usize>,
    /// Mining threads (0: every core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Also serve the HTTP API, dashboard and /metrics on ADDR (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR|off")]
    pub(crate) http: Option<HttpListen>,
    #[command(flatten)]
    pub(crate) http_args: HttpArgs,
    #[command(flatten)]
    pub(crate) ha: HaArgs,
}

impl NodeRunArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        self.bus.apply(&mut config.bus);
        self.http_args.apply(&mut config.web);
        self.ha.apply(&mut config.ha);
        let n = &mut config.node;
        set_some(&mut n.id, &self.id);
        set(&mut n.data_dir, &self.data_dir);
        set_some(&mut n.genesis, &self.genesis);
        set(&mut n.max_records_per_block, &self.max_records_per_block);
        set(&mut n.max_pending, &self.max_pending);
        set(&mut n.threads, &self.threads);
        set(&mut n.http, &self.http);
    }
}

#[derive(Args)]
pub(crate) struct PublisherArgs {
    #[command(flatten)]
    pub(crate) node: NodeRunArgs,
    /// Difficulty of the genesis created when the data directory has none and no --genesis.
    #[arg(long)]
    pub(crate) difficulty: Option<u32>,
}

impl PublisherArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        self.node.apply(config);
        set(&mut config.publisher.difficulty, &self.difficulty);
    }
}

/// `wattchain web` (`[web]`).
#[derive(Args)]
pub(crate) struct WebArgs {
    #[command(flatten)]
    pub(crate) bus: BusArgs,
    /// The chain file to serve (a node's DATA_DIR/chain.jsonl), read-only (required, here or
    /// in the file).
    #[arg(long)]
    pub(crate) chain: Option<PathBuf>,
    /// Agent id of the web service's MQTT session.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// HTTP API, dashboard and /metrics address (port 0 picks a free one and prints it).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) http_args: HttpArgs,
}

impl WebArgs {
    /// The flags given, over `config`.
    pub(crate) fn apply(&self, config: &mut WattchainConfig) {
        self.bus.apply(&mut config.bus);
        self.http_args.apply(&mut config.web);
        let w = &mut config.web;
        set_some(&mut w.chain, &self.chain);
        set(&mut w.id, &self.id);
        set(&mut w.http, &self.http);
    }
}

#[derive(Subcommand)]
pub(crate) enum ChainCommand {
    /// Verify a chain file against its genesis: blocks, signatures, work, records; warns of
    /// per-cabinet gaps. Exit 0 valid, 1 invalid (first bad block named), 2 unreadable.
    Verify {
        /// The genesis (default: genesis.json beside the chain file).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// The chain file (DATA_DIR/chain.jsonl).
        file: PathBuf,
    },
    /// Print blocks readably: index, time, producer, windows, hash.
    Show {
        /// The chain file.
        file: PathBuf,
        /// One JSON block per line instead.
        #[arg(long)]
        json: bool,
        /// First block to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most blocks to print.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Trials per second of the miner (the nodes' code path, at a difficulty never met).
    Mine(BenchMineArgs),
    /// Synthetic cabinets through the real averagers and nodes to the chain.
    Pipeline(bench::pipeline::PipelineBench),
    /// Modbus poll round trip and period jitter against the simulator.
    Modbus(bench::modbus::ModbusBench),
    /// A node with an empty data directory catching up with a long chain, against one core's
    /// signature verification rate.
    Sync(bench::sync::SyncBench),
    /// GET /api/v1/chain/head through the web service against a bare axum handler.
    Http(bench::http::HttpBench),
    /// Event-stream fan-out: many clients, quadruplet → client latency, server memory.
    Sse(bench::sse::SseBench),
    /// Ledger nodes back on one head after a node is cut off the broker and reconnects, against
    /// the block propagation time and a sync round trip measured in the same run.
    Converge(bench::converge::ConvergeBench),
}

#[derive(Args)]
pub(crate) struct BenchMineArgs {
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Mining threads (default: every core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Print one JSON line: {"threads","seconds","trials","trials_per_sec"}.
    #[arg(long)]
    pub(crate) json: bool,
    /// Measure the textbook method instead: serialise, hash and hex-compare the header per trial.
    #[arg(long)]
    pub(crate) naive: bool,
    /// Force a mining engine (portable, avx2, avx512), for comparison.
    #[arg(long, hide = true, conflicts_with = "naive")]
    pub(crate) engine: Option<ledger::Engine>,
    /// Shorthand for `--engine portable`.
    #[arg(long, hide = true, conflicts_with_all = ["naive", "engine"])]
    pub(crate) portable: bool,
}
