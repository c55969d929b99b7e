//! The `wattchain` binary: the command line (`cli`), logging, signals, and the calls into the
//! library that each subcommand makes. With no subcommand it runs `up`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{FromArgMatches as _, Parser};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use wattchain::averager;
use wattchain::bench;
use wattchain::bus::Bus;
use wattchain::cabinet;
use wattchain::config::{render, ConfigError, WattchainConfig};
use wattchain::ha::HaConfig;
use wattchain::ledger;
use wattchain::modbus::ModbusCabinet;
use wattchain::node;
use wattchain::regmap::RegisterMap;
use wattchain::sim::{self, ChurnSpec, SimConfig, Simulator};
use wattchain::topics::check_id;
use wattchain::topics::DiscoveryTopics;
use wattchain::up::{self, UpConfig, UpEvent};

use cli::{
    BenchCommand, BenchMineArgs, BrokerArgs, BrokerCommand, CabinetCommand, Cli, Command,
    GenesisCommand, NodeCommand, UpArgs,
};

mod cli;
mod ledger_cmd;

/// Writes a line to stdout, ignoring a closed pipe (`wattchain chain verify F | head` must not
/// panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod serve;
use serve::{print_http, run_web};

/// mimalloc instead of glibc's malloc: the pipeline allocates and frees a buffer or two per
/// message in the broker, rumqttc and our agents, and glibc's malloc/free took ~15 % of the CPU
/// in `perf` profiles of `wattchain bench pipeline`. Built without transparent huge pages
/// (`no_thp`): with them an idle averager held 17 MB instead of 9 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::from_arg_matches(&cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(configure_and_dispatch(cli)) {
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
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The embedded rmqtt logs every connect and ordinary disconnect at info: warnings
        // only unless asked for (RUST_LOG=info,rmqtt=info shows them). Its records arrive
        // through tracing-subscriber's `log` bridge, under the targets `rmqtt*`.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,rmqtt=warn,rmqtt_net=warn,rmqtt_retainer=warn,rmqtt_shared_subscription=warn",
            )
        });
    // Colour only for a person at a terminal: a log file or a pipe gets plain text, and
    // NO_COLOR (set and not empty, https://no-color.org) turns colour off everywhere.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .init();
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    // Registered before returning, not in the task: a SIGTERM right after a ready line must
    // still stop the process cleanly.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match term {
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

/// Reads `--config` (every subcommand accepts it, so a bad file is reported even where nothing
/// of it is used), then runs the subcommand with its flags over the file.
async fn configure_and_dispatch(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => WattchainConfig::from_file(path)?,
        None => WattchainConfig::default(),
    };
    dispatch(cli.command.unwrap_or_else(default_up), config).await
}

async fn dispatch(command: Command, mut config: WattchainConfig) -> Result<ExitCode> {
    match command {
        Command::Up(args) => {
            args.apply(&mut config);
            run_up(&config).await
        }
        Command::Broker(args) => run_broker(args, config).await,
        Command::Sim(args) => {
            args.apply(&mut config);
            run_sim(&config).await
        }
        Command::Cabinet(args) => match args.command {
            Some(CabinetCommand::Churn {
                modbus,
                churn,
                seed,
                map,
                modbus_timeout,
            }) => {
                let cabinet = config.cabinet;
                let modbus = modbus.or(cabinet.modbus).ok_or(ConfigError::Missing {
                    key: "modbus",
                    path: "cabinet.modbus",
                })?;
                let map = load_map(&map.or(cabinet.map))?;
                let timeout = modbus_timeout.unwrap_or(cabinet.modbus_timeout);
                run_churn(modbus, churn, seed, map, timeout).await
            }
            Some(CabinetCommand::Forget {
                bus,
                id,
                ha_prefix,
                wait,
            }) => {
                bus.apply(&mut config.bus);
                let id = id.or(config.cabinet.id).ok_or(ConfigError::Missing {
                    key: "id",
                    path: "cabinet.id",
                })?;
                let prefix = ha_prefix.unwrap_or(config.ha.prefix);
                run_forget(&config.bus, &id, &prefix, wait).await
            }
            None => {
                args.run.apply(&mut config);
                run_cabinet(&config).await
            }
        },
        Command::Averager(args) => {
            args.apply(&mut config);
            run_averager(&config).await
        }
        Command::Genesis {
            command: GenesisCommand::New(args),
        } => ledger_cmd::genesis_new(args),
        Command::Node(args) => match args.command {
            Some(NodeCommand::Keygen { out }) => ledger_cmd::keygen(&out),
            None => {
                args.run.apply(&mut config);
                ledger_cmd::run_node(&config, shutdown_on_signals()).await
            }
        },
        Command::Publisher(args) => {
            args.apply(&mut config);
            ledger_cmd::run_publisher(&config, shutdown_on_signals()).await
        }
        Command::Chain { command } => Ok(ledger_cmd::chain(command)),
        Command::Web(args) => {
            args.apply(&mut config);
            run_web(&config).await
        }
        Command::Bench { command } => run_bench(command).await,
        Command::GenerateConfig => {
            out!("{}", render::default_toml().trim_end());
            Ok(ExitCode::SUCCESS)
        }
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

async fn run_up(file: &WattchainConfig) -> Result<ExitCode> {
    let config = UpConfig::from_config(file)?;
    config.validate()?;
    let token = config.http.as_ref().is_some_and(|h| h.web.token.is_some());
    let root = file.bus.root.clone();
    let shutdown = shutdown_on_signals();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            match event {
                UpEvent::Started {
                    broker,
                    ws,
                    tls,
                    modbus,
                    chain,
                    genesis,
                    chain_id,
                    nodes,
                    http,
                } => {
                    let port = broker.rsplit(':').next().unwrap_or("1883").to_string();
                    out!("wattchain is up.");
                    out!("  broker     {broker}  (MQTT 3.1, 3.1.1 and 5)");
                    if let Some(addr) = ws {
                        out!("             ws://{addr}/  (MQTT over WebSocket)");
                    }
                    if let Some(addr) = tls {
                        out!("             mqtts://{addr}  (TLS)");
                    }
                    out!("  simulator  modbus://{modbus}");
                    out!("  genesis    {}  (chain id {chain_id})", genesis.display());
                    out!("  nodes      {}", nodes.join(", "));
                    out!("  chain      {}", chain.display());
                    out!("  watch      mosquitto_sub -h 127.0.0.1 -p {port} -t '{root}/#' -v");
                    if let Some(addr) = http {
                        print_http(addr, token);
                    }
                    out!("  verify     wattchain chain verify {}", chain.display());
                    out!("Ctrl-C stops everything cleanly.");
                }
                UpEvent::Block(moved) => match moved.report {
                    node::Report::Appended { block: b, mined: true } => {
                        let records = b.records();
                        let (u, i, pa, pr) = records.last().map_or((0.0, 0.0, 0.0, 0.0), |r| {
                            (r.averages.u, r.averages.i, r.averages.pa, r.averages.pr)
                        });
                        let windows: Vec<String> = records
                            .iter()
                            .map(|r| format!("{}#{}", r.cabinet, r.window))
                            .collect();
                        // The mode's numbers (pos: the round), so a skipped leader shows.
                        let slot: String = b
                            .consensus
                            .iter()
                            .flatten()
                            .filter(|(_, v)| v.is_u64())
                            .map(|(k, v)| format!(" {k} {v}"))
                            .collect();
                        // PBFT: how many COMMIT signatures certify it (and the time from
                        // proposal to certificate instead of mining time).
                        let commits = b
                            .certificate
                            .as_ref()
                            .and_then(|c| c.get("commits"))
                            .and_then(|c| c.as_array())
                            .map(|c| c.len());
                        let slot = match commits {
                            Some(n) => format!("{slot} {n} signatures"),
                            None => slot,
                        };
                        let made = if commits.is_some() { "committed" } else { "mined" };
                        out!(
                            "block {:>5}  {}  by {:<7}{slot} windows {:<14}  U {u:7.2} V  I {i:6.3} A  PA {pa:8.1} W  PR {pr:8.1} var  {made} in {:.1} ms",
                            b.index,
                            b.hash.short(),
                            moved.node,
                            windows.join(","),
                            moved.mining.map_or(0.0, |d| d.as_secs_f64() * 1000.0)
                        );
                    }
                    node::Report::Appended { .. } => {}
                    node::Report::Reorg { fork, removed, added } => out!(
                        "reorg  at {}: back to block {fork}, {removed} block(s) left the main chain, {added} joined",
                        moved.node
                    ),
                },
            }
        }
    });
    let result = up::run(config, shutdown, tx).await;
    let _ = printer.await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn run_broker(args: BrokerArgs, file: WattchainConfig) -> Result<ExitCode> {
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
    let mut config = file.broker;
    config.validate()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let shutdown = shutdown_on_signals();
    let broker = wattchain_broker::start(config).await?;
    out!(
        "wattchain broker ready on {} (MQTT 3.1, 3.1.1 and 5)",
        broker.local_addr()
    );
    shutdown.cancelled().await;
    broker.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn run_sim(file: &WattchainConfig) -> Result<ExitCode> {
    let args = &file.simulator;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (use --listen to pick another address)",
                args.listen
            )
        })?;
    let mut config = SimConfig::new(load_map(&args.map)?);
    config.churn = args.churn.0;
    config.seed = args.seed;
    config.noise = !args.no_noise;
    let sim = Simulator::new(config);
    let shutdown = shutdown_on_signals();
    out!("cabinet simulator listening on {}", listener.local_addr()?);
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

async fn run_cabinet(file: &WattchainConfig) -> Result<ExitCode> {
    let args = &file.cabinet;
    let mut config = args.agent_config(&file.bus, &file.ha)?;
    config.map = load_map(&args.map)?;
    // Checked after every other setting (cabinet::run refuses to start without one).
    config.genesis = args
        .genesis
        .as_deref()
        .map(ledger::Genesis::load)
        .transpose()?;
    // Before a connection is opened or a file written.
    config.validate()?;
    let options = file.bus.options(&config.agent_id(), cabinet::ROLE)?;
    let status_bus = Bus::connect(config.status_bus_options(&options), vec![])?;
    let bus = Bus::connect(options, config.subscriptions())?;
    cabinet::run(config, bus, status_bus, shutdown_on_signals()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_forget(
    bus: &wattchain::config::file::BusSection,
    id: &str,
    ha_prefix: &str,
    wait: Duration,
) -> Result<ExitCode> {
    check_id(id)?;
    let ha = HaConfig {
        enabled: false,
        topics: DiscoveryTopics::new(ha_prefix)?,
    };
    let options = bus.options(&format!("cabinet-{id}"), cabinet::ROLE)?;
    let cleared = cabinet::forget::forget(&options, &ha, id, wait)
        .await
        .with_context(|| format!("forgetting cabinet {id}"))?;
    out!(
        "cabinet {id} forgotten: {} retained topics cleared",
        cleared.len()
    );
    for topic in cleared {
        out!("  {topic}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_averager(file: &WattchainConfig) -> Result<ExitCode> {
    let args = &file.averager;
    let id = args.id.clone().unwrap_or_else(default_agent_id);
    check_id(&id)?;
    let config = args.config(&id, file.bus.topics()?);
    config.validate()?;
    let bus = Bus::connect(
        file.bus.options(&id, averager::ROLE)?,
        config.subscriptions(),
    )?;
    averager::run(config, bus, shutdown_on_signals()).await;
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
        BenchCommand::Sync(b) => {
            let r = bench::sync::run(&b, shutdown).await?;
            let ok = r.blocks > 0;
            (r.to_string(), serde_json::to_string(&r)?, b.json, ok)
        }
        BenchCommand::Http(b) => {
            let r = bench::http::run(&b, shutdown).await?;
            (r.to_string(), serde_json::to_string(&r)?, b.json, true)
        }
        BenchCommand::Sse(b) => {
            let r = bench::sse::run(&b, shutdown).await?;
            let ok = r.streams_lost == 0;
            (r.to_string(), serde_json::to_string(&r)?, b.json, ok)
        }
        BenchCommand::Converge(b) => {
            let r = bench::converge::run(&b, shutdown).await?;
            // A partition that never heals is a correctness failure, not a slow figure.
            let ok = r.failures.is_empty() && r.converged == r.trials_run && r.trials_run > 0;
            (r.to_string(), serde_json::to_string(&r)?, b.json, ok)
        }
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
