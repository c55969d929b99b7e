//! rumqttc clients of both protocol versions, reporting SUBACKs and publishes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::WAIT;

/// What a test client's event loop reports.
#[derive(Debug)]
pub enum Seen {
    /// A SUBACK arrived.
    SubAck,
    /// A PUBLISH arrived: topic and payload.
    Publish(String, Vec<u8>),
}

/// A rumqttc client (either protocol version) whose CONNACK has arrived; its event loop runs
/// in a task reporting SUBACKs and publishes.
pub struct TestClient {
    client: Either,
    seen: mpsc::UnboundedReceiver<Seen>,
}

enum Either {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl TestClient {
    /// Connects an MQTT 3.1.1 client with id `id`.
    pub async fn v4(addr: SocketAddr, id: &str) -> TestClient {
        use rumqttc::{Event, Outgoing, Packet};
        let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                let event = match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(c) = connected.take() {
                            let _ = c.send(());
                        }
                        continue;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Seen::Publish(p.topic.clone(), p.payload.to_vec())
                    }
                    // MQTT leaves closing after a DISCONNECT to the client (the broker only
                    // SHOULD close): end the event loop, which closes the socket.
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                let _ = tx.send(event);
            }
        });
        timeout(WAIT, connected_rx)
            .await
            .expect("v4 CONNACK timed out")
            .expect("v4 client connected");
        TestClient {
            client: Either::V4(client),
            seen,
        }
    }

    /// Connects an MQTT 5 client with id `id`.
    pub async fn v5(addr: SocketAddr, id: &str) -> TestClient {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::Event;
        use rumqttc::Outgoing;
        let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(4 << 20));
        let (client, mut events) = rumqttc::v5::AsyncClient::new(options, 100);
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                let event = match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(c) = connected.take() {
                            let _ = c.send(());
                        }
                        continue;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Publish(
                        String::from_utf8_lossy(&p.topic).into_owned(),
                        p.payload.to_vec(),
                    ),
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                let _ = tx.send(event);
            }
        });
        timeout(WAIT, connected_rx)
            .await
            .expect("v5 CONNACK timed out")
            .expect("v5 client connected");
        TestClient {
            client: Either::V5(client),
            seen,
        }
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        let ok = match &self.client {
            Either::V4(c) => c.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.is_ok(),
            Either::V5(c) => c
                .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .is_ok(),
        };
        assert!(ok, "subscribe request refused");
        timeout(WAIT, async {
            loop {
                match self.seen.recv().await {
                    Some(Seen::SubAck) => return,
                    Some(_) => continue,
                    None => panic!("client event loop ended before SUBACK"),
                }
            }
        })
        .await
        .expect("SUBACK timed out");
    }

    /// Subscribes at `qos` (0, 1 or 2) and waits for the SUBACK.
    pub async fn subscribe_at(&mut self, filter: &str, qos: u8) {
        let ok = match &self.client {
            Either::V4(c) => c.subscribe(filter, v4_qos(qos)).await.is_ok(),
            Either::V5(c) => c.subscribe(filter, v5_qos(qos)).await.is_ok(),
        };
        assert!(ok, "subscribe request refused");
        timeout(WAIT, async {
            while !matches!(self.seen.recv().await, Some(Seen::SubAck) | None) {}
        })
        .await
        .expect("SUBACK timed out");
    }

    /// Publishes at `qos` (0, 1 or 2), not retained.
    pub async fn publish_at(&self, topic: &str, qos: u8, payload: &[u8]) {
        let payload = payload.to_vec();
        let ok = match &self.client {
            Either::V4(c) => c.publish(topic, v4_qos(qos), false, payload).await.is_ok(),
            Either::V5(c) => c.publish(topic, v5_qos(qos), false, payload).await.is_ok(),
        };
        assert!(ok, "publish request refused");
    }

    /// Publishes at QoS 1.
    pub async fn publish(&self, topic: &str, payload: &[u8]) {
        let ok = match &self.client {
            Either::V4(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
                .await
                .is_ok(),
            Either::V5(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload.to_vec(),
                )
                .await
                .is_ok(),
        };
        assert!(ok, "publish request refused");
    }

    /// The next received publish (topic, payload), bounded by [`WAIT`].
    pub async fn next_publish(&mut self) -> (String, Vec<u8>) {
        timeout(WAIT, async {
            loop {
                match self.seen.recv().await {
                    Some(Seen::Publish(topic, payload)) => return (topic, payload),
                    Some(_) => continue,
                    None => panic!("client event loop ended before a publish"),
                }
            }
        })
        .await
        .expect("no publish in time")
    }

    /// Sends DISCONNECT.
    pub async fn disconnect(&self) {
        let _ = match &self.client {
            Either::V4(c) => c.disconnect().await.is_ok(),
            Either::V5(c) => c.disconnect().await.is_ok(),
        };
    }
}

/// Proves the broker still serves: a fresh v4 subscriber gets a message from a fresh v5
/// publisher.
pub async fn assert_broker_serves(addr: SocketAddr, tag: &str) {
    let mut sub = TestClient::v4(addr, &format!("probe-sub-{tag}")).await;
    let topic = format!("probe/{tag}");
    sub.subscribe(&topic).await;
    let publisher = TestClient::v5(addr, &format!("probe-pub-{tag}")).await;
    publisher.publish(&topic, b"alive").await;
    let (got_topic, payload) = sub.next_publish().await;
    assert_eq!(
        (got_topic.as_str(), payload.as_slice()),
        (topic.as_str(), &b"alive"[..])
    );
    sub.disconnect().await;
    publisher.disconnect().await;
}

fn v4_qos(qos: u8) -> rumqttc::QoS {
    rumqttc::qos(qos).expect("QoS 0, 1 or 2")
}

fn v5_qos(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    rumqttc::v5::mqttbytes::qos(qos).expect("QoS 0, 1 or 2")
}
