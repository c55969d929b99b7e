//! The gate's decisions on hand-built packets: what passes, what is answered, what closes.

use super::*;

fn gate(version: ProtocolVersion) -> Gate {
    let permissions = Permissions {
        publish: vec!["wattchain/cabinet/c1/#".into()],
        subscribe: Some(vec!["wattchain/#".into()]),
    };
    Gate::new(
        Arc::new(permissions),
        version,
        1024,
        SocketAddr::from(([127, 0, 0, 1], 1)),
        "cabinet-c1".into(),
    )
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A QoS 1 PUBLISH with packet id 7; `alias` adds an MQTT 5 topic alias property.
fn publish(version: ProtocolVersion, topic: &str, alias: Option<u16>) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic, &mut body);
    body.extend_from_slice(&7u16.to_be_bytes());
    if version == ProtocolVersion::V5 {
        match alias {
            Some(alias) => {
                body.push(3);
                body.push(0x23);
                body.extend_from_slice(&alias.to_be_bytes());
            }
            None => body.push(0),
        }
    }
    body.extend_from_slice(b"payload");
    let mut packet = vec![0x32];
    push_varint(&mut packet, body.len());
    packet.extend_from_slice(&body);
    packet
}

fn feed(gate: &mut Gate, bytes: &[u8]) -> (Result<(), GateError>, Vec<u8>, Vec<u8>) {
    let (mut forward, mut reply) = (Vec::new(), Vec::new());
    let result = gate.feed(bytes, &mut forward, &mut reply);
    (result, forward, reply)
}

#[test]
fn an_allowed_publish_split_across_reads_passes_unchanged() {
    let mut gate = gate(ProtocolVersion::V4);
    let packet = publish(ProtocolVersion::V4, "wattchain/cabinet/c1/quad", None);
    let (first, second) = packet.split_at(5);
    assert_eq!(feed(&mut gate, first), (Ok(()), vec![], vec![]));
    assert_eq!(feed(&mut gate, second), (Ok(()), packet.clone(), vec![]));
}

#[test]
fn a_v5_forbidden_qos1_publish_gets_puback_not_authorized_and_is_dropped() {
    let mut gate = gate(ProtocolVersion::V5);
    let forged = publish(ProtocolVersion::V5, "wattchain/ledger/block", None);
    let allowed = publish(ProtocolVersion::V5, "wattchain/cabinet/c1/quad", None);
    let (result, forward, reply) = feed(&mut gate, &[forged, allowed.clone()].concat());
    assert_eq!(result, Ok(()));
    assert_eq!(forward, allowed, "only the allowed publish reaches rumqttd");
    assert_eq!(reply, vec![0x40, 3, 0, 7, 0x87]);
}

#[test]
fn a_v4_forbidden_publish_closes_the_connection_after_the_allowed_packets() {
    let mut gate = gate(ProtocolVersion::V4);
    let allowed = publish(ProtocolVersion::V4, "wattchain/cabinet/c1/quad", None);
    let forged = publish(ProtocolVersion::V4, "wattchain/cabinet/c2/quad", None);
    let (result, forward, _) = feed(&mut gate, &[allowed.clone(), forged].concat());
    assert_eq!(
        result,
        Err(GateError::Forbidden("wattchain/cabinet/c2/quad".into()))
    );
    assert_eq!(forward, allowed);
}

#[test]
fn a_topic_alias_resolves_to_the_topic_it_was_set_with() {
    let mut gate = gate(ProtocolVersion::V5);
    let set = publish(ProtocolVersion::V5, "wattchain/cabinet/c1/quad", Some(1));
    let reuse = publish(ProtocolVersion::V5, "", Some(1));
    let (result, forward, _) = feed(&mut gate, &[set.clone(), reuse.clone()].concat());
    assert_eq!((result, forward), (Ok(()), [set, reuse].concat()));
    // An alias set on a forbidden topic is never recorded, so using it is refused.
    let forged = publish(ProtocolVersion::V5, "wattchain/ledger/block", Some(2));
    let reuse_forged = publish(ProtocolVersion::V5, "", Some(2));
    let (result, forward, reply) = feed(&mut gate, &[forged, reuse_forged].concat());
    assert_eq!(result, Err(GateError::UnknownTopicAlias(2)));
    assert!(forward.is_empty());
    assert_eq!(reply, vec![0x40, 3, 0, 7, 0x87]);
}

#[test]
fn a_subscribe_with_a_forbidden_filter_is_answered_with_failures() {
    let mut body = 9u16.to_be_bytes().to_vec();
    string("wattchain/cabinet/+/quad", &mut body);
    body.push(1);
    string("$SYS/#", &mut body);
    body.push(1);
    let mut packet = vec![0x82];
    push_varint(&mut packet, body.len());
    packet.extend_from_slice(&body);
    let mut v4 = gate(ProtocolVersion::V4);
    assert_eq!(
        feed(&mut v4, &packet),
        (Ok(()), vec![], vec![0x90, 4, 0, 9, 0x80, 0x80])
    );
}

#[test]
fn an_oversized_packet_is_a_framing_violation() {
    let mut gate = gate(ProtocolVersion::V4);
    let (result, _, _) = feed(&mut gate, &[0x30, 0xff, 0x7f]);
    assert!(matches!(
        result,
        Err(GateError::Packet(PacketError::TooLarge { .. }))
    ));
}
