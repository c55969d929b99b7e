//! What a broker must refuse or always answer: wildcard characters in a topic name
//! (MQTT-3.3.2-2) and UNSUBSCRIBE of any filter, subscribed or not (MQTT-3.10.4-4/5).

use std::time::Duration;

use super::target::{both, Target};
use crate::common::*;

/// PUBLISH to `wc/+`, `wc/#` or `wc/+/x` (retained, QoS 1) closes that connection (MQTT 5:
/// DISCONNECT 0x90, 0x82, 0x81 or 0x87, or a PUBACK refusing it); nothing is delivered or
/// retained.
async fn wildcard_topic_names_are_refused(t: &Target) {
    let addr = t.addr();
    let mut watcher = Raw::v5(addr, "wildcard-watcher").await;
    watcher.subscribe("wc/#", 1).await;
    let mut accepted = Vec::new();
    for version in [4, 5] {
        for topic in ["wc/+", "wc/#", "wc/+/x"] {
            let connect = Connect::new(version, &format!("wildcard-pub-{version}-{}", topic.len()));
            let mut client = Raw::open(addr, &connect).await.0;
            let mut message = Message::new(topic, b"wild", 1);
            message.retain = true;
            message.id = 1;
            client.send(&message.encode(version)).await;
            match client.recv_within(WAIT).await {
                None => {}
                Some(Packet::Disconnect(code)) => assert!(
                    matches!(code, 0x90 | 0x82 | 0x81 | 0x87),
                    "v{version} {topic}: DISCONNECT {code:#04x}"
                ),
                Some(Packet::Ack(4, 1, code)) if version == 5 && code >= 0x80 => {}
                Some(Packet::Ack(4, 1, 0)) => {
                    accepted.push(format!("v{version} {topic}"));
                    client.disconnect().await;
                }
                Some(other) => panic!("v{version} {topic}: {other:?}"),
            }
        }
    }
    watcher.publish1("wc/marker", b"marker").await;
    let delivered = watcher.until_marker(b"marker").await;
    let mut late = Raw::v4(addr, "wildcard-late").await;
    late.subscribe("wc/#", 1).await;
    watcher.publish1("wc/marker", b"marker").await;
    let linger = Duration::from_millis(300);
    let retained = late.around_marker(b"marker", linger).await;
    let topics = |ms: &[Message]| -> Vec<String> { ms.iter().map(|m| m.topic.clone()).collect() };
    assert!(
        accepted.is_empty(),
        "wildcard topic names accepted: {accepted:?}"
    );
    assert!(
        delivered.is_empty(),
        "nothing delivered: {:?}",
        topics(&delivered)
    );
    assert!(
        retained.is_empty(),
        "nothing retained: {:?}",
        topics(&retained)
    );
}
both!(wildcard_topic_names_are_refused);

/// UNSUBACK comes for a filter never subscribed; MQTT 5 says 0x11 "no subscription existed"
/// for it and 0x00 for one that was.
async fn unsuback_always(t: &Target) {
    let addr = t.addr();
    let mut v4 = Raw::v4(addr, "unsub-v4").await;
    assert!(v4.unsubscribe(&["never/subscribed"]).await.is_empty());
    v4.subscribe("unsub/t", 1).await;
    assert!(v4
        .unsubscribe(&["unsub/t", "never/subscribed"])
        .await
        .is_empty());

    // rmqtt 0.24 limitation: its UNSUBACK says 0x00 Success for every filter, also one
    // never subscribed (session.rs unsubscribes_v5), where MQTT 5 has 0x11.
    let never = if t.is_mosquitto() { 0x11 } else { 0x00 };
    let mut v5 = Raw::v5(addr, "unsub-v5").await;
    assert_eq!(v5.unsubscribe(&["never/subscribed"]).await, [never]);
    v5.subscribe("unsub/t", 1).await;
    let codes = v5.unsubscribe(&["unsub/t", "never/subscribed"]).await;
    assert_eq!(codes, [0x00, never]);

    // The subscription is really gone.
    let mut publisher = Raw::v4(addr, "unsub-pub").await;
    v5.subscribe("unsub/marker", 1).await;
    publisher.publish1("unsub/t", b"after").await;
    publisher.publish1("unsub/marker", b"marker").await;
    assert!(v5.until_marker(b"marker").await.is_empty());
}
both!(unsuback_always);
