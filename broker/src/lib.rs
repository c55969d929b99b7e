//! wattchain's MQTT broker: rumqttd embedded behind a front door that guards it.
//!
//! One public port serves MQTT 3.1.1 and MQTT 5, like mosquitto. The front door reads each
//! client's CONNECT, refuses what would hurt rumqttd 0.20 with a proper CONNACK, and relays the
//! rest to rumqttd's v4 or v5 listener on loopback.
//!
//! Guards, each with an integration test in `broker/tests/guards.rs`: handshake timeout (plain
//! and TLS), MQTT 3.1 refused with a CONNACK, client ids with `/ + # $` rewritten reversibly
//! ([`client_id`]), over-long ids refused, keep-alive 0 replaced, connection limit and
//! credentials checked with proper CONNACK codes (argon2 hashes, see `auth`), one connection per client id at a time
//! (takeover done by the front door), and the packet-size limit on everything clients send.
//!
//! With users configured, each user may publish and subscribe only where its permissions say
//! (rumqttd has no ACLs): the front door checks PUBLISH topics (MQTT 5 topic aliases resolved),
//! will topics and SUBSCRIBE filters before rumqttd sees them; tests in
//! `broker/tests/permissions.rs`. Without users, packets are only framed, never parsed.
//!
//! Shared subscriptions (`$share/group/filter`) work for both protocol versions, but rumqttd
//! keys a group by its name alone: use each group name for exactly one filter, or messages are
//! lost. rumqttd also hands a group's messages round robin one at a time, and while the member
//! whose turn it is waits on its QoS 1 window (100 unacknowledged messages, fixed), the router
//! thread re-reads the group's backlog for every other member in a busy loop: in
//! `wattchain bench pipeline` at 100k quadruplets/s the router spent 2.4–2.9 s of CPU per 6 s
//! run with two averagers against 0.9 s with one. Subscribing the members at QoS 0 removes the
//! loop but also rumqttd's only flow control towards a slow member: past capacity (150k/s
//! offered) an averager was disconnected on keep-alive and 11 000 of 15 000 windows missed the
//! bench's drain, so agents keep QoS 1.
//!
//! rumqttd has no shutdown API: after [`Broker::shutdown`] its threads live on, listening on
//! loopback only, until the process exits.
//!
//! # Layout
//!
//! - [`config`]: [`BrokerConfig`] with defaults, the commented default TOML, validation.
//! - `error`: [`BrokerError`], what starting the broker can fail with.
//! - `auth`: argon2 password hashes ([`hash_password`]) and the bounded login check.
//! - [`acl`]: [`Permissions`], MQTT wildcard matching of topics and filters.
//! - `gate`: checks an authenticated client's PUBLISH and SUBSCRIBE against its permissions.
//! - `internal`: rumqttd on two loopback ports, with a readiness probe.
//! - `front_door`: the public accept loops and the CONNECT guards.
//! - `relay`: byte relaying with the packet-size limit.
//! - `sessions`: one relayed connection per client id (takeover by the front door).
//! - `framing`: packet boundaries from fixed headers, for the size limit.
//! - `packet`: CONNECT parsing and splicing, and the packets the front door sends itself.
//! - [`client_id`]: the reversible client-id rewriting.
//! - `tls`: TLS termination for the optional TLS listener.
//! - `websocket`: the optional MQTT-over-WebSocket listener.
//! - [`mod@bench`]: front door versus direct-to-rumqttd throughput.

#![warn(missing_docs)]

pub mod acl;
mod auth;
pub mod bench;
pub mod client_id;
pub mod config;
mod error;
mod framing;
mod front_door;
mod gate;
mod internal;
mod packet;
mod relay;
mod sessions;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use acl::Permissions;
pub use auth::{hash_password, AuthError};
pub use config::{
    default_config_toml, BrokerConfig, ConfigError, FilterSegments, RumqttdTuning, TlsConfig, User,
    WsConfig,
};
pub use error::BrokerError;

use front_door::{FrontDoor, Transport};

/// Largest MQTT packet, in bytes, that the broker accepts and our clients send or receive.
///
/// One place for the limit: the broker applies it at the front door and to rumqttd, and the
/// agents' MQTT session uses it for rumqttc's packet limits (whose 10 KiB default is too small
/// for a window of samples).
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;

/// A running broker; dropping it without [`Broker::shutdown`] leaves the front door running.
#[derive(Debug)]
pub struct Broker {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    ws_local_addr: Option<SocketAddr>,
    internal_v4: SocketAddr,
    internal_v5: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Validates `config`, binds the public listeners, starts rumqttd and waits until it answers.
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
        Some(built?)
    };
    let listener = bind(config.listen).await?;
    let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let tls = match &config.tls {
        Some(tls_config) => {
            let acceptor = tls::acceptor(tls_config)?;
            Some((bind(tls_config.listen).await?, acceptor))
        }
        None => None,
    };
    let tls_local_addr = match &tls {
        Some((listener, _)) => Some(listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.listen,
            source,
        })?),
        None => None,
    };
    let ws = match &config.ws {
        Some(ws) => Some(bind(ws.listen).await?),
        None => None,
    };
    let ws_local_addr = match &ws {
        Some(listener) => Some(listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.listen,
            source,
        })?),
        None => None,
    };
    for addr in [Some(local_addr), tls_local_addr, ws_local_addr]
        .into_iter()
        .flatten()
    {
        warn_if_open(auth.is_some(), addr);
    }

    let rumqttd = internal::launch(&config).await?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let door = Arc::new(FrontDoor {
        permits: Arc::new(Semaphore::new(config.max_connections)),
        sessions: Arc::default(),
        config,
        rumqttd,
        auth,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    });
    tracker.spawn(Arc::clone(&door).accept_loop(listener, Transport::Plain));
    if let Some((listener, acceptor)) = tls {
        tracker.spawn(Arc::clone(&door).accept_loop(listener, Transport::Tls(acceptor)));
    }
    if let Some(listener) = ws {
        tracker.spawn(Arc::clone(&door).accept_loop(listener, Transport::WebSocket));
    }
    info!(listen = %local_addr, tls = ?tls_local_addr, ws = ?ws_local_addr, v4 = %rumqttd.v4, v5 = %rumqttd.v5, "broker ready");
    Ok(Broker {
        local_addr,
        tls_local_addr,
        ws_local_addr,
        internal_v4: rumqttd.v4,
        internal_v5: rumqttd.v5,
        shutdown,
        tracker,
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// Anyone who can reach a non-loopback port could publish into the chain's inputs.
fn warn_if_open(authenticated: bool, addr: SocketAddr) {
    if !addr.ip().is_loopback() && !authenticated {
        warn!(listen = %addr, "listening beyond loopback with no users configured: anyone who can reach this port can connect and publish");
    }
}

impl Broker {
    /// The public front-door address (MQTT 3.1.1 and 5).
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

    /// The front door as a URL, `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.local_addr)
    }

    /// rumqttd's internal MQTT 3.1.1 listener, bypassing the guards (for the bench only).
    pub fn internal_v4_addr(&self) -> SocketAddr {
        self.internal_v4
    }

    /// rumqttd's internal MQTT 5 listener, bypassing the guards (for tests only).
    pub fn internal_v5_addr(&self) -> SocketAddr {
        self.internal_v5
    }

    /// Stops accepting, closes every relayed connection and waits for those tasks to end.
    ///
    /// rumqttd has no shutdown API: its threads live on until the process exits, listening on
    /// loopback only.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        info!(listen = %self.local_addr, "broker front door stopped");
    }
}
