//! The background task that owns rumqttc's event loop for one [`Bus`](super::Bus).

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rumqttc::{
    AsyncClient, Event, EventLoop, Outgoing as RumqttOutgoing, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Incoming, Link, Retained};

/// How long a closing session waits for its last publishes to be acknowledged and its
/// DISCONNECT to leave.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// A filter no agent subscribes to: unsubscribing from it is the closing session's marker.
const GOODBYE_MARKER: &str = "$wattchain-goodbye";

/// Messages, and payload bytes, a session holds for a busy agent before it stops reading
/// from the broker. An agent is busy for a broker round trip or two (waiting for room to
/// publish), so this is far more than it needs, and it bounds the memory a flood can take.
const HELD_LIMIT: (usize, usize) = (4096, 16 << 20);

/// The background task owning the event loop.
///
/// It keeps driving the connection while the agent is busy: an agent waiting for room to
/// publish while the session waited for room in the agent's inbox was a deadlock. What arrives
/// while the inbox is full is held, in order, up to [`HELD_LIMIT`]. Messages are acknowledged
/// on receipt: a broker that waits for acknowledgements of a full in-flight window sends
/// that client nothing more, not even the acknowledgements of its own publishes.
pub(super) struct Session {
    pub(super) client: AsyncClient,
    /// Received while the inbox was full, oldest first, and their payload bytes.
    pub(super) held: VecDeque<Incoming>,
    pub(super) held_bytes: usize,
    pub(super) retained: Retained,
    pub(super) eventloop: EventLoop,
    pub(super) subscriptions: Vec<(String, QoS)>,
    pub(super) presence: (String, Vec<u8>, Vec<u8>),
    pub(super) republish_on: Option<(String, Vec<u8>)>,
    pub(super) incoming: mpsc::Sender<Incoming>,
    pub(super) link: watch::Sender<Link>,
    pub(super) stop: CancellationToken,
    pub(super) backoff: (Duration, Duration),
    pub(super) broker: String,
    pub(super) id: String,
}

impl Session {
    pub(super) async fn run(mut self) {
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
                    if connections > 1 {
                        metrics::counter!(crate::metrics::BUS_RECONNECTS, "agent" => self.id.clone()).increment(1);
                    }
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
                Ok(Event::Incoming(Packet::Publish(p)))
                    if self
                        .republish_on
                        .as_ref()
                        .is_some_and(|(topic, _)| p.topic == *topic) =>
                {
                    // Never handed to the agent, which does not read this topic: anything
                    // else published there (Home Assistant's `offline`) would fill its inbox.
                    let trigger = self.republish_on.as_ref().map(|(_, payload)| payload);
                    if trigger.is_some_and(|payload| p.payload == payload[..]) {
                        debug!(broker = %self.broker, id = %self.id, topic = %p.topic, "re-publishing retained state on request");
                        self.republish_retained();
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Incoming {
                        topic: p.topic,
                        payload: p.payload,
                        retain: p.retain,
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
        self.republish_retained();
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

    /// Publishes the latest payload of every retained topic the agent owns.
    fn republish_retained(&self) {
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
    }

    /// Publishes the offline presence (or the agent's own last word on its presence topic) and
    /// disconnects, bounded in time.
    async fn goodbye(mut self) {
        let was_up = matches!(self.link.send_replace(Link::Down), Link::Up { .. });
        if !was_up {
            // Nothing to say goodbye on; the will covers a session that never came back.
            return;
        }
        let (topic, _, offline) = &self.presence;
        let last_word = self
            .retained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned();
        let farewell = last_word.unwrap_or_else(|| offline.clone().into());
        // The farewell, then an UNSUBSCRIBE of a filter we never had: requests leave in order,
        // so its UNSUBACK means the broker has read every publish queued before it; with every
        // PUBACK in too, the DISCONNECT cannot overtake them. A broker may drop the messages a
        // client has not had acknowledged when it disconnects (rmqtt does), so a short-lived
        // client such as `cabinet forget` would lose its last publishes.
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, farewell)
            .and_then(|_| self.client.try_unsubscribe(GOODBYE_MARKER));
        if queued.is_err() {
            return;
        }
        let drain = async {
            let mut marked = false;
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => marked = true,
                    Ok(Event::Outgoing(RumqttOutgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
                if marked && self.eventloop.state.inflight() == 0 {
                    if self.client.try_disconnect().is_err() {
                        return;
                    }
                    marked = false;
                }
            }
        };
        if tokio::time::timeout(GOODBYE_TIMEOUT, drain).await.is_err() {
            debug!(broker = %self.broker, "no clean disconnect within {GOODBYE_TIMEOUT:?}");
        }
    }
}
