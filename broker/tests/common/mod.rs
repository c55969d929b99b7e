//! Helpers shared by the broker's integration tests: brokers on free ports, raw MQTT bytes,
//! rumqttc clients for both protocol versions, and mosquitto client processes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;
use wattchain_broker::{Broker, BrokerConfig};

/// Bound on every single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A config listening on a free loopback port.
pub fn test_config() -> BrokerConfig {
    BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..BrokerConfig::default()
    }
}

/// Starts a broker or fails the test.
pub async fn start(config: BrokerConfig) -> Broker {
    timeout(WAIT, wattchain_broker::start(config))
        .await
        .expect("broker start timed out")
        .expect("broker starts")
}

/// Encodes an MQTT remaining length.
pub fn varint(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A raw CONNECT: `level` 4 or 5 ("MQTT") or 3 ("MQIsdp"), clean session.
pub fn connect_packet(level: u8, client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::new();
    string(if level == 3 { b"MQIsdp" } else { b"MQTT" }, &mut body);
    body.push(level);
    body.push(0x02 | if login.is_some() { 0xc0 } else { 0 });
    body.extend_from_slice(&30u16.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    string(client_id.as_bytes(), &mut body);
    if let Some((user, pass)) = login {
        string(user.as_bytes(), &mut body);
        string(pass.as_bytes(), &mut body);
    }
    let mut packet = vec![0x10];
    varint(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// Connects raw TCP, sends `bytes`, and returns the stream.
pub async fn raw_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Reads until the peer closes (bounded), returning everything received.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("peer did not close in time")
        .ok();
    out
}

/// Sends a raw CONNECT and returns the CONNACK's return/reason code and the open stream.
pub async fn raw_connack(addr: SocketAddr, connect: &[u8]) -> (u8, TcpStream) {
    let mut stream = raw_send(addr, connect).await;
    let (kind, body) = raw_read_packet(&mut stream).await;
    assert_eq!(kind, 0x20, "expected CONNACK, got {kind:#04x} {body:02x?}");
    let code = *body.get(1).expect("CONNACK carries a code");
    (code, stream)
}

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
        use rumqttc::{Event, Packet};
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
/// publisher through the front door.
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

/// A mosquitto_sub process whose stdout lines (with -d debug output) arrive on a channel;
/// killed when dropped.
pub struct MosquittoSub {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub -d -V <version> -q 1 -t <filter>` and waits for its SUBACK.
    pub async fn start(addr: SocketAddr, version: &str, id: &str, filter: &str) -> MosquittoSub {
        // mosquitto_sub block-buffers a piped stdout; stdbuf makes it flush every line.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-d",
                "-h",
                &addr.ip().to_string(),
                "-p",
                &addr.port().to_string(),
            ])
            .args(["-V", version, "-q", "1", "-i", id, "-t", filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("stdbuf (coreutils) must be installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sub = MosquittoSub { child, lines };
        // `-d` prints this after the SUBACK; payload lines follow it.
        sub.wait_for(|line| line.starts_with("Subscribed (mid:"))
            .await;
        sub
    }

    /// Waits (bounded) for a line matching `pred` and returns it.
    pub async fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        timeout(WAIT, async {
            loop {
                match self.lines.recv().await {
                    Some(line) if pred(&line) => return line,
                    Some(_) => continue,
                    None => panic!("mosquitto_sub exited (is it installed?)"),
                }
            }
        })
        .await
        .expect("mosquitto_sub line timed out")
    }

    /// The next payload line (not debug output), bounded by [`WAIT`].
    pub async fn next_payload(&mut self) -> String {
        self.wait_for(|line| !line.starts_with("Client ")).await
    }

    /// Payload lines (not debug output) received so far, without waiting.
    pub fn drain_payloads(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            if !line.starts_with("Client ") {
                out.push(line);
            }
        }
        out
    }

    /// Kills the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Runs mosquitto_pub to completion (bounded) and asserts it succeeded.
pub async fn mosquitto_pub(addr: SocketAddr, version: &str, topic: &str, messages: &[String]) {
    mosquitto_pub_with(addr, version, topic, messages, &[]).await
}

/// [`mosquitto_pub`] with extra command-line arguments (credentials, TLS).
pub async fn mosquitto_pub_with(
    addr: SocketAddr,
    version: &str,
    topic: &str,
    messages: &[String],
    extra: &[&str],
) {
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(extra)
        .args(["-V", version, "-q", "1", "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .expect("mosquitto_pub must be installed (tests fail rather than skip without it)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("feed mosquitto_pub");
    drop(stdin);
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .expect("mosquitto_pub timed out")
        .expect("mosquitto_pub ran");
    assert!(
        output.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads one whole MQTT packet: (first header byte, body).
pub async fn raw_read_packet(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    timeout(WAIT, async {
        let kind = stream.read_u8().await.expect("packet type");
        let mut remaining = 0usize;
        for shift in (0..4).map(|i| 7 * i) {
            let byte = stream.read_u8().await.expect("remaining length");
            remaining |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; remaining];
        stream.read_exact(&mut body).await.expect("packet body");
        (kind, body)
    })
    .await
    .expect("packet timed out")
}

/// Subscribes a raw MQTT 3.1.1 connection at QoS 0 and waits for the SUBACK.
pub async fn raw_subscribe_v4(stream: &mut TcpStream, filter: &str) {
    let mut body = vec![0, 1];
    string(filter.as_bytes(), &mut body);
    body.push(0);
    let mut packet = vec![0x82];
    varint(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await.expect("SUBSCRIBE");
    let (kind, body) = raw_read_packet(stream).await;
    assert_eq!(
        (kind, body.last().copied()),
        (0x90, Some(0)),
        "SUBACK granting QoS 0"
    );
}

/// A QoS 0 MQTT 3.1.1 PUBLISH.
pub fn publish_packet_v4(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic.as_bytes(), &mut body);
    body.extend_from_slice(payload);
    let mut packet = vec![0x30];
    varint(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// A raw 3.1.1 connection that has subscribed to `topic` and publishes to it, receiving its
/// own message back: proof that rumqttd serves this very connection.
pub async fn raw_round_trip_v4(stream: &mut TcpStream, topic: &str) {
    raw_subscribe_v4(stream, topic).await;
    stream
        .write_all(&publish_packet_v4(topic, b"echo"))
        .await
        .expect("PUBLISH");
    let (kind, body) = raw_read_packet(stream).await;
    assert_eq!(kind & 0xf0, 0x30, "expected PUBLISH back");
    assert!(body.ends_with(b"echo"), "payload echoed");
}
