//! wattchain's MQTT broker: [rmqtt](https://github.com/rmqtt/rmqtt) 0.24 embedded in-process.
//!
//! One port serves MQTT 3.1, 3.1.1 and 5, like mosquitto; optional TLS and MQTT-over-WebSocket
//! ports serve the same sessions. Authentication (argon2id users file) and per-role topic
//! permissions are rmqtt hooks, so every listener runs them: no port of the process admits a
//! session that skips them. Retained messages (rmqtt-retainer, in RAM) and shared
//! subscriptions (`$share/group/filter`, rmqtt-shared-subscription, round robin) are rmqtt's
//! own plugins, registered in-process.
//!
//! Why rmqtt and not rumqttd 0.20 (our engine until 2026-12): five standards-conformant
//! inputs, each sent once by one client, left rumqttd alive but refusing every new connection
//! (README "The broker" lists them with the commands that reproduce them); rmqtt serves both
//! protocol versions after each.
//!
//! What this crate adds around rmqtt, because rmqtt does not:
//! - a stop: rmqtt has no shutdown API. [`Broker::shutdown`] aborts the server task (closing
//!   the listeners) and kicks every session; see its docs for what outlives it;
//! - a deadline on the first bytes of a CONNECT: rmqtt's handshake timeout started only after
//!   them, so an idle socket was held forever (patched in `vendor/rmqtt-net`, see PATCHED.md);
//! - tuning the pipeline needs ([`config::Limits`]): TCP_NODELAY, 100 messages in flight and
//!   100 000 queued per session (rmqtt's defaults, 16 and 1000, halve the pipeline's
//!   throughput), no CPU busy check (rmqtt refuses clients when the load average is high), a
//!   cap on session expiry (uncapped by default);
//! - counters: [`Broker::stats`], with every dropped message counted (per client when a client
//!   is too slow) and logged with the client id.
//!
//! rmqtt logs through the `log` crate; a `tracing-subscriber` with its default `tracing-log`
//! feature (as the `wattchain` binary installs) receives those records as `tracing` events
//! under the targets `rmqtt*`.
//!
//! # Layout
//!
//! - [`config`]: [`BrokerConfig`] and its [`config::Limits`] with defaults, the commented
//!   default TOML, validation.
//! - `error`: [`BrokerError`], what starting the broker can fail with.
//! - `auth`: argon2 password hashes ([`hash_password`]) and the bounded login check.
//! - [`acl`]: [`Permissions`], MQTT wildcard matching of topics and filters.
//! - `engine`: rmqtt's context, plugins and listeners built from the config.
//! - `hooks`: the rmqtt hooks for authentication, permissions and counting.
//! - `stats`: [`BrokerStats`] and the counters behind it.

#![warn(missing_docs)]

pub mod acl;
mod auth;
pub mod config;
mod engine;
mod error;
mod hooks;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::context::ServerContext;
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};

pub use acl::Permissions;
pub use auth::{hash_password, AuthError};
pub use config::{
    default_config_toml, BrokerConfig, ConfigError, Limits, TlsConfig, User, WsConfig,
};
pub use error::BrokerError;
pub use stats::{BrokerStats, OTHER_CLIENTS};

use stats::Counters;

/// Largest MQTT packet, in bytes, that the broker accepts and our clients send or receive.
///
/// One place for the limit: the broker applies it to every listener, and the agents' MQTT
/// session uses it for rumqttc's packet limits (whose 10 KiB default is too small for a window
/// of samples).
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;

/// How long [`Broker::shutdown`] waits for sessions to acknowledge their kick.
const KICK_WAIT: Duration = Duration::from_millis(80);

/// A running broker. The engine runs on threads of its own (see [`start`]); dropping the
/// broker without [`Broker::shutdown`] stops it abruptly: connections close without a kick.
pub struct Broker {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    ws_local_addr: Option<SocketAddr>,
    scx: ServerContext,
    server: JoinHandle<()>,
    counters: Arc<Counters>,
    /// The engine's own runtime: `None` once shut down.
    runtime: Option<Runtime>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so a broker may be dropped inside async code.
            runtime.shutdown_background();
        }
    }
}

/// Worker threads of the engine's runtime: one per core.
fn engine_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.local_addr)
            .field("tls_local_addr", &self.tls_local_addr)
            .field("ws_local_addr", &self.ws_local_addr)
            .finish_non_exhaustive()
    }
}

/// Validates `config`, binds every listener and starts the engine; once this returns, each
/// listener accepts (connections made earlier wait in the backlog, not refused).
///
/// The engine gets a tokio runtime of its own (one worker thread per core), whatever runtime
/// calls this: rmqtt does all of a message's routing in tasks, and sharing the caller's
/// workers with the agents of `wattchain up` or a bench queued every hop behind their work
/// (in one process at 50 cabinets × 1000 quadruplets/s: 25k sustained and a p50 of 7–8 s,
/// against 49k and 0.1 s on its own threads).
pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
    config.validate()?;
    let users = config.load_users()?;
    let auth = if users.is_empty() {
        None
    } else {
        let (concurrency, wait) = (config.max_concurrent_logins, config.connect_timeout);
        // Hashing the decoy password is as slow as a login: keep it off the runtime thread.
        let built = tokio::task::spawn_blocking(move || {
            auth::Authenticator::new(&users, concurrency, wait)
        })
        .await
        .map_err(|err| BrokerError::Auth(AuthError::Hash(err.to_string())))?;
        Some(Arc::new(built?))
    };
    let counters = Arc::new(Counters::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(engine_threads())
        .thread_name("mqtt-broker")
        .enable_all()
        .build()
        .map_err(BrokerError::Runtime)?;
    // Listeners bind inside the engine's runtime: a socket belongs to the runtime it is made in.
    let built = {
        let (auth, counters) = (auth.clone(), Arc::clone(&counters));
        runtime
            .spawn(async move { engine::build(&config, auth, counters).await })
            .await
            .unwrap_or_else(|err| Err(BrokerError::Engine(err.to_string())))
    };
    let bound = match built {
        Ok(bound) => bound,
        Err(err) => {
            // Dropping a runtime inside async code panics; this never blocks.
            runtime.shutdown_background();
            return Err(err);
        }
    };
    for addr in [
        Some(bound.local_addr),
        bound.tls_local_addr,
        bound.ws_local_addr,
    ]
    .into_iter()
    .flatten()
    {
        warn_if_open(auth.is_some(), addr);
    }
    let listen = bound.local_addr;
    let server = runtime.spawn(async move {
        // `run` only returns when every accept loop has (never, in rmqtt 0.24).
        if let Err(err) = bound.server.run().await {
            warn!(listen = %listen, error = %err, "embedded MQTT engine stopped");
        }
    });
    info!(
        listen = %bound.local_addr,
        tls = ?bound.tls_local_addr,
        ws = ?bound.ws_local_addr,
        authenticated = auth.is_some(),
        "broker ready (rmqtt)"
    );
    Ok(Broker {
        local_addr: bound.local_addr,
        tls_local_addr: bound.tls_local_addr,
        ws_local_addr: bound.ws_local_addr,
        scx: bound.scx,
        server,
        counters,
        runtime: Some(runtime),
    })
}

/// Anyone who can reach a non-loopback port could publish into the chain's inputs.
fn warn_if_open(authenticated: bool, addr: SocketAddr) {
    if !addr.ip().is_loopback() && !authenticated {
        warn!(listen = %addr, "listening beyond loopback with no users configured: anyone who can reach this port can connect and publish");
    }
}

impl Broker {
    /// The address serving MQTT 3.1, 3.1.1 and 5.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS listener's address, when TLS is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// The WebSocket listener's address, when configured.
    pub fn ws_local_addr(&self) -> Option<SocketAddr> {
        self.ws_local_addr
    }

    /// The plain listener as a URL, `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.local_addr)
    }

    /// Connections, sessions, subscriptions, retained messages and message counters now.
    pub async fn stats(&self) -> BrokerStats {
        let (scx, counters) = (self.scx.clone(), Arc::clone(&self.counters));
        match &self.runtime {
            Some(runtime) => runtime
                .spawn(Self::stats_of(scx, counters))
                .await
                .unwrap_or_else(|_| self.counters.snapshot()),
            None => self.counters.snapshot(),
        }
    }

    /// Runs on the engine's runtime, where its locks and tasks are.
    async fn stats_of(scx: ServerContext, counters: Arc<Counters>) -> BrokerStats {
        let mut stats = counters.snapshot();
        stats.connections = count(scx.connections.count());
        stats.sessions = count(scx.sessions.count());
        stats.handshakes = count(scx.handshakings.count());
        // The router's relation count, not `Shared::subscriptions_count`: that one holds
        // the session table's shard locks across awaits (a deadlock on a single-threaded
        // runtime when a session ends meanwhile).
        stats.subscriptions = count(scx.extends.router().await.routes().count());
        stats.retained = {
            let retain = scx.extends.retain().await;
            count(retain.count().await)
        };
        stats
    }

    /// Stops the broker: closes every listener, then kicks every session (connected clients
    /// see their connection closed, MQTT 5 ones a DISCONNECT first) and waits briefly for
    /// their acknowledgements. Returns within ~100 ms.
    ///
    /// rmqtt has no shutdown API: this closes what can be closed from outside, in the
    /// engine's runtime, then ends that runtime, which drops whatever is left (a socket still
    /// before its CONNECT, the plugins' periodic timers).
    pub async fn shutdown(mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let (listen, scx) = (self.local_addr, self.scx.clone());
        let server = std::mem::replace(&mut self.server, runtime.spawn(async {}));
        let stopped = runtime.spawn(Self::stop(listen, scx, server)).await;
        runtime.shutdown_background();
        if stopped.is_err() {
            warn!(listen = %listen, "broker shutdown did not complete");
        }
    }

    /// Closes the listeners, then kicks every session and waits up to [`KICK_WAIT`].
    async fn stop(listen: SocketAddr, scx: ServerContext, server: JoinHandle<()>) {
        server.abort();
        let _ = server.await;
        let entries: Vec<_> = {
            let shared = scx.extends.shared().await;
            shared.iter().collect()
        };
        let sessions = entries.len();
        let mut kicks = JoinSet::new();
        for entry in entries {
            kicks.spawn(async move {
                if let Ok(mut locked) = entry.try_lock().await {
                    let _ = locked.kick(true, true, true).await;
                }
            });
        }
        let all_kicked = tokio::time::timeout(KICK_WAIT, kicks.join_all())
            .await
            .is_ok();
        if !all_kicked {
            warn!(listen = %listen, sessions, "some sessions did not acknowledge the shutdown in time");
        }
        info!(listen = %listen, sessions, "broker stopped");
    }
}

fn count(value: isize) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
