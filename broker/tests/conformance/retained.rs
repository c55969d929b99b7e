//! Retained messages: set, replace, clear with an empty payload (MQTT-3.3.1-5..11), and far
//! more than 100 of them delivered to one new subscriber.

use std::time::Duration;

use super::target::{both, Target};
use crate::common::*;

fn retained(topic: &str, payload: &[u8]) -> Message {
    Message {
        retain: true,
        ..Message::new(topic, payload, 1)
    }
}

/// What a new subscriber to `filter` receives before a live marker: the retained messages.
async fn retained_for_new_subscriber(
    t: &Target,
    version: u8,
    id: &str,
    filter: &str,
) -> Vec<Message> {
    let mut sub = Raw::open(t.addr(), &Connect::new(version, id)).await.0;
    sub.subscribe(filter, 1).await;
    let mut marker = Raw::v4(t.addr(), &format!("{id}-marker")).await;
    marker
        .publish1(
            &format!("{}/marker", filter.trim_end_matches("/#")),
            b"marker",
        )
        .await;
    // Retained messages may trail the marker (rmqtt's retainer sends from its own task).
    let got = sub
        .around_marker(b"marker", Duration::from_millis(300))
        .await;
    sub.disconnect().await;
    marker.disconnect().await;
    got
}

async fn retained_set_replace_clear(t: &Target) {
    let addr = t.addr();
    let mut publisher = Raw::v5(addr, "retain-pub").await;
    publisher.publish(retained("ret/a/x", b"first")).await;
    publisher.publish(retained("ret/a/x", b"second")).await;
    for (version, id) in [(4, "ret-v4"), (5, "ret-v5")] {
        let got = retained_for_new_subscriber(t, version, id, "ret/a/#").await;
        let got: Vec<(&str, &[u8], bool)> = got
            .iter()
            .map(|m| (m.topic.as_str(), m.payload.as_slice(), m.retain))
            .collect();
        assert_eq!(
            got,
            vec![("ret/a/x", &b"second"[..], true)],
            "replaced, v{version}"
        );
    }

    publisher.publish(retained("ret/a/x", b"")).await;
    let got = retained_for_new_subscriber(t, 4, "ret-cleared", "ret/a/#").await;
    assert!(
        got.is_empty(),
        "cleared by an empty retained payload: {got:?}"
    );

    // A live subscriber sees the clearing message itself, not retained (MQTT-3.3.1-9).
    let mut live = Raw::v4(addr, "ret-live").await;
    live.subscribe("ret/b", 1).await;
    publisher.publish(retained("ret/b", b"set")).await;
    let message = live.next().await;
    assert_eq!(
        (message.payload.as_slice(), message.retain),
        (&b"set"[..], false)
    );
    publisher.disconnect().await;
}
both!(retained_set_replace_clear);

/// 500 retained topics all reach one new subscriber of `ret/many/#`.
async fn five_hundred_retained_reach_a_new_subscriber(t: &Target) {
    const COUNT: usize = 500;
    let mut publisher = Raw::v4(t.addr(), "many-pub").await;
    // Pipelined: every PUBLISH first, then every PUBACK.
    let mut ids = Vec::new();
    for i in 0..COUNT {
        let mut message = retained(&format!("ret/many/{i}"), format!("v{i}").as_bytes());
        message.id = i as u16 + 1;
        ids.push(message.id);
        publisher.send(&message.encode(4)).await;
    }
    for id in ids {
        publisher.ack(4, id).await;
    }
    // Retained messages may come after a later live message (rmqtt's retainer sends them
    // from its own task), so wait for all of them, then check nothing more comes.
    let mut sub = Raw::v5(t.addr(), "many-sub").await;
    sub.subscribe("ret/many/#", 1).await;
    let mut topics = Vec::new();
    while topics.len() < COUNT {
        let m = sub.next().await;
        assert!(m.retain, "retain flag set on {}", m.topic);
        topics.push(m.topic);
    }
    publisher.publish1("ret/many/marker", b"marker").await;
    assert!(
        sub.until_marker(b"marker").await.is_empty(),
        "no more than {COUNT}"
    );
    topics.sort();
    let mut want: Vec<String> = (0..COUNT).map(|i| format!("ret/many/{i}")).collect();
    want.sort();
    assert_eq!(topics, want, "all {COUNT} retained messages, each once");
    publisher.disconnect().await;
}
both!(five_hundred_retained_reach_a_new_subscriber);
