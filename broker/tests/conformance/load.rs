//! Load a broker must take without refusing or losing anything: thousands of sequential
//! connects with distinct ids (crash 4 of issue 11) and a subscriber that keeps up with a
//! long QoS 1 stream.
//!
//! CI-sized by default; the full counts of the issue run with `--ignored`
//! (`cargo test -p wattchain-broker --test conformance -- --ignored load::`).

use std::collections::HashSet;

use super::probe::serves_both;
use super::target::{both, Setup, Target};
use crate::common::*;

/// `count` connect/DISCONNECT cycles, alternating 3.1.1 and 5, every id new: none refused;
/// then an early id reconnects and both versions still serve.
async fn sequential_connects(t: &Target, count: usize) {
    let addr = t.addr();
    let mut refused = Vec::new();
    for i in 0..count {
        let version = if i % 2 == 0 { 4 } else { 5 };
        let (client, ack) = Raw::connect(addr, &Connect::new(version, &format!("seq-{i}"))).await;
        if ack.code != 0 {
            refused.push((i, ack.code));
        }
        client.disconnect().await;
    }
    assert!(
        refused.is_empty(),
        "{} of {count} refused: {refused:?}",
        refused.len()
    );
    Raw::v4(addr, "seq-1").await.disconnect().await;
    serves_both(addr, false).await;
}

async fn sequential_connects_with_distinct_ids(t: &Target) {
    sequential_connects(t, 2_000).await;
}
both!(sequential_connects_with_distinct_ids);

async fn ten_thousand_sequential_connects(t: &Target) {
    sequential_connects(t, 10_000).await;
}
both!(ignored ten_thousand_sequential_connects);

/// One client id, 200 connect/DISCONNECT cycles back to back, alternating versions: every
/// CONNECT accepted (a closed session's id is free again at once).
async fn same_id_reconnects_at_once(t: &Target) {
    let addr = t.addr();
    let mut refused = Vec::new();
    for i in 0..200 {
        let version = if i % 2 == 0 { 4 } else { 5 };
        let (client, ack) = Raw::connect(addr, &Connect::new(version, "same-id")).await;
        if ack.code != 0 {
            refused.push((i, ack.code));
        }
        client.disconnect().await;
    }
    if t.is_mosquitto() {
        assert!(
            refused.is_empty(),
            "{} of 200 refused: {refused:?}",
            refused.len()
        );
    } else {
        // Finding F6 (notes/conformance-findings.md): rmqtt 0.24 refuses some of these with
        // "server unavailable" (3.1.1: 3, MQTT 5: 0x88), 12 of 200 in one run, while the
        // previous session of the id is still being closed; a retry is accepted. Bounded
        // here so that a regression shows; fails never once F6 is fixed — then assert zero.
        assert!(
            refused.len() < 40 && refused.iter().all(|(_, code)| matches!(code, 3 | 0x88)),
            "{} of 200 refused: {refused:?}",
            refused.len()
        );
    }
    serves_both(addr, false).await;
}
both!(same_id_reconnects_at_once);

/// A rumqttc subscriber that keeps up gets every one of `count` QoS 1 messages from a rumqttc
/// publisher, each once.
async fn keeping_up(t: &Target, count: usize) {
    let addr = t.addr();
    let mut sub = TestClient::v4(addr, "keeps-up").await;
    sub.subscribe("stream/q1").await;
    let publisher = TestClient::v5(addr, "stream-pub").await;
    let sending = tokio::spawn(async move {
        for i in 0..count {
            publisher
                .publish("stream/q1", &(i as u64).to_be_bytes())
                .await;
        }
        publisher
    });
    let mut seen = HashSet::with_capacity(count);
    let mut duplicates = 0usize;
    while seen.len() < count {
        let (_, payload) = sub.next_publish().await;
        let i = u64::from_be_bytes(payload.as_slice().try_into().expect("8-byte payload"));
        if !seen.insert(i) {
            duplicates += 1;
        }
    }
    assert_eq!(
        (seen.len(), duplicates),
        (count, 0),
        "all of {count}, none twice"
    );
    let publisher = sending.await.expect("publisher task");
    publisher.disconnect().await;
    sub.disconnect().await;
}

async fn subscriber_keeping_up_gets_every_qos1_message(t: &Target) {
    keeping_up(t, 50_000).await;
}
/// Both brokers with the same per-session queue (ours: `limits.max_queued_messages`, 100 000
/// by default): at mosquitto's default of 1000 it drops whenever this debug-built subscriber
/// falls a second behind on a loaded 2-core machine, a configured limit, not what this case
/// is about.
const SAME_QUEUE: Setup = Setup {
    users: false,
    all_listeners: false,
    mosquitto: "max_queued_messages 100000\n",
    ours: None,
    exclusive: false,
};
both!(subscriber_keeping_up_gets_every_qos1_message, SAME_QUEUE);

async fn subscriber_keeping_up_gets_all_500k_qos1_messages(t: &Target) {
    keeping_up(t, 500_000).await;
}
both!(ignored subscriber_keeping_up_gets_all_500k_qos1_messages, SAME_QUEUE);
