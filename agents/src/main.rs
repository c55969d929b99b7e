//! The `wattchain` binary: parses the command line, sets up logging and signals, and calls the
//! library. With no subcommand it runs `up`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use wattchain::averager::{self, AveragerConfig};
use wattchain::bench;
use wattchain::bus::{BrokerUrl, Bus, BusOptions, QoS};
use wattchain::cabinet::{self, CabinetConfig};
use wattchain::ledger;
use wattchain::modbus::ModbusCabinet;
use wattchain::publisher::{self, PublisherConfig};
use wattchain::regmap::RegisterMap;
use wattchain::sim::{self, ChurnSpec, SimConfig, Simulator};
use wattchain::topics::{check_id, Quantity, Topics};
use wattchain::up::{self, UpConfig, UpEvent};

/// Writes a line to stdout, ignoring a closed pipe (`wattchain chain verify F | head` must not
/// panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// wattchain: electrical cabinet measurements over MQTT into a proof-of-work hash chain.
///
/// Run with no subcommand to start everything in one process (`wattchain up`).
#[derive(Parser)]
#[command(name = "wattchain", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline in one process: broker, simulator, cabinet, averagers, publisher.
    Up(UpArgs),
    /// Run the MQTT broker (MQTT 3.1.1 and 5 on one port).
    Broker(BrokerArgs),
    /// Run the cabinet simulator, a Modbus TCP server.
    Sim(SimArgs),
    /// Run the cabinet acquisition agent (or `cabinet churn` to switch a real PLC's loads).
    Cabinet(Box<CabinetArgs>),
    /// Run an averaging agent.
    Averager(AveragerArgs),
    /// Run the publisher: assemble averages, mine blocks, keep the chain.
    Publisher(PublisherArgs),
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
}

/// How agents reach the broker.
#[derive(Args, Clone)]
struct BusArgs {
    /// Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS.
    #[arg(
        long,
        default_value = "mqtt://127.0.0.1:1883",
        env = "WATTCHAIN_BROKER"
    )]
    broker: String,
    /// MQTT username.
    #[arg(long, env = "WATTCHAIN_USERNAME")]
    username: Option<String>,
    /// MQTT password (prefer the environment variable to keep it out of `ps`).
    #[arg(long, env = "WATTCHAIN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// CA certificate (PEM) to trust for mqtts://.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Root of every topic.
    #[arg(long, default_value = wattchain::topics::DEFAULT_ROOT)]
    root: String,
}

impl BusArgs {
    fn options(&self, id: &str, role: &str) -> Result<BusOptions> {
        let url: BrokerUrl = self.broker.parse()?;
        let mut o = BusOptions::new(url, id, role);
        o.topics = self.topics()?;
        o.username.clone_from(&self.username);
        o.password.clone_from(&self.password);
        o.ca_file.clone_from(&self.ca_file);
        Ok(o)
    }

    fn topics(&self) -> Result<Topics> {
        Ok(Topics::new(&self.root)?)
    }
}

#[derive(Args)]
struct UpArgs {
    /// Broker address (0.0.0.0:1883 exposes it to the network).
    #[arg(long, default_value = "127.0.0.1:1883")]
    listen: SocketAddr,
    /// Cabinet poll period.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    period: Duration,
    /// Samples per window.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Proof of work: leading zero bits of each block hash.
    #[arg(long, default_value_t = 18)]
    difficulty: u32,
    /// Where the chain and the cabinet's outbox are written.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Number of averaging agents.
    #[arg(long, default_value_t = 2)]
    averagers: usize,
    /// Simulator load churn: a period ("2s") or a range ("1s..5s"); "off" to disable.
    #[arg(long, default_value = "2s..5s")]
    churn: String,
    /// Seed for the simulator (noise and churn), for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Cabinet id.
    #[arg(long, default_value = "c1")]
    cabinet: String,
    /// Seconds before an uncommitted window is re-published.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    commit_deadline: Duration,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct BrokerArgs {
    #[command(subcommand)]
    command: Option<BrokerCommand>,
    /// Configuration file (TOML); see `wattchain broker generate-config`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address of the public MQTT port (overrides the file); 0.0.0.0:1883 exposes it.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Print a commented default configuration.
    GenerateConfig,
    /// Read a password from stdin (first line) and print its argon2 hash for a users file.
    HashPassword,
}

#[derive(Args)]
struct SimArgs {
    /// Modbus TCP address to serve (port 0 picks a free port and prints it).
    #[arg(long, default_value = "127.0.0.1:5020")]
    listen: SocketAddr,
    /// Register map (TOML); default: the built-in simulator map.
    #[arg(long)]
    map: Option<PathBuf>,
    /// Toggle a random load every period ("2s") or random period in a range ("1s..5s").
    #[arg(long)]
    churn: Option<ChurnSpec>,
    /// Seed for noise, drift and churn.
    #[arg(long)]
    seed: Option<u64>,
    /// Disable noise and drift: readings equal the ideal physics.
    #[arg(long)]
    no_noise: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct CabinetArgs {
    #[command(subcommand)]
    command: Option<CabinetCommand>,
    #[command(flatten)]
    run: CabinetRunArgs,
}

#[derive(Args)]
struct CabinetRunArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// The PLC (or simulator) Modbus TCP address.
    #[arg(long, required = true)]
    modbus: Option<SocketAddr>,
    /// Cabinet id (letters, digits, '-', '_').
    #[arg(long, required = true)]
    id: Option<String>,
    /// Poll period.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    period: Duration,
    /// Samples per window.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Directory for the outbox journal (default: data/cabinet/ID).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A window not committed by then is published again.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    commit_deadline: Duration,
    /// Most uncommitted windows kept before the oldest is dead-lettered.
    #[arg(long, default_value_t = 10_000)]
    outbox_capacity: usize,
    /// Bound on each Modbus request.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    modbus_timeout: Duration,
    /// Register map (TOML); default: the simulator's map.
    #[arg(long)]
    map: Option<PathBuf>,
    /// QoS of quadruplets (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    quad_qos: u8,
}

#[derive(Subcommand)]
enum CabinetCommand {
    /// Switch random loads and sources of a PLC (or simulator) over Modbus, like `sim --churn`.
    Churn {
        /// The PLC's Modbus TCP address.
        #[arg(long)]
        modbus: SocketAddr,
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
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        modbus_timeout: Duration,
    },
}

#[derive(Args)]
struct AveragerArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// Agent id (default: averager-HOST-PID).
    #[arg(long)]
    id: Option<String>,
    /// Quantities to serve, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "U,I,PA,PR")]
    quantities: Vec<Quantity>,
    /// Delay each task (fault drills: a slow averager).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    delay: Duration,
}

#[derive(Args)]
struct PublisherArgs {
    #[command(flatten)]
    bus: BusArgs,
    /// Agent id.
    #[arg(long, default_value = "publisher")]
    id: String,
    /// Directory of chain.jsonl.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Proof of work: leading zero bits of each block hash.
    #[arg(long, default_value_t = 18)]
    difficulty: u32,
    /// Most windows per block.
    #[arg(long, default_value_t = 64)]
    max_windows_per_block: usize,
    /// Most windows in progress before the oldest partial one is dropped.
    #[arg(long, default_value_t = 10_000)]
    max_pending: usize,
    /// Mining threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Verify a chain file: hashes, links, proof of work, records. Exit 1 names the first bad block.
    Verify {
        /// The chain file (DATA_DIR/chain.jsonl).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Trials per second of the miner (the publisher's code path, at a difficulty never met).
    Mine(BenchMineArgs),
    /// Synthetic cabinets through the real averagers and publisher to the chain.
    Pipeline(bench::pipeline::PipelineBench),
    /// Modbus poll round trip and period jitter against the simulator.
    Modbus(bench::modbus::ModbusBench),
}

#[derive(Args)]
struct BenchMineArgs {
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Mining threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON line: {"threads","seconds","trials","trials_per_sec"}.
    #[arg(long)]
    json: bool,
    /// Measure the textbook method instead: serialise, hash and hex-compare the header per trial.
    #[arg(long)]
    naive: bool,
    /// Force a mining engine (portable, avx2, avx512), for comparison.
    #[arg(long, hide = true, conflicts_with = "naive")]
    engine: Option<ledger::Engine>,
    /// Shorthand for `--engine portable`.
    #[arg(long, hide = true, conflicts_with_all = ["naive", "engine"])]
    portable: bool,
}

/// mimalloc instead of glibc's malloc: the pipeline allocates and frees a buffer or two per
/// message in rumqttd, rumqttc and our agents, and glibc's malloc/free took ~15 % of the CPU
/// in `perf` profiles of `wattchain bench pipeline`. Built without transparent huge pages
/// (`no_thp`): with them an idle averager held 17 MB instead of 9 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command.unwrap_or_else(default_up))) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_up() -> Command {
    Command::Up(UpArgs::parse_from_defaults())
}

impl UpArgs {
    fn parse_from_defaults() -> UpArgs {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            up: UpArgs,
        }
        Only::parse_from(["wattchain"]).up
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rumqttd logs ordinary client disconnects as errors: quiet unless asked for
        // (RUST_LOG=info,rumqttd=info shows them).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("shutting down");
        t.cancel();
    });
    token
}

fn load_map(path: &Option<PathBuf>) -> Result<RegisterMap> {
    match path {
        Some(p) => RegisterMap::from_file(p)
            .with_context(|| format!("reading register map {}", p.display())),
        None => Ok(RegisterMap::default_sim()),
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Up(args) => run_up(args).await,
        Command::Broker(args) => run_broker(args).await,
        Command::Sim(args) => run_sim(args).await,
        Command::Cabinet(args) => match args.command {
            Some(CabinetCommand::Churn {
                modbus,
                churn,
                seed,
                map,
                modbus_timeout,
            }) => run_churn(modbus, churn, seed, load_map(&map)?, modbus_timeout).await,
            None => run_cabinet(args.run).await,
        },
        Command::Averager(args) => run_averager(args).await,
        Command::Publisher(args) => run_publisher(args).await,
        Command::Chain {
            command: ChainCommand::Verify { file },
        } => Ok(verify_chain(&file)),
        Command::Bench { command } => run_bench(command).await,
    }
}

async fn run_bench_mine(args: BenchMineArgs) -> Result<ExitCode> {
    use wattchain::bench::mine::{self, Method};
    let duration = Duration::try_from_secs_f64(args.seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--seconds must be a positive number")?;
    let threads = args
        .threads
        .unwrap_or_else(|| ledger::Miner::all_cores().threads());
    let method = match (args.naive, args.portable) {
        (true, _) => Method::Naive,
        (false, true) => Method::Miner(Some(ledger::Engine::Portable)),
        (false, false) => Method::Miner(args.engine),
    };
    let report = tokio::task::spawn_blocking(move || mine::run(method, threads, duration))
        .await
        .context("benchmark thread")??;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let engine = report.engine.map_or("naive".to_owned(), |e| e.to_string());
        println!(
            "mine: {} thread(s), {engine}: {} trials in {:.2} s = {:.2} M trials/s",
            report.threads,
            report.trials,
            report.seconds,
            report.trials_per_sec / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_up(args: UpArgs) -> Result<ExitCode> {
    let churn = match args.churn.as_str() {
        "off" | "none" => None,
        spec => Some(spec.parse::<ChurnSpec>()?),
    };
    check_id(&args.cabinet)?;
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let config = UpConfig {
        listen: args.listen,
        period: args.period,
        window: args.window,
        difficulty: args.difficulty,
        data_dir: args.data_dir,
        averagers: args.averagers,
        churn,
        seed: args.seed,
        cabinet: args.cabinet,
        commit_deadline: args.commit_deadline,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let shutdown = shutdown_on_signals();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            match event {
                UpEvent::Started {
                    broker,
                    modbus,
                    chain,
                } => {
                    let port = broker.rsplit(':').next().unwrap_or("1883").to_string();
                    out!("wattchain is up.");
                    out!("  broker     {broker}  (MQTT 3.1.1 and 5)");
                    out!("  simulator  modbus://{modbus}");
                    out!("  chain      {}", chain.display());
                    out!("  watch      mosquitto_sub -h 127.0.0.1 -p {port} -t 'wattchain/#' -v");
                    out!("  verify     wattchain chain verify {}", chain.display());
                    out!("Ctrl-C stops everything cleanly.");
                }
                UpEvent::Block(mined) => {
                    let b = &mined.block;
                    let records = b.records();
                    let (u, i, pa, pr) = records.last().map_or((0.0, 0.0, 0.0, 0.0), |r| {
                        (r.averages.u, r.averages.i, r.averages.pa, r.averages.pr)
                    });
                    let windows: Vec<String> = records
                        .iter()
                        .map(|r| format!("{}#{}", r.cabinet, r.window))
                        .collect();
                    out!(
                        "block {:>5}  {}  windows {:<14}  U {u:7.2} V  I {i:6.3} A  PA {pa:8.1} W  PR {pr:8.1} var  mined in {:.1} ms",
                        b.index,
                        b.hash.short(),
                        windows.join(","),
                        mined.mining.as_secs_f64() * 1000.0
                    );
                }
            }
        }
    });
    let result = up::run(config, shutdown, tx).await;
    let _ = printer.await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn run_broker(args: BrokerArgs) -> Result<ExitCode> {
    match args.command {
        Some(BrokerCommand::GenerateConfig) => {
            out!("{}", wattchain_broker::default_config_toml().trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        Some(BrokerCommand::HashPassword) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on stdin");
            out!("{}", wattchain_broker::hash_password(password)?);
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let mut config = match &args.config {
        Some(path) => wattchain_broker::BrokerConfig::from_file(path)
            .with_context(|| format!("reading broker config {}", path.display()))?,
        None => wattchain_broker::BrokerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let shutdown = shutdown_on_signals();
    let broker = wattchain_broker::start(config).await?;
    out!(
        "wattchain broker ready on {} (MQTT 3.1.1 and 5)",
        broker.local_addr()
    );
    shutdown.cancelled().await;
    broker.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn run_sim(args: SimArgs) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (use --listen to pick another address)",
                args.listen
            )
        })?;
    let mut config = SimConfig::new(load_map(&args.map)?);
    config.churn = args.churn;
    config.seed = args.seed;
    config.noise = !args.no_noise;
    let sim = Simulator::new(config);
    out!("cabinet simulator listening on {}", listener.local_addr()?);
    let shutdown = shutdown_on_signals();
    sim.serve(listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_churn(
    modbus: SocketAddr,
    churn: ChurnSpec,
    seed: Option<u64>,
    map: RegisterMap,
    timeout: Duration,
) -> Result<ExitCode> {
    let shutdown = shutdown_on_signals();
    let mut plc = ModbusCabinet::connect(modbus, map, timeout).await?;
    sim::run_churn(&mut plc, churn, seed, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_cabinet(args: CabinetRunArgs) -> Result<ExitCode> {
    let id = args.id.context("--id is required")?;
    check_id(&id)?;
    let modbus = args.modbus.context("--modbus is required")?;
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from("data").join("cabinet").join(&id));
    let config = CabinetConfig {
        map: load_map(&args.map)?,
        period: args.period,
        window: args.window,
        commit_deadline: args.commit_deadline,
        outbox_capacity: args.outbox_capacity,
        modbus_timeout: args.modbus_timeout,
        quad_qos: if args.quad_qos == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        },
        topics: args.bus.topics()?,
        ..CabinetConfig::new(&id, modbus, data_dir)
    };
    let options = args.bus.options(&config.agent_id(), cabinet::ROLE)?;
    let status_bus = Bus::connect(config.status_bus_options(&options), vec![])?;
    let bus = Bus::connect(options, config.subscriptions())?;
    cabinet::run(config, bus, status_bus, shutdown_on_signals()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_averager(args: AveragerArgs) -> Result<ExitCode> {
    let id = args.id.unwrap_or_else(default_agent_id);
    check_id(&id)?;
    let mut config = AveragerConfig::new(&id, args.bus.topics()?);
    config.quantities = args.quantities;
    config.delay = args.delay;
    let bus = Bus::connect(
        args.bus.options(&id, averager::ROLE)?,
        config.subscriptions(),
    )?;
    averager::run(config, bus, shutdown_on_signals()).await;
    Ok(ExitCode::SUCCESS)
}

async fn run_publisher(args: PublisherArgs) -> Result<ExitCode> {
    check_id(&args.id)?;
    let mut config = PublisherConfig::new(&args.id, args.data_dir);
    config.difficulty = args.difficulty;
    config.max_windows_per_block = args.max_windows_per_block;
    config.max_pending = args.max_pending;
    config.topics = args.bus.topics()?;
    if let Some(t) = args.threads {
        config.threads = t.max(1);
    }
    let bus = Bus::connect(
        args.bus.options(&args.id, publisher::ROLE)?,
        config.subscriptions(),
    )?;
    publisher::run(config, bus, shutdown_on_signals(), None).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_bench(command: BenchCommand) -> Result<ExitCode> {
    let shutdown = shutdown_on_signals();
    let (text, json, wants_json, ok) = match command {
        BenchCommand::Pipeline(b) => {
            let r = bench::pipeline::run(&b, shutdown).await?;
            // Lost or duplicated windows fail the run: they are correctness, not speed.
            let ok = r.failures.is_empty() && r.windows_lost == 0 && r.windows_duplicated == 0;
            (r.to_string(), serde_json::to_string(&r)?, b.json, ok)
        }
        BenchCommand::Mine(args) => return run_bench_mine(args).await,
        BenchCommand::Modbus(b) => {
            let r = bench::modbus::run(&b, shutdown).await?;
            (
                r.to_string(),
                serde_json::to_string(&r)?,
                b.json,
                r.errors == 0,
            )
        }
    };
    out!("{}", if wants_json { json } else { text });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_chain(file: &std::path::Path) -> ExitCode {
    match ledger::verify_file(file) {
        Ok(summary) => {
            out!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            out!("INVALID: {e}");
            ExitCode::FAILURE
        }
    }
}

fn default_agent_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(32)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    format!("averager-{host}-{}", std::process::id())
}
