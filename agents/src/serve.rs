//! The binary's web-service runners: `wattchain web`, and the HTTP service that `up` and
//! `publisher --http` start next to their agents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use wattchain::bus::Bus;
use wattchain::config::file::BusSection;
use wattchain::config::WattchainConfig;
use wattchain::topics::check_id;
use wattchain::web::{self, HttpListen, HttpSettings, WebSources};

use crate::shutdown_on_signals;

/// The banner lines of a process serving HTTP: where, and a warning when it is open.
pub(crate) fn print_http(addr: SocketAddr, token: bool) {
    out!("  dashboard  http://{addr}/  (API http://{addr}/api/v1, metrics http://{addr}/metrics)");
    if !addr.ip().is_loopback() && !token {
        out!("  WARNING    the HTTP API on {addr} has no --http-token: anyone who can reach it reads everything");
    }
}

/// Binds `settings`, connects the web service's own MQTT session and returns its task.
pub(crate) async fn start_web(
    settings: HttpSettings,
    bus: &BusSection,
    id: &str,
    chain: PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(
    SocketAddr,
    tokio::task::JoinHandle<Result<(), web::WebError>>,
)> {
    wattchain::metrics::install();
    let listener = web::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let session = Bus::connect(
        bus.options(id, web::ROLE)?,
        web::feed::subscriptions(&settings.web.topics),
    )?;
    let sources = WebSources {
        chain,
        bus: session,
        broker: bus.broker.clone(),
    };
    let task = tokio::spawn(web::run(settings.web, listener, sources, shutdown));
    Ok((addr, task))
}

pub(crate) async fn run_web(file: &WattchainConfig) -> Result<ExitCode> {
    let args = &file.web;
    check_id(&args.id)?;
    let chain = args.chain()?.to_path_buf();
    let settings = args
        .settings(HttpListen(Some(args.http)), file.bus.topics()?)
        .context("--http is required")?;
    let token = settings.web.token.is_some();
    let shutdown = shutdown_on_signals();
    let (addr, task) = start_web(settings, &file.bus, &args.id, chain.clone(), shutdown).await?;
    out!(
        "wattchain web: chain {} via {}",
        chain.display(),
        file.bus.broker
    );
    print_http(addr, token);
    task.await.context("web service task")??;
    Ok(ExitCode::SUCCESS)
}
