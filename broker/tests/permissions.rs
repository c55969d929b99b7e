//! Topic permissions, enforced by the engine's hooks: each user publishes and subscribes only where its
//! role allows, seen by the real mosquitto clients, rumqttc and raw MQTT bytes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rumqttc::v5::mqttbytes::v5::{Packet as V5Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use tokio::io::AsyncWriteExt;
use wattchain_broker::BrokerConfig;

/// Credentials arguments for the mosquitto clients.
fn login<'a>(user: &'a str, pass: &'a str) -> [&'a str; 4] {
    ["-u", user, "-P", pass]
}

#[tokio::test]
async fn only_the_publisher_user_can_publish_a_block_and_forged_blocks_never_reach_subscribers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    let mut sub = MosquittoSub::start_with(
        addr,
        "mqttv5",
        "watcher-sub",
        "wattchain/ledger/block",
        &login("watcher", "watcher-secret"),
    )
    .await;

    // A watcher over MQTT 5: mosquitto_pub is told "not authorized" (PUBACK 0x87).
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut args = vec!["-h", &host, "-p", &port, "-V", "mqttv5", "-q", "1"];
    args.extend(["-t", "wattchain/ledger/block", "-m", "forged-by-watcher"]);
    args.extend(login("watcher", "watcher-secret"));
    let exit = mosquitto_run("mosquitto_pub", &args).await;
    assert!(
        exit.stderr.to_lowercase().contains("not authori"),
        "watcher told its publish failed: {:?} {}",
        exit.code,
        exit.stderr
    );

    // An averager over MQTT 3.1.1, which cannot refuse a publish: the connection is closed.
    let averager = Some(("averager", "averager-secret"));
    let (code, mut stream) = raw_connack(addr, &connect_packet(4, "averager-raw", averager)).await;
    assert_eq!(code, 0);
    stream
        .write_all(&publish_packet_v4(
            "wattchain/ledger/block",
            b"forged-by-averager",
        ))
        .await
        .expect("send forged block");
    assert!(
        read_to_close(&mut stream).await.is_empty(),
        "closed without a word"
    );

    // The publisher's block goes through, and it is the first and only one seen.
    mosquitto_pub_with(
        addr,
        "mqttv311",
        "wattchain/ledger/block",
        &["genuine".to_owned()],
        &login("publisher", "publisher-secret"),
    )
    .await;
    assert_eq!(sub.next_payload().await, "genuine");
    assert_eq!(sub.drain_payloads(), Vec::<String>::new());
    sub.stop().await;
    broker.shutdown().await;
}

/// An MQTT 5 rumqttc client logged in as `user`; returns the client and its event loop.
fn v5_client(
    addr: SocketAddr,
    id: &str,
    user: &str,
    pass: &str,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials(user, pass);
    rumqttc::v5::AsyncClient::new(options, 10)
}

#[tokio::test]
async fn cabinet_c1_cannot_publish_for_cabinet_c2_and_is_told_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    let mut sub = MosquittoSub::start_with(
        addr,
        "mqttv311",
        "watcher-quads",
        "wattchain/cabinet/+/quad",
        &login("watcher", "watcher-secret"),
    )
    .await;
    let (client, mut events) = v5_client(addr, "cabinet-c1", "cabinet-c1", "cabinet-c1-secret");
    client
        .publish(
            "wattchain/cabinet/c2/quad",
            V5QoS::AtLeastOnce,
            false,
            "c1 posing as c2",
        )
        .await
        .expect("queue publish");
    client
        .publish(
            "wattchain/cabinet/c1/quad",
            V5QoS::AtLeastOnce,
            false,
            "c1 itself",
        )
        .await
        .expect("queue publish");
    let reasons = tokio::time::timeout(WAIT, async {
        let mut reasons = Vec::new();
        while reasons.len() < 2 {
            match events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(V5Packet::PubAck(ack))) => reasons.push(ack.reason),
                Ok(_) => {}
                Err(err) => panic!("cabinet-c1 connection failed: {err}"),
            }
        }
        reasons
    })
    .await
    .expect("both PUBACKs in time");
    // The refused one is answered "not authorized"; the allowed one is not.
    assert_eq!(reasons[0], PubAckReason::NotAuthorized);
    assert_ne!(reasons[1], PubAckReason::NotAuthorized);
    assert_eq!(sub.next_payload().await, "c1 itself");
    assert_eq!(sub.drain_payloads(), Vec::<String>::new());
    sub.stop().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_will_on_a_topic_the_user_may_not_publish_is_refused_at_connect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    let mut options = rumqttc::MqttOptions::new("sly-watcher", addr.ip().to_string(), addr.port());
    options.set_credentials("watcher", "watcher-secret");
    options.set_last_will(rumqttc::LastWill::new(
        "wattchain/ledger/block",
        "forged will",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let refused = tokio::time::timeout(WAIT, events.poll())
        .await
        .expect("CONNACK in time");
    assert!(
        matches!(
            refused,
            Err(rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::NotAuthorized
            ))
        ),
        "{refused:?}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn subscribing_outside_the_granted_filters_gets_a_failing_suback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let cabinet = Some(("cabinet-c1", "cabinet-c1-secret"));
    let (code, mut stream) =
        raw_connack(broker.local_addr(), &connect_packet(4, "cab-raw", cabinet)).await;
    assert_eq!(code, 0);
    // Packet id 1, filter "wattchain/cabinet/#" at QoS 0: wider than "wattchain/ledger/block".
    let filter = b"wattchain/cabinet/#";
    let mut packet = vec![
        0x82,
        (2 + 2 + filter.len() + 1) as u8,
        0,
        1,
        0,
        filter.len() as u8,
    ];
    packet.extend_from_slice(filter);
    packet.push(0);
    stream.write_all(&packet).await.expect("SUBSCRIBE");
    let (kind, body) = raw_read_packet(&mut stream).await;
    assert_eq!((kind, body), (0x90, vec![0, 1, 0x80]));
    // The connection stays usable for what the role allows.
    raw_subscribe_v4(&mut stream, "wattchain/ledger/block").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn the_example_users_file_grants_each_role_exactly_its_topics() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/users.example.toml");
    let text = std::fs::read_to_string(example).expect("example users file");
    let hash = wattchain_broker::hash_password("test").expect("hash");
    let placeholder = "REPLACE with the output of: wattchain broker hash-password";
    assert!(text.contains(placeholder));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("users.toml");
    std::fs::write(&path, text.replace(placeholder, &hash)).expect("write users");
    let config = BrokerConfig {
        users_file: Some(path),
        ..test_config()
    };
    let users = config
        .load_users()
        .expect("example loads once hashes are filled in");
    let perms = |name: &str| {
        let user = users.iter().find(|u| u.username == name).expect(name);
        user.permissions().for_user(name)
    };
    let block = "wattchain/ledger/block";
    let commit = "wattchain/cabinet/c1/commit";
    let (cabinet, averager) = (perms("cabinet-c1"), perms("averager"));
    let (publisher, watcher) = (perms("publisher"), perms("watcher"));
    assert!(cabinet.may_publish("wattchain/cabinet/c1/window/PA"));
    assert!(cabinet.may_publish("wattchain/agent/cabinet-c1/status"));
    assert!(!cabinet.may_publish("wattchain/cabinet/c2/quad"));
    assert!(cabinet.may_subscribe(commit));
    assert!(!cabinet.may_subscribe("wattchain/cabinet/c2/commit"));
    assert!(averager.may_publish("wattchain/cabinet/c2/average/U"));
    assert!(averager.may_subscribe("$share/wattchain-averagers-U/wattchain/cabinet/+/window/U"));
    assert!(publisher.may_publish(block) && publisher.may_publish("wattchain/ledger/head"));
    assert!(publisher.may_publish(commit) && publisher.may_publish("wattchain/cabinet/c9/commit"));
    assert!(publisher.may_subscribe("wattchain/cabinet/+/average/+"));
    for other in [&cabinet, &averager, &watcher] {
        assert!(!other.may_publish(block));
        assert!(
            !other.may_publish(commit),
            "only the publisher commits windows"
        );
    }
    assert!(watcher.may_subscribe("wattchain/#"));
    assert!(!watcher.may_publish("wattchain/cabinet/c1/quad"));
}

/// A raw MQTT 5 QoS 1 PUBLISH with packet id `id` and a topic alias property.
fn publish_v5_with_alias(topic: &str, alias: u16, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&[3, 0x23]);
    body.extend_from_slice(&alias.to_be_bytes());
    body.extend_from_slice(payload);
    let mut packet = vec![0x32];
    varint(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

#[tokio::test]
async fn a_topic_alias_cannot_smuggle_a_publish_past_the_permission_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let watcher = Some(("watcher", "watcher-secret"));
    let (code, mut stream) = raw_connack(
        broker.local_addr(),
        &connect_packet(5, "alias-raw", watcher),
    )
    .await;
    assert_eq!(code, 0);
    // Setting alias 1 on a forbidden topic is refused (PUBACK 0x87, with a reason string)...
    let forged = publish_v5_with_alias("wattchain/ledger/block", 1, 10, b"forged");
    stream.write_all(&forged).await.expect("PUBLISH");
    let (kind, body) = raw_read_packet(&mut stream).await;
    assert_eq!(
        (kind, &body[..3]),
        (0x40, &[0, 10, 0x87][..]),
        "PUBACK not authorized"
    );
    // ...and publishing through the alias is judged on the topic it stands for: refused again.
    let reuse = publish_v5_with_alias("", 1, 11, b"forged again");
    stream.write_all(&reuse).await.expect("PUBLISH");
    let (kind, body) = raw_read_packet(&mut stream).await;
    assert_eq!(
        (kind, &body[..3]),
        (0x40, &[0, 11, 0x87][..]),
        "the alias does not smuggle the topic past the check"
    );
    broker.shutdown().await;
}
