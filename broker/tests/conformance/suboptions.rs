//! MQTT 5 subscription options (§3.8.3.1): no local (MQTT-3.8.3-3), retain as published
//! (MQTT-3.3.1-12/13) and retain handling 0, 1, 2 (MQTT-3.3.1-9..11).

use std::time::Duration;

use super::target::{both, Target};
use crate::common::*;

/// How long retained messages may trail a later live one.
const LINGER: Duration = Duration::from_millis(300);

fn retained(topic: &str, payload: &[u8]) -> Message {
    Message {
        retain: true,
        ..Message::new(topic, payload, 1)
    }
}

async fn subscribe_options(client: &mut Raw, filter: &str, options: u8) {
    let codes = client.subscribe_with(filter, options, Props::new()).await;
    assert_eq!(codes, [1], "SUBACK for {filter:?} options {options:#04x}");
}

async fn no_local_hides_a_clients_own_messages(t: &Target) {
    let addr = t.addr();
    let mut own = Raw::v5(addr, "no-local").await;
    subscribe_options(&mut own, "nl/t", sub_options(1, true, false, 0)).await;
    let mut other = Raw::v5(addr, "no-local-other").await;
    other.subscribe("nl/t", 1).await;
    own.publish1("nl/t", b"own").await;
    other.publish1("nl/t", b"marker").await;
    assert!(
        own.until_marker(b"marker").await.is_empty(),
        "own message not echoed"
    );
    assert_eq!(other.next().await.payload, b"own", "others still get it");
}
both!(no_local_hides_a_clients_own_messages);

async fn retain_as_published_keeps_the_retain_flag(t: &Target) {
    let addr = t.addr();
    let mut publisher = Raw::v5(addr, "rap-pub").await;
    publisher.publish(retained("rap/t", b"stored")).await;
    let mut plain = Raw::v5(addr, "rap-0").await;
    subscribe_options(&mut plain, "rap/t", sub_options(1, false, false, 0)).await;
    let mut rap = Raw::v5(addr, "rap-1").await;
    subscribe_options(&mut rap, "rap/t", sub_options(1, false, true, 0)).await;
    for client in [&mut plain, &mut rap] {
        let m = client.next().await;
        assert_eq!(
            (m.payload.as_slice(), m.retain),
            (&b"stored"[..], true),
            "on subscribe"
        );
    }
    publisher.publish(retained("rap/t", b"live")).await;
    let m = plain.next().await;
    assert_eq!(
        (m.payload.as_slice(), m.retain),
        (&b"live"[..], false),
        "RAP 0"
    );
    let m = rap.next().await;
    assert_eq!(
        (m.payload.as_slice(), m.retain),
        (&b"live"[..], true),
        "RAP 1"
    );
}
both!(retain_as_published_keeps_the_retain_flag);

async fn retain_handling_0_1_2(t: &Target) {
    let addr = t.addr();
    let mut publisher = Raw::v5(addr, "rh-pub").await;
    publisher.publish(retained("rh/t", b"stored")).await;
    // Subscribes twice with `handling` and returns the retained counts after each SUBACK.
    async fn twice(addr: std::net::SocketAddr, publisher: &mut Raw, handling: u8) -> [usize; 2] {
        let mut client = Raw::v5(addr, &format!("rh-{handling}")).await;
        let mut counts = [0; 2];
        for count in &mut counts {
            subscribe_options(&mut client, "rh/t", sub_options(1, false, false, handling)).await;
            publisher.publish1("rh/t", b"marker").await;
            *count = client.around_marker(b"marker", LINGER).await.len();
        }
        counts
    }
    assert_eq!(
        twice(addr, &mut publisher, 0).await,
        [1, 1],
        "0: on every subscribe"
    );
    assert_eq!(
        twice(addr, &mut publisher, 1).await,
        [1, 0],
        "1: only on a new subscription"
    );
    assert_eq!(twice(addr, &mut publisher, 2).await, [0, 0], "2: never");
}
both!(retain_handling_0_1_2);
