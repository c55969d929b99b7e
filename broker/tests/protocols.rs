//! One public port serves MQTT 3.1.1 and MQTT 5 clients, which exchange messages.

mod common;

use common::*;
use tokio::net::TcpStream;

#[tokio::test]
async fn v311_and_v5_rumqttc_clients_exchange_messages_on_one_port() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    let mut v4 = TestClient::v4(addr, "v4-client").await;
    let mut v5 = TestClient::v5(addr, "v5-client").await;
    v4.subscribe("mixed/to-v4").await;
    v5.subscribe("mixed/to-v5").await;

    v5.publish("mixed/to-v4", b"from v5").await;
    v4.publish("mixed/to-v5", b"from v4").await;

    assert_eq!(
        v4.next_publish().await,
        ("mixed/to-v4".into(), b"from v5".to_vec())
    );
    assert_eq!(
        v5.next_publish().await,
        ("mixed/to-v5".into(), b"from v4".to_vec())
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn url_names_the_front_door_address() {
    let broker = start(test_config()).await;
    assert_eq!(broker.url(), format!("mqtt://{}", broker.local_addr()));
    assert_ne!(
        broker.local_addr().port(),
        0,
        "port 0 resolved to the bound port"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mosquitto_clients_of_both_versions_exchange_messages_on_one_port() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    for (sub_version, pub_version) in [("mqttv311", "mqttv5"), ("mqttv5", "mqttv311")] {
        let topic = format!("mosq/{sub_version}");
        let mut sub =
            MosquittoSub::start(addr, sub_version, &format!("sub-{sub_version}"), &topic).await;
        let message = format!("hello from {pub_version}");
        mosquitto_pub(addr, pub_version, &topic, std::slice::from_ref(&message)).await;
        assert_eq!(sub.next_payload().await, message);
        sub.stop().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn an_mqtt31_client_is_served_on_the_same_port() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();

    let (code, mut stream) = raw_connack(addr, &connect_packet(3, "old-device", None)).await;

    assert_eq!(code, 0x00, "MQTT 3.1 (MQIsdp) accepted");
    raw_round_trip_v4(&mut stream, "old/echo").await;
    assert_broker_serves(addr, "after-mqtt31").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn client_asking_for_no_keep_alive_is_accepted() {
    // Keep-alive 0 means "no keep-alive" in both protocol versions.
    let broker = start(test_config()).await;
    let mut connect = connect_packet(4, "no-keepalive", None);
    connect[10..12].copy_from_slice(&[0, 0]);

    let (code, mut stream) = raw_connack(broker.local_addr(), &connect).await;

    assert_eq!(code, 0x00);
    raw_round_trip_v4(&mut stream, "keepalive/zero").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_and_stops_accepting() {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    let (v4_code, mut v4) = raw_connack(addr, &connect_packet(4, "stay-v4", None)).await;
    let (v5_code, mut v5) = raw_connack(addr, &connect_packet(5, "stay-v5", None)).await;
    assert_eq!((v4_code, v5_code), (0, 0));

    let began = std::time::Instant::now();
    tokio::time::timeout(WAIT, broker.shutdown())
        .await
        .expect("shutdown completes");
    // Reported, not asserted (no timed assertions in tests): the README's figure.
    eprintln!("shutdown took {:?}", began.elapsed());

    assert!(
        read_to_close(&mut v4).await.is_empty(),
        "v4 client just closed"
    );
    let v5_tail = read_to_close(&mut v5).await;
    assert!(
        v5_tail.is_empty() || v5_tail[0] == 0xe0,
        "v5 client closed, at most after a DISCONNECT: {v5_tail:02x?}"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
