//! The web service: a JSON API, a live dashboard and Prometheus metrics over HTTP, in-process
//! next to the agents.
//!
//! [`serve`] runs the HTTP server on a listener the caller bound, until the caller's shutdown
//! token is cancelled (mini-redis's `server::run`). Its [`WebState`] is a read handle on the
//! chain ([`ChainView`]), the [`Live`] view that [`feed`] fills from the bus, and the limits.
//! [`run`] starts both for the usual case.
//!
//! - [`chain`]: the narrow chain adapter (`ChainView`) and `FileChain`, which follows `chain.jsonl`.
//! - [`live`]: latest quadruplets, averages, windows, statuses, node heads; the event ring.
//! - [`feed`]: the bus session's messages into the live view; chain refreshes on new blocks.
//! - [`api`]: the `/api/v1` handlers and the OpenAPI document generated from them.
//! - [`events`]: the server-sent-event stream (`/api/v1/events`), bounded and resumable.
//! - [`problem`]: RFC 9457 errors.
//! - [`auth`]: the optional bearer token.
//! - [`conn`]: the listener: a connection cap and a write deadline for peers that stop reading.
//! - [`assets`]: the dashboard's files, embedded in the binary.
//! - [`client`]: a minimal HTTP/1 and event-stream client, for benchmarks and tests.

pub mod api;
pub mod assets;
pub mod auth;
pub mod chain;
pub mod client;
pub mod conn;
pub mod events;
pub mod feed;
pub mod live;
pub mod problem;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use chain::{ChainView, FileChain};
pub use live::{Live, LiveLimits};

use crate::bus::{Bus, Link};
use crate::topics::Topics;

/// The role of the web service's MQTT session (status and dead-letter topics).
pub const ROLE: &str = "web";

/// Default address of the HTTP API and dashboard.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// How the web service runs. Every limit is here.
#[derive(Clone)]
pub struct WebConfig {
    /// Bearer token every API request must carry; `None`: no login (fine on loopback only).
    pub token: Option<String>,
    /// Origins allowed cross-origin requests (`*` for any); empty: CORS off.
    pub cors: Vec<String>,
    /// Event-stream clients served at once; more are refused with 503.
    pub max_sse_clients: usize,
    /// Live view bounds (event ring, per-client buffer, history, tracked keys).
    pub live: LiveLimits,
    /// Largest request body accepted, bytes.
    pub max_body: usize,
    /// Time limit of every handler (until its response starts).
    pub handler_timeout: Duration,
    /// Requests handled at once; more are refused with 503.
    pub max_concurrent: usize,
    /// HTTP connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection whose peer has not taken a write for this long is closed.
    pub write_deadline: Duration,
    /// Most blocks in one page of `/api/v1/chain/blocks`.
    pub max_page: usize,
    /// Comment line sent on idle event streams, so proxies keep them open.
    pub keepalive: Duration,
    /// The chain is re-read at least this often, even without a block on the bus.
    pub chain_poll: Duration,
    /// Largest bus payload the live view accepts, bytes.
    pub max_payload: usize,
    /// Topic namespace.
    pub topics: Topics,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            token: None,
            cors: Vec::new(),
            max_sse_clients: 256,
            live: LiveLimits::default(),
            max_body: 16 * 1024,
            handler_timeout: Duration::from_secs(10),
            max_concurrent: 512,
            max_connections: 1024,
            write_deadline: Duration::from_secs(10),
            max_page: 100,
            keepalive: Duration::from_secs(15),
            chain_poll: Duration::from_secs(2),
            max_payload: 256 * 1024,
            topics: Topics::default(),
        }
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("cors", &self.cors)
            .field("max_sse_clients", &self.max_sse_clients)
            .field("live", &self.live)
            .field("max_body", &self.max_body)
            .field("handler_timeout", &self.handler_timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_page", &self.max_page)
            .finish_non_exhaustive()
    }
}

/// Why the web service could not start or stopped.
#[derive(Debug, Error)]
pub enum WebError {
    /// The HTTP address could not be bound.
    #[error(
        "cannot listen for HTTP on {addr}: {source} (pick another with --http ADDR, or --http off)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A CORS origin is not a valid header value.
    #[error("invalid --http-cors origin {0:?}")]
    Cors(String),
    /// The server failed while running.
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// The `--http` flag: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

impl std::str::FromStr for HttpListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
            return Ok(HttpListen(None));
        }
        s.parse()
            .map(|a| HttpListen(Some(a)))
            .map_err(|_| format!("{s:?} is not ADDRESS:PORT (e.g. 127.0.0.1:8080) or \"off\""))
    }
}

impl std::fmt::Display for HttpListen {
    /// The form [`FromStr`](std::str::FromStr) reads: an address or `off`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl serde::Serialize for HttpListen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HttpListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where and how a process serves HTTP.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The address to bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The service's configuration.
    pub web: WebConfig,
}

/// Binds the HTTP address, naming it in the error (a busy port is the usual cause).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, WebError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Bind { addr, source })
}

/// True when serving `addr` without a token would expose the data beyond this machine.
pub fn is_open(addr: SocketAddr, config: &WebConfig) -> bool {
    !addr.ip().is_loopback() && config.token.is_none()
}

/// What the handlers share.
#[derive(Clone)]
pub struct WebState(Arc<Shared>);

/// The inside of [`WebState`].
pub struct Shared {
    /// The chain, read-only.
    pub chain: Arc<dyn ChainView>,
    /// The live view.
    pub live: Arc<Live>,
    /// The configuration.
    pub config: WebConfig,
    /// Event-stream client slots.
    pub sse_slots: Arc<Semaphore>,
    /// The process's shutdown: event streams end with it.
    pub shutdown: CancellationToken,
    /// The bus link state, for `/api/v1/status`.
    pub link: watch::Receiver<Link>,
    /// The broker the live view reads (for display).
    pub broker: String,
    /// When the service started.
    pub started: Instant,
}

impl WebState {
    /// State over `chain` and `live`; `link` and `broker` describe the bus session feeding it.
    pub fn new(
        config: WebConfig,
        chain: Arc<dyn ChainView>,
        live: Arc<Live>,
        link: watch::Receiver<Link>,
        broker: String,
        shutdown: CancellationToken,
    ) -> WebState {
        WebState(Arc::new(Shared {
            sse_slots: Arc::new(Semaphore::new(config.max_sse_clients)),
            chain,
            live,
            config,
            shutdown,
            link,
            broker,
            started: Instant::now(),
        }))
    }
}

impl std::ops::Deref for WebState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// How long open connections get to finish after the shutdown.
const DRAIN: Duration = Duration::from_secs(3);

/// Serves HTTP on `listener` until `shutdown`; open event streams end at once, other
/// requests get [`DRAIN`] to finish.
pub async fn serve(
    listener: TcpListener,
    shutdown: CancellationToken,
    state: WebState,
) -> Result<(), WebError> {
    let addr = listener.local_addr().map_err(WebError::Serve)?;
    if is_open(addr, &state.config) {
        warn!(listen = %addr, "HTTP API listening beyond loopback with no --http-token: anyone who can reach this port can read the chain and the measurements");
    }
    let listener = conn::Bounded::new(
        listener,
        state.config.max_connections,
        state.config.write_deadline,
    );
    let app = api::router(state)?;
    info!(listen = %addr, "HTTP API and dashboard up");
    let stop = shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        done = &mut server => done.map_err(WebError::Serve),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            warn!(listen = %addr, "HTTP connections still open after the drain; closing them");
            Ok(())
        }
    }
}

/// Where the web service reads the chain and the bus.
pub struct WebSources {
    /// The chain file it follows.
    pub chain: PathBuf,
    /// Its own MQTT session, subscribed to [`feed::subscriptions`].
    pub bus: Bus,
    /// The broker's URL, for display.
    pub broker: String,
}

/// Runs the whole web service until `shutdown`: the live feed from `sources.bus`, the chain
/// follower, and the HTTP server on `listener`.
pub async fn run(
    config: WebConfig,
    listener: TcpListener,
    sources: WebSources,
    shutdown: CancellationToken,
) -> Result<(), WebError> {
    crate::metrics::install();
    let chain = chain::open(&sources.chain);
    let live = Arc::new(Live::new(config.live));
    let state = WebState::new(
        config.clone(),
        chain.clone(),
        live.clone(),
        sources.bus.link(),
        sources.broker,
        shutdown.clone(),
    );
    // The feed stops with the server, even when the server stops on an error.
    let feed_stop = shutdown.child_token();
    let feeder = tokio::spawn(feed::run(
        config,
        sources.bus,
        chain,
        live,
        feed_stop.clone(),
    ));
    let served = serve(listener, shutdown, state).await;
    feed_stop.cancel();
    let _ = feeder.await;
    served
}
