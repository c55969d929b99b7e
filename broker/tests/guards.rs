//! The limits and guards the broker applies at connect and to every packet, each shown
//! against an input that crashes, poisons or hangs a less careful broker, followed by proof
//! that normal clients are still served.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use wattchain_broker::{BrokerConfig, BrokerError};

#[tokio::test]
async fn client_ids_with_topic_characters_connect_and_reconnect_without_poisoning() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    // Ids with topic characters must not confuse the broker's own bookkeeping.
    for id in ["site/cabinet+1", "probe#$SYS", "100%/done"] {
        for attempt in 0..2 {
            let (code, mut stream) = raw_connack(addr, &connect_packet(4, id, None)).await;
            assert_eq!(code, 0, "id {id:?} attempt {attempt} accepted");
            raw_round_trip_v4(&mut stream, "ids/echo").await;
        }
    }
    let mut sub = MosquittoSub::start(addr, "mqttv5", "tool/with+odd#id$", "ids/tool").await;
    mosquitto_pub(addr, "mqttv311", "ids/tool", &["seen".to_owned()]).await;
    assert_eq!(sub.next_payload().await, "seen");
    sub.stop().await;
    assert_broker_serves(addr, "after-odd-ids").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn empty_client_id_with_clean_session_is_accepted() {
    let broker = start(test_config()).await;
    let (code, mut stream) = raw_connack(broker.local_addr(), &connect_packet(4, "", None)).await;
    assert_eq!(code, 0);
    raw_round_trip_v4(&mut stream, "ids/empty").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn overlong_client_id_is_refused_with_identifier_rejected() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    let long = "/".repeat(2000);
    let (v4_code, _) = raw_connack(addr, &connect_packet(4, &long, None)).await;
    let (v5_code, _) = raw_connack(addr, &connect_packet(5, &long, None)).await;
    assert_eq!((v4_code, v5_code), (0x02, 0x85));
    assert_broker_serves(addr, "after-long-id").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn connection_limit_refuses_with_connack_and_the_same_id_gets_in_once_a_slot_frees() {
    let config = BrokerConfig {
        max_connections: 1,
        ..test_config()
    };
    let broker = start(config).await;
    let addr = broker.local_addr();
    let (code, holder) = raw_connack(addr, &connect_packet(4, "holder", None)).await;
    assert_eq!(code, 0);

    // A refusal followed by a retry of the same id must leave the listener serving.
    for _ in 0..3 {
        let (v4_code, _) = raw_connack(addr, &connect_packet(4, "late", None)).await;
        let (v5_code, _) = raw_connack(addr, &connect_packet(5, "late", None)).await;
        assert_eq!(
            (v4_code, v5_code),
            (0x03, 0x88),
            "server unavailable (3.1.1 and 5)"
        );
    }
    drop(holder);

    // The slot frees when the broker notices the close; retry like a real client would.
    let mut admitted = tokio::time::timeout(WAIT, async {
        loop {
            let (code, stream) = raw_connack(addr, &connect_packet(4, "late", None)).await;
            if code == 0 {
                return stream;
            }
            assert_eq!(code, 0x03);
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a slot frees after the holder leaves");
    raw_round_trip_v4(&mut admitted, "limit/echo").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn idle_socket_is_closed_after_connect_timeout_while_others_keep_working() {
    let config = BrokerConfig {
        connect_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let broker = start(config).await;
    let addr = broker.local_addr();
    let mut idle = raw_send(addr, &[]).await;

    assert_broker_serves(addr, "beside-idle").await;

    assert!(
        read_to_close(&mut idle).await.is_empty(),
        "idle socket closed, no bytes sent"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_publish_closes_a_v5_sender_and_spares_others() {
    let config = BrokerConfig {
        max_packet_size: 4096,
        ..test_config()
    };
    let broker = start(config).await;
    let addr = broker.local_addr();
    let mut watcher = TestClient::v4(addr, "watcher").await;
    watcher.subscribe("big/#").await;
    let (code, mut sender) = raw_connack(addr, &connect_packet(5, "big-sender", None)).await;
    assert_eq!(code, 0);

    // v5 PUBLISH, QoS 0, topic "big/one", no properties, 10 000-byte payload.
    let mut body = vec![0, 7];
    body.extend_from_slice(b"big/one");
    body.push(0);
    body.extend_from_slice(&[b'x'; 10_000]);
    let mut packet = vec![0x30];
    varint(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    // The broker may close before all of it is written.
    let _ = sender.write_all(&packet).await;

    // rmqtt closes without the optional DISCONNECT 0x95 "packet too large" (mosquitto sends it).
    let tail = read_to_close(&mut sender).await;
    assert!(
        tail.is_empty() || tail[0] == 0xe0,
        "closed, at most with a DISCONNECT: {tail:02x?}"
    );
    let publisher = TestClient::v5(addr, "small-sender").await;
    publisher.publish("big/small", &[b'y'; 3000]).await;
    let (topic, payload) = watcher.next_publish().await;
    assert_eq!(
        (topic.as_str(), payload.len()),
        ("big/small", 3000),
        "the big one never arrived"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn oversized_publish_closes_a_v311_sender() {
    let config = BrokerConfig {
        max_packet_size: 4096,
        ..test_config()
    };
    let broker = start(config).await;
    let addr = broker.local_addr();
    let (code, mut sender) = raw_connack(addr, &connect_packet(4, "big-v4", None)).await;
    assert_eq!(code, 0);
    let _ = sender
        .write_all(&publish_packet_v4("big/v4", &[b'x'; 5000]))
        .await;
    assert!(
        read_to_close(&mut sender).await.is_empty(),
        "closed without a reason (3.1.1 has none)"
    );
    assert_broker_serves(addr, "after-big-v4").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_or_non_connect_first_packet_is_closed_and_the_broker_keeps_serving() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    let inputs: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &publish_packet_v4("sneaky", b"no connect"),
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x10, 0x04, 0x00, 0x02, b'M', b'Q'],
    ];
    for input in inputs {
        let mut stream = raw_send(addr, input).await;
        // The truncated CONNECT needs the client to finish sending: close our side.
        let _ = stream.shutdown().await;
        assert!(
            read_to_close(&mut stream).await.is_empty(),
            "closed without reply: {input:02x?}"
        );
    }
    assert_broker_serves(addr, "after-garbage").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn starting_on_a_taken_port_fails_with_a_bind_error_naming_the_port() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = taken.local_addr().expect("addr");
    let config = BrokerConfig {
        listen: addr,
        ..BrokerConfig::default()
    };

    let err = wattchain_broker::start(config)
        .await
        .expect_err("port is taken");

    let message = err.to_string();
    assert!(matches!(err, BrokerError::Bind { addr: a, .. } if a == addr));
    assert!(message.contains(&addr.port().to_string()), "{message}");
    assert!(message.contains("--listen"), "{message}");
}

#[tokio::test]
async fn several_brokers_run_in_one_process() {
    let first = start(test_config()).await;
    let second = start(test_config()).await;
    assert_ne!(first.local_addr(), second.local_addr());
    assert_broker_serves(first.local_addr(), "first").await;
    assert_broker_serves(second.local_addr(), "second").await;
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn clients_vanishing_right_after_connect_do_not_poison_their_id() {
    // A CONNACK that cannot be written must not leave a stale entry behind for that id.
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    for _ in 0..20 {
        drop(raw_send(addr, &connect_packet(4, "flaky", None)).await);
        drop(raw_send(addr, &connect_packet(5, "flaky", None)).await);
    }
    // The broker handles those CONNECTs concurrently: one still in its handshake would take
    // the id over from (or, in rmqtt, refuse) a connection made meanwhile, as any
    // simultaneous connection of one id would. Once all are handled, nothing may be left.
    timeout(WAIT, async {
        loop {
            let stats = broker.stats().await;
            let idle = stats.handshakes == 0 && stats.connections == 0 && stats.sessions == 0;
            if stats.connects_received == 40 && idle {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every vanished client's handshake ends and leaves no session behind");
    let (code, mut stream) = raw_connack(addr, &connect_packet(4, "flaky", None)).await;
    assert_eq!(code, 0);
    raw_round_trip_v4(&mut stream, "flaky/echo").await;
    let (v5_code, _) = raw_connack(addr, &connect_packet(5, "flaky", None)).await;
    assert_eq!(v5_code, 0);
    assert_broker_serves(addr, "after-flaky").await;
    broker.shutdown().await;
}

/// Connects `rounds` times under one id, each time dropping the connection right after its
/// CONNACK and reconnecting at once; every CONNECT must be accepted.
async fn reconnect_at_once(config: BrokerConfig, login: Option<(&str, &str)>, rounds: usize) {
    // An agent whose connection just closed (a network blip, a refused PUBLISH) reconnects
    // at once under its own id. rmqtt 0.24 alone refused that CONNECT "server unavailable"
    // whenever the old session was still closing (one try in ten on a busy machine).
    let broker = start(config).await;
    let addr = broker.local_addr();
    for round in 0..rounds {
        let version = if round % 2 == 0 { 4 } else { 5 };
        let connect = connect_packet(version, "blinking", login);
        let (code, stream) = raw_connack(addr, &connect).await;
        assert_eq!(code, 0, "round {round}: v{version} CONNECT accepted");
        drop(stream);
    }
    let (code, mut stream) = raw_connack(addr, &connect_packet(4, "blinking", login)).await;
    assert_eq!(code, 0);
    raw_round_trip_v4(&mut stream, "blinking/echo").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_client_reconnecting_right_after_its_connection_closed_is_accepted() {
    reconnect_at_once(test_config(), None, 60).await;
}

#[tokio::test]
async fn a_logged_in_client_reconnecting_right_after_its_connection_closed_is_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let users = [TestUser {
        name: "blinker",
        password: "blinker-secret",
        publish: &["blinking/#"],
        subscribe: Some(&["blinking/#"]),
    }];
    let config = BrokerConfig {
        users_file: Some(write_users_file(dir.path(), &users)),
        ..test_config()
    };
    reconnect_at_once(config, Some(("blinker", "blinker-secret")), 20).await;
}

#[tokio::test]
async fn a_second_connection_with_the_same_id_takes_over_and_the_first_is_closed() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    let (code, mut first) = raw_connack(addr, &connect_packet(5, "twin", None)).await;
    assert_eq!(code, 0);

    let (code, mut second) = raw_connack(addr, &connect_packet(4, "twin", None)).await;

    assert_eq!(code, 0);
    // rmqtt closes the first connection without DISCONNECT 0x8E "session taken over"
    // (MQTT 5 §3.1.4 describes one; mosquitto sends it): rmqtt's own behaviour.
    let tail = read_to_close(&mut first).await;
    assert!(
        tail.is_empty() || tail[0] == 0xe0,
        "closed, at most with a DISCONNECT: {tail:02x?}"
    );
    raw_round_trip_v4(&mut second, "twin/echo").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_publish_to_a_wildcard_topic_name_closes_the_connection_and_is_never_retained() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    for topic in ["wc/+", "wc/#"] {
        let (code, mut sender) =
            raw_connack(addr, &connect_packet(4, "wildcard-sender", None)).await;
        assert_eq!(code, 0);
        // A retained QoS 0 PUBLISH (0x31) to a topic name with a wildcard.
        let mut packet = publish_packet_v4(topic, b"not a topic");
        packet[0] = 0x31;
        sender.write_all(&packet).await.expect("PUBLISH");
        assert!(
            read_to_close(&mut sender).await.is_empty(),
            "{topic}: closed without a reply"
        );
    }
    let stats = broker.stats().await;
    assert_eq!(stats.retained, 0, "nothing retained");
    assert_eq!(stats.messages_dropped, 2, "both refusals counted");
    assert_broker_serves(addr, "after-wildcards").await;
    broker.shutdown().await;
}
