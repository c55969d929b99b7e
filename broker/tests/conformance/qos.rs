//! QoS 0, 1 and 2 end to end: the delivered QoS is the minimum of the published QoS and the
//! granted one (MQTT-3.8.4-8, 5.0 §3.8.4), and QoS 2 is exactly once, even when the
//! publisher re-sends its PUBLISH before PUBREL (MQTT-4.3.3-9).

use super::target::{both, Target};
use crate::common::*;

/// Every (published QoS, subscribed QoS) pair, over both protocol versions crossed.
async fn delivered_qos_is_the_minimum_of_published_and_granted(t: &Target) {
    let addr = t.addr();
    for sub_version in [4, 5] {
        let pub_version = 9 - sub_version;
        let mut publisher = Raw::open(addr, &Connect::new(pub_version, "qos-pub"))
            .await
            .0;
        for granted in 0..=2u8 {
            let topic = format!("qos/v{sub_version}/granted{granted}");
            let id = format!("qos-sub-v{sub_version}-{granted}");
            let mut sub = Raw::open(addr, &Connect::new(sub_version, &id)).await.0;
            sub.subscribe(&topic, granted).await;
            for published in 0..=2u8 {
                let payload = format!("published at {published}");
                let code = publisher
                    .publish(Message::new(&topic, payload.as_bytes(), published))
                    .await;
                assert!(code < 0x80, "publish accepted: {code:#04x}");
            }
            publisher.publish1(&topic, b"marker").await;
            let got: Vec<(String, u8)> = sub
                .until_marker(b"marker")
                .await
                .into_iter()
                .map(|m| (String::from_utf8_lossy(&m.payload).into_owned(), m.qos))
                .collect();
            let want: Vec<(String, u8)> = (0..=2u8)
                .map(|p| (format!("published at {p}"), p.min(granted)))
                .collect();
            assert_eq!(
                got, want,
                "v{pub_version} → v{sub_version}, granted {granted}"
            );
            sub.disconnect().await;
        }
        publisher.disconnect().await;
    }
}
both!(delivered_qos_is_the_minimum_of_published_and_granted);

/// A QoS 2 PUBLISH re-sent with DUP before PUBREL is one message to subscribers.
async fn qos2_resent_before_pubrel_is_delivered_exactly_once(t: &Target) {
    let addr = t.addr();
    for version in [4, 5] {
        let topic = format!("qos2/once/v{version}");
        let mut sub = Raw::open(addr, &Connect::new(9 - version, "once-sub"))
            .await
            .0;
        sub.subscribe(&topic, 2).await;
        let mut publisher = Raw::open(addr, &Connect::new(version, "once-pub")).await.0;
        let mut message = Message::new(&topic, b"once", 2);
        message.id = 7;
        publisher.send(&message.encode(version)).await;
        assert!(publisher.ack(5, 7).await < 0x80, "PUBREC");
        message.dup = true;
        publisher.send(&message.encode(version)).await;
        let code = publisher.ack(5, 7).await;
        if t.is_mosquitto() || version == 4 {
            assert_eq!(code, 0, "PUBREC for the re-send");
        } else {
            // rmqtt 0.24 limitation: it answers the re-send with PUBREC 0x91 "Packet
            // Identifier in use" (session.rs, duplicate QoS 2), still delivering once.
            assert_eq!(code, 0x91, "rmqtt's PUBREC for a re-send");
        }
        // PUBREL completes the exchange the first PUBREC opened.
        publisher.send(&[0x62, 2, 0, 7]).await;
        publisher.ack(7, 7).await;
        publisher.publish1(&topic, b"marker").await;
        let got = sub.until_marker(b"marker").await;
        assert_eq!(got.len(), 1, "exactly once: {got:?}");
        assert_eq!((got[0].payload.as_slice(), got[0].qos), (&b"once"[..], 2));
        sub.disconnect().await;
        publisher.disconnect().await;
    }
}
both!(qos2_resent_before_pubrel_is_delivered_exactly_once);

/// rumqttc clients of both versions at QoS 2: 200 messages, each received exactly once.
async fn rumqttc_qos2_exactly_once_both_versions(t: &Target) {
    let addr = t.addr();
    let mut sub4 = TestClient::v4(addr, "rumqttc-q2-v4").await;
    let mut sub5 = TestClient::v5(addr, "rumqttc-q2-v5").await;
    sub4.subscribe_at("q2/rumqttc", 2).await;
    sub5.subscribe_at("q2/rumqttc", 2).await;
    let publisher = TestClient::v5(addr, "rumqttc-q2-pub").await;
    let sent: Vec<Vec<u8>> = (0..200).map(|i| format!("q2-{i}").into_bytes()).collect();
    for payload in &sent {
        publisher.publish_at("q2/rumqttc", 2, payload).await;
    }
    publisher.publish_at("q2/rumqttc", 2, b"marker").await;
    for sub in [&mut sub4, &mut sub5] {
        let mut got = Vec::new();
        loop {
            let (_, payload) = sub.next_publish().await;
            if payload == b"marker" {
                break;
            }
            got.push(payload);
        }
        assert_eq!(got, sent, "every message once, in order");
    }
}
both!(rumqttc_qos2_exactly_once_both_versions);
