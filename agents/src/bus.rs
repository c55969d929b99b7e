//! The MQTT session every agent uses.
//!
//! [`Bus::connect`] starts a background task that owns rumqttc's event loop: it connects, and
//! after every (re)connection publishes the agent's retained presence and re-subscribes, because
//! wattchain uses clean sessions (the broker keeps nothing for us). A lost connection is retried
//! forever with capped exponential backoff; agents never exit because the broker is away.
//!
//! Agents see two things: an [`Outlet`] to publish through (cheap to clone) and a bounded stream
//! of [`Incoming`] messages from [`Bus::recv`]. [`Bus::memory`] gives the same two things wired to
//! channels instead of a broker: the seam that lets agent logic be tested without one.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rumqttc::{
    AsyncClient, ClientError, Event, EventLoop, LastWill, MqttOptions, Outgoing as RumqttOutgoing,
    Packet, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use rumqttc::QoS;

use crate::messages::{encode, AgentStatus, Presence as PresenceState};
use crate::topics::Topics;

/// Errors of the MQTT session.
#[derive(Debug, Error)]
pub enum BusError {
    /// The broker URL could not be understood.
    #[error(
        "invalid broker URL {url:?}: {reason} (expected mqtt://HOST:PORT or mqtts://HOST:PORT)"
    )]
    Url { url: String, reason: String },
    /// The CA file for `mqtts://` could not be read.
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TLS settings for `mqtts://` cannot be used.
    #[error("TLS setup for mqtts:// failed: {0}")]
    Tls(String),
    /// The session task has stopped; nothing more can be published.
    #[error("the MQTT session is closed")]
    Closed,
    /// The outgoing queue is full (the broker is slow or away).
    #[error("the outgoing queue is full")]
    QueueFull,
    /// No connection with acknowledged subscriptions within the wait.
    #[error("not connected to {broker} after {waited:?}")]
    NotReady { broker: String, waited: Duration },
}

/// Where the broker is: `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

impl FromStr for BrokerUrl {
    type Err = BusError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| BusError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            (false, rest)
        } else if url.contains("://") {
            return Err(fail("unsupported scheme"));
        } else {
            (false, url)
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(fail("a path is not allowed"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            // [IPv6]:port
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| fail("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(fail("garbage after ']'")),
            };
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| fail("bad port"))?),
                None => (rest.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        Ok(BrokerUrl { host, port, tls })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// What an agent announces, retained, while it is connected, and what its last will says.
#[derive(Debug, Clone)]
pub enum Presence {
    /// The standard `agent/{id}/status` ([`AgentStatus`]), online/offline.
    Agent,
    /// Another retained topic with explicit online and offline (last will) payloads.
    Custom {
        /// Topic of the retained status.
        topic: String,
        /// Published (retained) after every connection.
        online: Vec<u8>,
        /// The last will, and what a clean close publishes.
        offline: Vec<u8>,
    },
}

/// Everything needed to open a session.
#[derive(Clone)]
pub struct BusOptions {
    /// Broker location.
    pub broker: BrokerUrl,
    /// Agent id: the MQTT client id and the `{id}` of its status topic.
    pub id: String,
    /// Agent role (`cabinet`, `averager`, `publisher`, ...).
    pub role: String,
    /// Topic namespace.
    pub topics: Topics,
    /// Optional username.
    pub username: Option<String>,
    /// Optional password (never logged).
    pub password: Option<String>,
    /// CA certificate (PEM) to trust for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Largest packet sent or received; aligned with the broker's limit.
    pub max_packet_size: usize,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Capacity of the outgoing and incoming queues, in messages.
    pub queue: usize,
    /// What the agent announces and its last will.
    pub presence: Presence,
}

impl fmt::Debug for BusOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusOptions")
            .field("broker", &self.broker.to_string())
            .field("id", &self.id)
            .field("role", &self.role)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("keep_alive", &self.keep_alive)
            .field("max_packet_size", &self.max_packet_size)
            .field("queue", &self.queue)
            .finish()
    }
}

impl BusOptions {
    /// Options with wattchain's defaults for one agent.
    pub fn new(broker: BrokerUrl, id: &str, role: &str) -> Self {
        BusOptions {
            broker,
            id: id.to_string(),
            role: role.to_string(),
            topics: Topics::default(),
            username: None,
            password: None,
            ca_file: None,
            keep_alive: Duration::from_secs(10),
            max_packet_size: wattchain_broker::DEFAULT_MAX_PACKET_SIZE,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            queue: 4096,
            presence: Presence::Agent,
        }
    }

    fn presence_topic_and_payloads(&self) -> (String, Vec<u8>, Vec<u8>) {
        match &self.presence {
            Presence::Agent => (
                self.topics.agent_status(&self.id),
                encode(&AgentStatus::new(
                    PresenceState::Online,
                    &self.id,
                    &self.role,
                )),
                encode(&AgentStatus::new(
                    PresenceState::Offline,
                    &self.id,
                    &self.role,
                )),
            ),
            Presence::Custom {
                topic,
                online,
                offline,
            } => (topic.clone(), online.clone(), offline.clone()),
        }
    }

    fn mqtt_options(&self, offline_topic: &str, offline: &[u8]) -> Result<MqttOptions, BusError> {
        let mut o = MqttOptions::new(&self.id, &self.broker.host, self.broker.port);
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(self.max_packet_size, self.max_packet_size)
            .set_request_channel_capacity(self.queue)
            .set_last_will(LastWill::new(
                offline_topic,
                offline.to_vec(),
                QoS::AtLeastOnce,
                true,
            ));
        if let (Some(u), p) = (&self.username, &self.password) {
            o.set_credentials(u, p.clone().unwrap_or_default());
        }
        if self.broker.tls {
            let Some(path) = &self.ca_file else {
                return Err(BusError::Tls(
                    "no CA file: pass --ca-file with the broker's CA certificate".into(),
                ));
            };
            let ca = std::fs::read(path).map_err(|source| BusError::CaFile {
                path: path.clone(),
                source,
            })?;
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls_client_config(
                &ca,
            )?)));
        }
        Ok(o)
    }
}

/// A rustls client configuration trusting the PEM certificates in `ca`.
///
/// The crypto provider is named explicitly: with both ring (the broker's) and aws-lc-rs
/// (rumqttc's) compiled in, rustls cannot pick a process default and rumqttc's own
/// `TlsConfiguration::Simple` panics in the session task.
fn tls_client_config(ca: &[u8]) -> Result<Arc<ClientConfig>, BusError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|err| BusError::Tls(format!("CA file: {err}")))?;
        roots
            .add(cert)
            .map_err(|err| BusError::Tls(format!("CA file: {err}")))?;
    }
    if roots.is_empty() {
        return Err(BusError::Tls("the CA file holds no PEM certificate".into()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| BusError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A message received from the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
}

/// A message an agent published (as seen by the in-memory seam).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS requested.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
}

/// State of the link to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Not connected (yet, or any more); retrying.
    Down,
    /// Connected; `ready` once the broker acknowledged every subscription.
    Up {
        /// Subscriptions acknowledged.
        ready: bool,
        /// How many connections this session has made so far (1 for the first).
        connections: u64,
    },
}

#[derive(Clone)]
enum OutletInner {
    Mqtt(AsyncClient),
    Memory(mpsc::UnboundedSender<Outgoing>),
}

/// Publishes on the bus. Cheap to clone.
#[derive(Clone)]
pub struct Outlet {
    inner: OutletInner,
    /// Latest payload per retained topic, re-published after every reconnection: the broker
    /// may have restarted and lost it (rumqttd keeps nothing). Bounded by the agent's topics.
    retained: Retained,
}

fn client_error(e: ClientError) -> BusError {
    match e {
        // rumqttc does not say whether a refused try_send was full or closed; a closed session
        // shows up on the next awaited publish.
        ClientError::TryRequest(_) => BusError::QueueFull,
        ClientError::Request(_) => BusError::Closed,
    }
}

/// The latest retained payload of each topic an agent owns.
type Retained = Arc<Mutex<BTreeMap<String, Bytes>>>;

fn memory_send(
    tx: &mpsc::UnboundedSender<Outgoing>,
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
) -> Result<(), BusError> {
    tx.send(Outgoing {
        topic,
        payload,
        qos,
        retain,
    })
    .map_err(|_| BusError::Closed)
}

impl Outlet {
    /// Publishes a retained message (QoS 1) without waiting, and remembers it so that it is
    /// published again after every reconnection. For state that must survive a broker restart
    /// (status, chain head).
    pub fn publish_retained(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<(), BusError> {
        let (topic, payload) = (topic.into(), payload.into());
        // A poisoned lock only means another publisher panicked mid-insert; the map is intact.
        let mut retained = self.retained.lock().unwrap_or_else(|e| e.into_inner());
        retained.insert(topic.clone(), payload.clone());
        drop(retained);
        self.try_publish(topic, payload, QoS::AtLeastOnce, true)
    }

    /// Publishes, waiting for room in the outgoing queue.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), BusError> {
        match &self.inner {
            OutletInner::Mqtt(client) => client
                .publish_bytes(topic, qos, retain, payload.into())
                .await
                .map_err(client_error),
            OutletInner::Memory(tx) => memory_send(tx, topic.into(), payload.into(), qos, retain),
        }
    }

    /// Publishes without waiting; fails with [`BusError::QueueFull`] when the queue is full.
    pub fn try_publish(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), BusError> {
        match &self.inner {
            OutletInner::Mqtt(client) => client
                .try_publish(topic, qos, retain, payload.into())
                .map_err(client_error),
            OutletInner::Memory(tx) => memory_send(tx, topic.into(), payload.into(), qos, retain),
        }
    }
}

/// The far end of [`Bus::memory`]: what the agent published, and a way to feed it messages.
pub struct MemoryPeer {
    /// Everything the agent published, in order.
    pub published: mpsc::UnboundedReceiver<Outgoing>,
    /// Deliver a message to the agent as if from the broker.
    pub deliver: mpsc::Sender<Incoming>,
}

/// An agent's MQTT session.
pub struct Bus {
    outlet: Outlet,
    incoming: mpsc::Receiver<Incoming>,
    link: watch::Receiver<Link>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    broker: String,
}

impl Bus {
    /// Opens a session and keeps it open until [`Bus::close`]; subscribes to `subscriptions`
    /// after every connection. Returns at once: the connection is made in the background.
    pub fn connect(
        options: BusOptions,
        subscriptions: Vec<(String, QoS)>,
    ) -> Result<Bus, BusError> {
        let (presence_topic, online, offline) = options.presence_topic_and_payloads();
        let mqtt = options.mqtt_options(&presence_topic, &offline)?;
        let (client, mut eventloop) = AsyncClient::new(mqtt, options.queue);
        let retained = Retained::default();
        // MQTT is small request/answer packets: with Nagle's algorithm on (rumqttc's default),
        // each hop can wait for the peer's delayed ACK, tens of milliseconds per message.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (incoming_tx, incoming) = mpsc::channel(options.queue);
        let (link_tx, link) = watch::channel(Link::Down);
        let stop = CancellationToken::new();
        let session = Session {
            client: client.clone(),
            held: VecDeque::new(),
            held_bytes: 0,
            retained: retained.clone(),
            eventloop,
            subscriptions,
            presence: (presence_topic, online, offline),
            incoming: incoming_tx,
            link: link_tx,
            stop: stop.clone(),
            backoff: (options.backoff_min, options.backoff_max),
            broker: options.broker.to_string(),
            id: options.id.clone(),
        };
        let task = tokio::spawn(session.run());
        Ok(Bus {
            outlet: Outlet {
                inner: OutletInner::Mqtt(client),
                retained,
            },
            incoming,
            link,
            stop,
            task: Some(task),
            broker: options.broker.to_string(),
        })
    }

    /// A session wired to channels instead of a broker, for testing agent logic.
    pub fn memory(queue: usize) -> (Bus, MemoryPeer) {
        let (pub_tx, published) = mpsc::unbounded_channel();
        let (deliver, incoming) = mpsc::channel(queue);
        let (_link_tx, link) = watch::channel(Link::Up {
            ready: true,
            connections: 1,
        });
        let bus = Bus {
            outlet: Outlet {
                inner: OutletInner::Memory(pub_tx),
                retained: Retained::default(),
            },
            incoming,
            link,
            stop: CancellationToken::new(),
            task: None,
            broker: "memory".to_string(),
        };
        (bus, MemoryPeer { published, deliver })
    }

    /// A handle to publish with.
    pub fn outlet(&self) -> Outlet {
        self.outlet.clone()
    }

    /// The next message from the broker; `None` once the session is closed.
    pub async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Watches the link state.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }

    /// Waits until connected with every subscription acknowledged, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), BusError> {
        let mut link = self.link.clone();
        let ready = async {
            link.wait_for(|l| matches!(l, Link::Up { ready: true, .. }))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(BusError::Closed),
            Err(_) => Err(BusError::NotReady {
                broker: self.broker.clone(),
                waited: timeout,
            }),
        }
    }

    /// Publishes the offline presence, disconnects cleanly and stops the session task.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // The task bounds its own goodbye; this bound is only a safety net.
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                warn!(broker = %self.broker, "MQTT session did not stop in time");
            }
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Messages, and payload bytes, a session holds for a busy agent before it stops reading
/// from the broker. An agent is busy for a broker round trip or two (waiting for room to
/// publish), so this is far more than it needs, and it bounds the memory a flood can take.
const HELD_LIMIT: (usize, usize) = (4096, 16 << 20);

/// The background task owning the event loop.
///
/// It keeps driving the connection while the agent is busy: an agent waiting for room to
/// publish while the session waited for room in the agent's inbox was a deadlock. What arrives
/// while the inbox is full is held, in order, up to [`HELD_LIMIT`]. Messages are acknowledged
/// on receipt, as before: rumqttd sends a client nothing, not even the acknowledgements of
/// its own publishes, while that client owes it acknowledgements for a full window.
struct Session {
    client: AsyncClient,
    /// Received while the inbox was full, oldest first, and their payload bytes.
    held: VecDeque<Incoming>,
    held_bytes: usize,
    retained: Retained,
    eventloop: EventLoop,
    subscriptions: Vec<(String, QoS)>,
    presence: (String, Vec<u8>, Vec<u8>),
    incoming: mpsc::Sender<Incoming>,
    link: watch::Sender<Link>,
    stop: CancellationToken,
    backoff: (Duration, Duration),
    broker: String,
    id: String,
}

impl Session {
    async fn run(mut self) {
        let mut delay = self.backoff.0;
        let mut connections = 0u64;
        loop {
            let room = self.held.len() < HELD_LIMIT.0 && self.held_bytes < HELD_LIMIT.1;
            let event = tokio::select! {
                _ = self.stop.cancelled() => break,
                permit = self.incoming.reserve(), if !self.held.is_empty() => {
                    let Ok(permit) = permit else { break };
                    if let Some(msg) = self.held.pop_front() {
                        self.held_bytes -= msg.payload.len();
                        permit.send(msg);
                    }
                    continue;
                }
                event = self.eventloop.poll(), if room => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connections += 1;
                    delay = self.backoff.0;
                    info!(broker = %self.broker, id = %self.id, connections, "connected");
                    self.on_connected(connections);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        warn!(broker = %self.broker, refused, "broker refused subscriptions");
                    }
                    self.link.send_replace(Link::Up {
                        ready: true,
                        connections,
                    });
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Incoming {
                        topic: p.topic,
                        payload: p.payload,
                    };
                    let msg = if self.held.is_empty() {
                        match self.incoming.try_send(msg) {
                            Ok(()) => continue,
                            Err(mpsc::error::TrySendError::Full(msg)) => msg,
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    } else {
                        msg
                    };
                    self.held_bytes += msg.payload.len();
                    self.held.push_back(msg);
                    if self.held.len() >= HELD_LIMIT.0 || self.held_bytes >= HELD_LIMIT.1 {
                        warn!(broker = %self.broker, id = %self.id, held = self.held.len(),
                            "agent busy: no longer reading from the broker until it catches up");
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    self.link.send_replace(Link::Down);
                    let jitter = rand::rng().random_range(0..=delay.as_millis() as u64 / 4);
                    let wait = delay + Duration::from_millis(jitter);
                    warn!(broker = %self.broker, id = %self.id, cause = %err, retry_in = ?wait, "MQTT connection lost");
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    delay = (delay * 2).min(self.backoff.1);
                }
            }
        }
        self.goodbye().await;
    }

    fn on_connected(&mut self, connections: u64) {
        let (topic, online, _) = &self.presence;
        if let Err(e) = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, online.clone())
        {
            warn!(cause = %e, "cannot queue the online status");
        }
        let retained = self
            .retained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (topic, payload) in retained {
            if let Err(e) = self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, payload)
            {
                warn!(cause = %e, "cannot queue a retained message");
            }
        }
        let ready = self.subscriptions.is_empty();
        if !ready {
            let filters = self
                .subscriptions
                .iter()
                .map(|(f, q)| SubscribeFilter::new(f.clone(), *q));
            if let Err(e) = self.client.try_subscribe_many(filters) {
                warn!(cause = %e, "cannot queue the subscriptions");
            }
        }
        self.link.send_replace(Link::Up { ready, connections });
    }

    /// Publishes the offline presence and disconnects, bounded in time.
    async fn goodbye(mut self) {
        let was_up = matches!(self.link.send_replace(Link::Down), Link::Up { .. });
        if !was_up {
            // Nothing to say goodbye on; the will covers a session that never came back.
            return;
        }
        let (topic, _, offline) = &self.presence;
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, offline.clone())
            .and_then(|_| self.client.try_disconnect());
        if queued.is_err() {
            return;
        }
        let drain = async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(RumqttOutgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(1), drain)
            .await
            .is_err()
        {
            debug!(broker = %self.broker, "no clean disconnect within 1s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports_and_reject_nonsense() {
        let u: BrokerUrl = "mqtt://10.0.0.5:1884".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("10.0.0.5", 1884, false));
        let u: BrokerUrl = "mqtts://broker.example".parse().unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        let u: BrokerUrl = "localhost".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 1883));
        let u: BrokerUrl = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        assert_eq!(u.to_string(), "mqtt://[::1]:1999");
        for bad in [
            "http://x:1",
            "mqtt://:1883",
            "mqtt://h:port",
            "mqtt://h:1/path",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn options_debug_hides_the_password() {
        let mut o = BusOptions::new("localhost".parse().unwrap(), "a1", "averager");
        o.password = Some("hunter2".into());
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn memory_bus_carries_both_directions() {
        let (mut bus, mut peer) = Bus::memory(8);
        bus.outlet()
            .publish("t/out", b"hello".to_vec(), QoS::AtLeastOnce, true)
            .await
            .unwrap();
        let out = peer.published.recv().await.unwrap();
        assert_eq!((out.topic.as_str(), out.retain), ("t/out", true));
        peer.deliver
            .send(Incoming {
                topic: "t/in".into(),
                payload: Bytes::from_static(b"x"),
            })
            .await
            .unwrap();
        assert_eq!(bus.recv().await.unwrap().topic, "t/in");
        bus.wait_ready(Duration::from_millis(10)).await.unwrap();
    }
}
