//! Helpers shared by the broker's integration tests: brokers on free ports, raw MQTT bytes,
//! rumqttc clients for both protocol versions, and mosquitto client processes.
// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code, unused_imports)]

mod certs;
mod clients;
mod mosquitto;
mod raw;
mod reference;
mod users;
pub mod wire;

pub use certs::*;
pub use clients::*;
pub use mosquitto::*;
pub use raw::*;
pub use reference::*;
pub use users::*;
pub use wire::{prop, sub_options, Connect, Message, Props, Value, Will};

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
/// own message back: proof that the broker serves this very connection.
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
