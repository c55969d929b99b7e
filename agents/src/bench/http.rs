//! `wattchain bench http`: requests per second of `GET /api/v1/chain/head` through the whole
//! web service (its middleware, state, chain summary), against a bare axum handler returning
//! the same bytes, in the same process, with the same client, rounds alternating.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::Link;
use crate::ledger::{
    Averages, ChainStore, Digests, Genesis, GenesisError, GenesisSpec, Hash32, Limits, NodeKey,
    Record, StoreError, Timestamp,
};
use crate::web::client::{Client, ClientError};
use crate::web::{self, ChainView, FileChain, Live, WebConfig, WebState};

/// What `bench http` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpBench {
    /// Keep-alive connections, each sending requests back to back.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds per round; rounds alternate bare, API, bare, API, …
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Rounds of each.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why the bench could not run.
#[derive(Debug, Error)]
pub enum HttpBenchError {
    /// Building the chain to serve failed.
    #[error("building the benchmark chain: {0}")]
    Ledger(#[from] StoreError),
    /// The bench's genesis could not be written.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// Binding loopback or a temporary directory failed.
    #[error("setting up: {0}")]
    Io(#[from] std::io::Error),
    /// A request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The web service refused its configuration.
    #[error(transparent)]
    Web(#[from] web::WebError),
    /// A response was not 200.
    #[error("GET {path} answered {status}")]
    Status {
        /// The path.
        path: String,
        /// Its status.
        status: u16,
    },
}

/// What `bench http` measured.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    /// Connections.
    pub connections: usize,
    /// Requests per second of each bare round.
    pub bare_rps: Vec<f64>,
    /// Requests per second of each `/api/v1/chain/head` round.
    pub head_rps: Vec<f64>,
    /// Mean head / mean bare (the target is at least 0.5).
    pub ratio: f64,
    /// Bytes per response body (the same for both).
    pub body_bytes: usize,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

impl fmt::Display for HttpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "HTTP GET, {} keep-alive connections, {}-byte bodies:",
            self.connections, self.body_bytes
        )?;
        writeln!(
            f,
            "  bare axum handler      {:>9.0} req/s  ({})",
            mean(&self.bare_rps),
            list(&self.bare_rps)
        )?;
        writeln!(
            f,
            "  /api/v1/chain/head     {:>9.0} req/s  ({})",
            mean(&self.head_rps),
            list(&self.head_rps)
        )?;
        write!(
            f,
            "  ratio                  {:>9.2}  (target >= 0.5)",
            self.ratio
        )
    }
}

fn record(window: u64) -> Record {
    Record {
        cabinet: "c1".into(),
        window,
        from: "2026-11-21T10:00:00.000Z".into(),
        to: "2026-11-21T10:00:03.000Z".into(),
        n: 4,
        averages: Averages {
            u: 230.1,
            i: 1.25,
            pa: 287.5,
            pr: -12.5,
        },
        digests: Digests {
            u: Hash32([1; 32]),
            i: Hash32([2; 32]),
            pa: Hash32([3; 32]),
            pr: Hash32([4; 32]),
        },
    }
}

/// A small chain (difficulty 0) in `dir`, as a node writes it: its genesis.json beside it.
pub(crate) fn make_chain(
    dir: &std::path::Path,
    blocks: u64,
) -> Result<std::path::PathBuf, HttpBenchError> {
    let genesis = Genesis::new(GenesisSpec::pow(0))?;
    let genesis_path = dir.join(crate::ledger::GENESIS_FILE);
    if !genesis_path.exists() {
        genesis.write_new(&genesis_path)?;
    }
    let genesis = Genesis::load(&genesis_path)?;
    let path = dir.join("chain.jsonl");
    let (mut store, _) = ChainStore::open(&genesis, &path, Limits::default())?;
    let key = NodeKey::from_seed([5; 32]);
    for w in 0..blocks {
        let t = genesis.template(
            store.head(),
            vec![record(w)],
            Timestamp::now(),
            key.public(),
        );
        store.insert(t.finish(0, &key, &genesis.id()))?;
    }
    Ok(path)
}

/// `connections` clients sending GET `path` back to back for `seconds`; requests per second.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    seconds: f64,
) -> Result<f64, HttpBenchError> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut client = Client::connect(addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < until {
                let r = client.get(path, &[]).await?;
                if r.status != 200 {
                    return Err(HttpBenchError::Status {
                        path: path.into(),
                        status: r.status.as_u16(),
                    });
                }
                done += 1;
            }
            Ok(done)
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("load task does not panic")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64().max(seconds))
}

/// Runs the rounds and reports; both servers stop with `shutdown` or at the end.
pub async fn run(
    bench: &HttpBench,
    shutdown: CancellationToken,
) -> Result<HttpReport, HttpBenchError> {
    let dir = tempfile::tempdir()?;
    let path = make_chain(dir.path(), 20)?;
    let chain = Arc::new(FileChain::new(&path));
    chain
        .refresh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let stop = shutdown.child_token();

    let (_link_tx, link) = watch::channel(Link::Down);
    let state = WebState::new(
        WebConfig::default(),
        chain,
        Arc::new(Live::new(Default::default())),
        link,
        "none".into(),
        stop.clone(),
    );
    let api_listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = api_listener.local_addr()?;
    let api_task = tokio::spawn(web::serve(api_listener, stop.clone(), state));

    // The same body the API serves, from a handler with nothing around it.
    let body: Bytes = crate::web::client::get(api, "/api/v1/chain/head", &[])
        .await?
        .body;
    let body_bytes = body.len();
    let bare_listener = TcpListener::bind("127.0.0.1:0").await?;
    let bare = bare_listener.local_addr()?;
    let bare_body = body.clone();
    let router = axum::Router::new().route(
        "/bare",
        get(move || {
            let b = bare_body.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], b) }
        }),
    );
    let bare_stop = stop.clone();
    let bare_task = tokio::spawn(async move {
        axum::serve(bare_listener, router)
            .with_graceful_shutdown(bare_stop.cancelled_owned())
            .await
    });

    let mut report = HttpReport {
        connections: bench.connections.max(1),
        bare_rps: Vec::new(),
        head_rps: Vec::new(),
        ratio: 0.0,
        body_bytes,
    };
    for _ in 0..bench.rounds.max(1) {
        if stop.is_cancelled() {
            break;
        }
        report
            .bare_rps
            .push(load(bare, "/bare", report.connections, bench.seconds).await?);
        report
            .head_rps
            .push(load(api, "/api/v1/chain/head", report.connections, bench.seconds).await?);
    }
    report.ratio = mean(&report.head_rps) / mean(&report.bare_rps).max(f64::MIN_POSITIVE);
    stop.cancel();
    let _ = api_task.await;
    let _ = bare_task.await;
    Ok(report)
}
