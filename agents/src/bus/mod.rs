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
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, ClientError};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use options::{BrokerUrl, BusOptions, Presence};
pub use rumqttc::QoS;
use session::Session;

mod options;
mod session;

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
    /// The options cannot be used ([`BusOptions::validate`]).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// A message received from the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The topic it was published on.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    /// Delivered because it was retained (at subscription), not published live.
    pub retain: bool,
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
    /// may have restarted and lost it (the embedded one keeps retained messages in RAM only).
    /// Bounded by the agent's topics.
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
        mut subscriptions: Vec<(String, QoS)>,
    ) -> Result<Bus, BusError> {
        options.validate()?;
        let (presence_topic, online, offline) = options.presence_topic_and_payloads();
        if let Some((topic, _)) = &options.republish_on {
            subscriptions.push((topic.clone(), QoS::AtMostOnce));
        }
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
            republish_on: options.republish_on.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
                retain: false,
            })
            .await
            .unwrap();
        assert_eq!(bus.recv().await.unwrap().topic, "t/in");
        bus.wait_ready(Duration::from_millis(10)).await.unwrap();
    }
}
