//! Persistent sessions: messages queued while the client is offline (MQTT-3.1.2-4/5), the
//! session-present flag (MQTT-3.2.2-1..3), and the MQTT 5 session expiry interval
//! (MQTT-3.1.2-23, §3.1.2.11.2).

use std::time::Duration;

use super::target::{both, Target};
use crate::common::*;

fn persistent(version: u8, id: &str, expiry: Option<u32>) -> Connect {
    let mut connect = Connect::new(version, id);
    connect.clean = false;
    if let Some(seconds) = expiry {
        connect.props = Props::new().u32(prop::SESSION_EXPIRY, seconds);
    }
    connect
}

/// Subscribes `topic` in a session `connect` opens, then goes offline.
async fn subscribe_and_leave(t: &Target, connect: &Connect, topic: &str) {
    let (mut client, _) = Raw::open(t.addr(), connect).await;
    client.subscribe(topic, 1).await;
    client.disconnect().await;
}

async fn publish_payloads(t: &Target, topic: &str, payloads: &[&str]) {
    let mut publisher = Raw::v4(t.addr(), "session-publisher").await;
    for payload in payloads {
        publisher.publish1(topic, payload.as_bytes()).await;
    }
    publisher.disconnect().await;
}

fn payloads(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.qos > 0)
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// 3.1.1 clean_session=false: QoS 1 messages published while offline arrive on reconnect,
/// in order; clean_session=true then discards the session.
async fn v311_persistent_session_queues_offline_messages(t: &Target) {
    let connect = persistent(4, "persist-v311", None);
    subscribe_and_leave(t, &connect, "sess/v311").await;
    let sent = ["q-0", "q-1", "q-2", "q-3", "q-4"];
    publish_payloads(t, "sess/v311", &sent).await;

    let (mut client, ack) = Raw::open(t.addr(), &connect).await;
    assert!(ack.session_present, "session present on reconnect");
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        got.push(client.next().await);
    }
    assert_eq!(payloads(&got), sent, "offline messages, in order");
    client.disconnect().await;

    let (client, ack) = Raw::open(t.addr(), &Connect::new(4, "persist-v311")).await;
    assert!(!ack.session_present, "clean session: no session present");
    client.disconnect().await;
    let (client, ack) = Raw::open(t.addr(), &connect).await;
    assert!(
        !ack.session_present,
        "the clean session discarded the old one"
    );
    client.disconnect().await;
    Raw::v4(t.addr(), "persist-v311").await.disconnect().await;
}
both!(v311_persistent_session_queues_offline_messages);

/// MQTT 5: a session with an expiry interval outlives the connection and queues; one with
/// none (0) ends with it; one of 1 s is gone after it expired.
async fn v5_session_expiry_interval_is_honoured(t: &Target) {
    let kept = persistent(5, "expiry-60", Some(60));
    subscribe_and_leave(t, &kept, "sess/v5").await;
    let zero = persistent(5, "expiry-0", None);
    subscribe_and_leave(t, &zero, "sess/v5").await;
    let short = persistent(5, "expiry-1", Some(1));
    subscribe_and_leave(t, &short, "sess/v5").await;
    publish_payloads(t, "sess/v5", &["while offline"]).await;

    let (mut client, ack) = Raw::open(t.addr(), &kept).await;
    assert!(ack.session_present, "expiry 60 s: session kept");
    assert_eq!(payloads(&[client.next().await]), ["while offline"]);
    client.disconnect().await;

    let (client, ack) = Raw::open(t.addr(), &zero).await;
    assert!(
        !ack.session_present,
        "expiry 0: session ended with the connection"
    );
    client.disconnect().await;

    // The expiry itself is what is tested: let 1 s pass (plus margin).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (client, ack) = Raw::open(t.addr(), &short).await;
    assert!(!ack.session_present, "expiry 1 s: session gone 2.5 s later");
    client.disconnect().await;
    Raw::v5(t.addr(), "expiry-60").await.disconnect().await;
}
both!(v5_session_expiry_interval_is_honoured);
