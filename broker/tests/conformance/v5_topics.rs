//! MQTT 5 topic aliases in both directions (§3.3.2.3.4) and message expiry (§3.3.2.3.3).

use std::collections::HashMap;
use std::time::Duration;

use super::target::{both, Target};
use crate::common::*;

fn aliased(topic: &str, alias: u16, payload: &[u8]) -> Message {
    Message {
        props: Props::new().u16(prop::TOPIC_ALIAS, alias),
        ..Message::new(topic, payload, 1)
    }
}

/// A client sets an alias with a topic, uses it with an empty topic, and re-maps it; alias 0
/// and an alias above the broker's maximum are protocol errors (MQTT-3.3.2-8/9).
async fn topic_aliases_from_the_client(t: &Target) {
    let addr = t.addr();
    let mut sub = Raw::v4(addr, "alias-watcher").await;
    sub.subscribe("alias/#", 1).await;
    let (mut client, ack) = Raw::open(addr, &Connect::new(5, "alias-client")).await;
    let max = ack.props.int(prop::TOPIC_ALIAS_MAXIMUM).unwrap_or(0) as u16;
    assert!(
        max >= 1,
        "CONNACK Topic Alias Maximum {max}: client aliases accepted"
    );
    for (topic, payload) in [("alias/a", "a1"), ("", "a2"), ("alias/b", "b1"), ("", "b2")] {
        let code = client.publish(aliased(topic, 1, payload.as_bytes())).await;
        assert!(code < 0x80, "PUBACK {code:#04x} for {topic:?}");
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = sub.next().await;
        got.push((m.topic, m.payload));
    }
    let want: Vec<(String, Vec<u8>)> = [
        ("alias/a", "a1"),
        ("alias/a", "a2"),
        ("alias/b", "b1"),
        ("alias/b", "b2"),
    ]
    .iter()
    .map(|(t, p)| (t.to_string(), p.as_bytes().to_vec()))
    .collect();
    assert_eq!(got, want, "aliases resolved by the broker");
    client.disconnect().await;

    let over = max.checked_add(1);
    for bad in std::iter::once(0).chain(over) {
        let mut client = Raw::v5(addr, &format!("alias-bad-{bad}")).await;
        client
            .send(&aliased("alias/c", bad, b"bad").encode(5))
            .await;
        let (reason, _) = client.closed().await;
        assert!(
            matches!(reason, None | Some(0x94) | Some(0x82)),
            "alias {bad}: closed, DISCONNECT 0x94 if any, got {reason:?}"
        );
    }
    sub.publish1("alias/m", b"marker").await;
    assert!(
        sub.until_marker(b"marker").await.is_empty(),
        "invalid aliases not delivered"
    );
}
both!(topic_aliases_from_the_client);

/// Messages to a client that allows 2 aliases resolve to the topics published, with aliases
/// in 1..=2 (MQTT-3.3.2-10/11); a client allowing none gets no alias (MQTT-3.3.2-9). From
/// publishers of both versions.
async fn topic_aliases_to_the_client(t: &Target) {
    let addr = t.addr();
    for pub_version in [5, 4] {
        let id = format!("alias-receiver-{pub_version}");
        let mut connect = Connect::new(5, &id);
        connect.props = Props::new().u16(prop::TOPIC_ALIAS_MAXIMUM, 2);
        let mut receiver = Raw::open(addr, &connect).await.0;
        receiver.subscribe("aw/+", 1).await;
        let mut plain = Raw::v5(addr, "alias-none").await;
        plain.subscribe("aw/+", 1).await;
        let mut publisher = Raw::open(addr, &Connect::new(pub_version, "alias-pub"))
            .await
            .0;
        let sent: Vec<String> = [0, 1, 0, 2, 1, 0, 3, 2, 2, 0]
            .iter()
            .map(|i| format!("aw/{i}"))
            .collect();
        for topic in &sent {
            publisher.publish1(topic, topic.as_bytes()).await;
        }
        let mut aliases: HashMap<u32, String> = HashMap::new();
        for topic in &sent {
            let m = receiver.next().await;
            let resolved = match m.props.int(prop::TOPIC_ALIAS) {
                Some(alias) => {
                    assert!((1..=2).contains(&alias), "alias {alias} within the maximum");
                    if !m.topic.is_empty() {
                        aliases.insert(alias, m.topic.clone());
                    }
                    aliases.get(&alias).cloned().expect("alias set before use")
                }
                None => m.topic.clone(),
            };
            let context = format!("from a v{pub_version} publisher: {m:?}");
            assert_eq!(
                (&resolved, m.payload.as_slice()),
                (topic, topic.as_bytes()),
                "{context}"
            );
            let m = plain.next().await;
            assert_eq!((&m.topic, m.props.int(prop::TOPIC_ALIAS)), (topic, None));
        }
        for client in [receiver, plain, publisher] {
            client.disconnect().await;
        }
    }
}
both!(topic_aliases_to_the_client);

fn expiring(topic: &str, payload: &[u8], expiry: Option<u32>, retain: bool) -> Message {
    let mut message = Message::new(topic, payload, 1);
    message.retain = retain;
    if let Some(seconds) = expiry {
        message.props = Props::new().u32(prop::MESSAGE_EXPIRY, seconds);
    }
    message
}

/// A message past its expiry interval is not delivered, queued or retained; one delivered
/// later carries the interval minus the time it waited (MQTT-3.3.2-5/6).
async fn message_expiry_interval(t: &Target) {
    let addr = t.addr();
    let mut connect = Connect::new(5, "expiry-offline");
    connect.clean = false;
    connect.props = Props::new().u32(prop::SESSION_EXPIRY, 60);
    let mut offline = Raw::open(addr, &connect).await.0;
    offline.subscribe("exp/q", 1).await;
    offline.disconnect().await;

    let mut publisher = Raw::v5(addr, "expiry-pub").await;
    for message in [
        expiring("exp/q", b"short", Some(1), false),
        expiring("exp/q", b"long", Some(60), false),
        expiring("exp/q", b"forever", None, false),
        expiring("exp/r/short", b"short", Some(1), true),
        expiring("exp/r/long", b"long", Some(60), true),
    ] {
        assert!(publisher.publish(message).await < 0x80);
    }
    // The expiry is what is tested: let the 1 s interval pass.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (mut client, ack) = Raw::open(addr, &connect).await;
    assert!(ack.session_present);
    // The queued messages first (rmqtt may send a live message published now before them),
    // then a marker, and nothing else.
    let mut queued = vec![client.next().await, client.next().await];
    publisher.publish1("exp/q", b"marker").await;
    queued.extend(
        client
            .around_marker(b"marker", Duration::from_millis(300))
            .await,
    );
    let got: Vec<(&[u8], Option<u32>)> = queued
        .iter()
        .map(|m| (m.payload.as_slice(), m.props.int(prop::MESSAGE_EXPIRY)))
        .collect();
    assert_eq!(got.len(), 2, "the expired one was dropped: {got:?}");
    assert_eq!((got[0].0, got[1]), (&b"long"[..], (&b"forever"[..], None)));
    let left = got[0].1.expect("expiry forwarded");
    assert!(left <= 58, "expiry reduced by the 2.5 s waited: {left}");
    client.disconnect().await;

    // Retained messages may trail a later live one (see retained.rs): wait for the one
    // that must come, then a marker, and check the expired one never came.
    let mut sub = Raw::v5(addr, "expiry-retained").await;
    sub.subscribe("exp/r/#", 1).await;
    let first = sub.next().await;
    let long = if t.is_mosquitto() {
        first
    } else {
        // Finding F5 (notes/conformance-findings.md): rmqtt-retainer, configured to keep
        // retained messages without an expiry, ignores every retained message's own expiry.
        // Fails once F5 is fixed: then remove this branch.
        let second = sub.next().await;
        let (long, expired) = if first.topic == "exp/r/long" {
            (first, second)
        } else {
            (second, first)
        };
        assert_eq!(
            expired.topic, "exp/r/short",
            "rmqtt still delivers the expired one"
        );
        long
    };
    assert_eq!(long.topic, "exp/r/long", "the unexpired retained message");
    let left = long
        .props
        .int(prop::MESSAGE_EXPIRY)
        .expect("expiry forwarded");
    if t.is_mosquitto() {
        assert!(
            left <= 58,
            "retained expiry reduced by the 2.5 s waited: {left}"
        );
    } else {
        // Finding F5 too: rmqtt forwards a retained message's expiry barely reduced (59 or
        // 60 after 2.5 s; MQTT-3.3.2-6 wants the time waited taken off).
        assert!(left <= 60, "rmqtt: retained expiry {left}");
    }
    publisher.publish1("exp/r/marker", b"marker").await;
    let more = sub
        .around_marker(b"marker", Duration::from_millis(300))
        .await;
    assert!(more.is_empty(), "expired retained message gone: {more:?}");
    Raw::v5(addr, "expiry-offline").await.disconnect().await;
}
both!(message_expiry_interval);
