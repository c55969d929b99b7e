//! The ledger subcommands of the binary: `genesis new`, `node` (and `node keygen`),
//! `publisher`, `chain verify`, `chain show`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use wattchain::bus::Bus;
use wattchain::config::WattchainConfig;
use wattchain::ha;
use wattchain::ledger::{self, Genesis, GenesisSpec, NodeKey, VerifyFileError, GENESIS_FILE};
use wattchain::node::{self, NodeConfig};

use crate::cli::{ChainCommand, GenesisNewArgs};
use crate::serve::{print_http, start_web};

/// Exit status of `chain verify` for usage and I/O errors (1 means an invalid chain).
const EXIT_USAGE: u8 = 2;

pub(crate) fn genesis_new(args: GenesisNewArgs) -> Result<ExitCode> {
    if args.consensus != "pow" {
        bail!(
            "--consensus {:?}: this wattchain knows pow (pos and pbft come with their issue)",
            args.consensus
        );
    }
    let mut spec = GenesisSpec::pow(args.difficulty);
    spec.name = args.name;
    spec.finality_depth = args.finality_depth;
    spec.max_records_per_block = args.max_records_per_block;
    let genesis = Genesis::new(spec)?;
    genesis.write_new(&args.out)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "genesis written to {}", args.out.display());
    let _ = writeln!(out, "chain id {}", genesis.id());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn keygen(out: &Path) -> Result<ExitCode> {
    let key = NodeKey::generate();
    key.write_new(out)?;
    let _ = writeln!(std::io::stdout().lock(), "{}", key.public());
    eprintln!("node key written to {} (mode 0600)", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The node configuration: `[node]` (the flags given over the file over the defaults).
fn node_config(file: &WattchainConfig, default_id: &str) -> Result<NodeConfig> {
    let config = file.node.config(default_id, file.bus.topics()?);
    config.validate()?;
    Ok(config)
}

fn load_genesis(path: &Option<PathBuf>) -> Result<Option<Genesis>> {
    path.as_ref()
        .map(|p| Genesis::load(p).map_err(anyhow::Error::from))
        .transpose()
}

pub(crate) async fn run_node(
    args: &WattchainConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<ExitCode> {
    let config = node_config(args, "node")?;
    let genesis = load_genesis(&args.node.genesis)?;
    if genesis.is_none() && !config.data_dir.join(GENESIS_FILE).exists() {
        bail!(
            "{} has no genesis.json: pass --genesis FILE (made by `wattchain genesis new`)",
            config.data_dir.display()
        );
    }
    serve(config, genesis, args, shutdown).await
}

pub(crate) async fn run_publisher(
    args: &WattchainConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<ExitCode> {
    let config = node_config(args, "publisher")?;
    let mut genesis = load_genesis(&args.node.genesis)?;
    if genesis.is_none() && !config.data_dir.join(GENESIS_FILE).exists() {
        // The one-node case makes its own chain, checked before anything is written.
        genesis = Some(Genesis::new(GenesisSpec::pow(args.publisher.difficulty))?);
    }
    serve(config, genesis, args, shutdown).await
}

async fn serve(
    config: NodeConfig,
    genesis: Option<Genesis>,
    args: &WattchainConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<ExitCode> {
    let ha = args.ha.config()?;
    let mut options = args.bus.options(&config.id, node::ROLE)?;
    options.republish_on = ha.birth();
    let bus = Bus::connect(options, config.subscriptions())?;
    ha::announce(
        &bus.outlet(),
        &ha,
        &ha::ledger_entities(&ha, &config.topics, &config.id),
    );
    let web = match args.web.settings(args.node.http, config.topics.clone()) {
        Some(settings) => {
            let token = settings.web.token.is_some();
            let id = format!("{}-web", config.id);
            let chain = config.chain_path();
            let (addr, task) = start_web(settings, &args.bus, &id, chain, shutdown.clone()).await?;
            print_http(addr, token);
            Some(task)
        }
        None => None,
    };
    let result = node::run(config, genesis, bus, shutdown.clone(), None).await;
    shutdown.cancel();
    if let Some(task) = web {
        task.await.context("web service task")??;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn chain(command: ChainCommand) -> ExitCode {
    match command {
        ChainCommand::Verify { genesis, file } => verify(genesis, &file),
        ChainCommand::Show {
            file,
            json,
            from,
            limit,
        } => match show(&file, json, from, limit) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

fn verify(genesis: Option<PathBuf>, file: &Path) -> ExitCode {
    // The file named first: a missing chain is reported as such, not as a missing genesis.
    if let Err(e) = std::fs::File::open(file) {
        eprintln!("error: cannot read chain file {}: {e}", file.display());
        return ExitCode::from(EXIT_USAGE);
    }
    let genesis_path = genesis.unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(GENESIS_FILE)
    });
    let genesis = match Genesis::load(&genesis_path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e} (pass --genesis FILE)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match ledger::verify_file(&genesis, file) {
        Ok(summary) => {
            let _ = write!(std::io::stdout().lock(), "{summary}");
            for w in summary.gap_warnings() {
                eprintln!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(VerifyFileError::Invalid(e)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn show(file: &Path, json: bool, from: u64, limit: Option<u64>) -> Result<()> {
    use std::io::BufRead;
    let f = std::fs::File::open(file)
        .with_context(|| format!("cannot read chain file {}", file.display()))?;
    let mut out = std::io::stdout().lock();
    let mut shown = 0u64;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if (i as u64) < from {
            continue;
        }
        if limit.is_some_and(|l| shown >= l) {
            break;
        }
        shown += 1;
        if json {
            if writeln!(out, "{line}").is_err() {
                break;
            }
            continue;
        }
        let Ok(b) = ledger::Block::from_json(&line) else {
            let _ = writeln!(out, "line {}: not a block", i + 1);
            continue;
        };
        let windows: Vec<String> = b
            .records()
            .iter()
            .map(|r| format!("{}#{}", r.cabinet, r.window))
            .collect();
        let text = format!(
            "#{:<6} {}  {}  by {}  {} windows {}",
            b.index,
            b.timestamp,
            b.hash.short(),
            b.producer.short(),
            windows.len(),
            windows.join(",")
        );
        if writeln!(out, "{text}").is_err() {
            break;
        }
    }
    Ok(())
}
