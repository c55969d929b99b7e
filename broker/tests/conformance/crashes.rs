//! The five ways one client disabled the rumqttd-based broker (issue 11, "Why"): each sent
//! once, after which both protocol versions must still serve. (The fourth, sequential
//! connects with distinct ids, is `load::sequential_connects_with_distinct_ids`.)

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::probe::{anonymous_refused, serves_both};
use super::target::{both, Setup, Target};
use crate::common::*;

/// A topic, a filter and a will topic whose first character is not ASCII are ordinary UTF-8
/// (MQTT-1.5.4): delivered like any other.
async fn non_ascii_first_character(t: &Target) {
    let addr = t.addr();
    let mut sub = MosquittoSub::start(addr, "mqttv311", "sub-e-acute", "é/#").await;
    mosquitto_pub(addr, "mqttv5", "é/x", &["to é".into()]).await;
    assert_eq!(sub.next_payload().await, "to é");
    mosquitto_pub(addr, "mqttv311", "ü/x", &["nobody listens".into()]).await;

    let mut watcher = Raw::v5(addr, "will-watcher").await;
    watcher.subscribe("ñ/#", 1).await;
    let mut connect = Connect::new(4, "will-n-tilde");
    connect.will = Some(Will {
        topic: "ñ/will".into(),
        payload: b"gone".to_vec(),
        qos: 1,
        ..Will::default()
    });
    Raw::open(addr, &connect).await.0.drop_connection();
    let will = watcher.next().await;
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("ñ/will", &b"gone"[..])
    );
    sub.stop().await;
    serves_both(addr, false).await;
}
both!(non_ascii_first_character);

/// An MQTT 5 PUBLISH with a user property reaches an MQTT 3.1.1 subscriber (without the
/// property), which then reconnects with the same client id and is served again.
async fn v5_properties_to_a_v311_subscriber_then_same_id_reconnects(t: &Target) {
    let addr = t.addr();
    let mut sub = Raw::v4(addr, "v311-props").await;
    sub.subscribe("props/to-v311", 1).await;
    let port = addr.port().to_string();
    let exit = mosquitto_run(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-t",
            "props/to-v311",
            "-m",
            "with a property",
        ],
    )
    .await;
    assert_eq!(exit.code, Some(0), "mosquitto_pub: {}", exit.stderr);
    assert_eq!(sub.next().await.payload, b"with a property");
    sub.disconnect().await;

    let mut again = Raw::v4(addr, "v311-props").await;
    again.subscribe("props/to-v311", 1).await;
    let mut publisher = Raw::v5(addr, "v5-props-publisher").await;
    let mut message = Message::new("props/to-v311", b"second", 1);
    message.props = Props::new().user("k", "v");
    publisher.publish(message).await;
    assert_eq!(again.next().await.payload, b"second");
    serves_both(addr, false).await;
}
both!(v5_properties_to_a_v311_subscriber_then_same_id_reconnects);

/// The last member of a `$share` group, with a persistent session, disconnects holding an
/// unacknowledged QoS 1 message. Reconnecting, it gets that message again (MQTT-4.4.0-1).
async fn last_persistent_share_member_leaves_with_an_unacked_message(t: &Target) {
    let addr = t.addr();
    let mut connect = Connect::new(4, "share-last-member");
    connect.clean = false;
    let (mut member, _) = Raw::open(addr, &connect).await;
    member.auto_ack = false;
    member.subscribe("$share/last/share/last", 1).await;
    let mut publisher = Raw::v5(addr, "share-last-publisher").await;
    publisher.publish1("share/last", b"unacked").await;
    let held = member.next().await;
    assert_eq!((held.payload.as_slice(), held.qos), (&b"unacked"[..], 1));
    member.disconnect().await;

    serves_both(addr, false).await;
    let (mut member, ack) = Raw::open(addr, &connect).await;
    assert!(ack.session_present, "the persistent session was kept");
    let again = member.next().await;
    assert_eq!(
        (again.payload.as_slice(), again.qos),
        (&b"unacked"[..], 1),
        "the unacknowledged message is re-sent"
    );
    member.disconnect().await;
    // Leave no session behind.
    Raw::v4(addr, "share-last-member").await.disconnect().await;
}
both!(last_persistent_share_member_leaves_with_an_unacked_message);

/// With a users file, no listening port of the broker's process opens a session for an
/// anonymous client: every TCP socket the process listens on is tried, with plain MQTT of
/// both versions, and the TLS and WebSocket ports with their own transport too.
async fn no_port_skips_authentication(t: &Target) {
    let sockets = t.listening_sockets();
    assert!(
        sockets.contains(&t.addr()),
        "census found the MQTT port: {sockets:?}"
    );
    let ours = t.ours();
    let tls = ours.and_then(|b| b.tls_local_addr());
    let ws = ours.and_then(|b| b.ws_local_addr());
    if !t.is_mosquitto() {
        assert!(
            tls.is_some() && ws.is_some(),
            "TLS and WebSocket configured"
        );
    }
    for addr in &sockets {
        let addr = std::net::SocketAddr::new([127, 0, 0, 1].into(), addr.port());
        for version in [4, 5] {
            assert!(
                anonymous_refused(addr, version).await,
                "port {addr} opened an anonymous MQTT v{version} session (all: {sockets:?})"
            );
        }
        if Some(addr) == tls {
            let ca = t.ca().expect("CA").display().to_string();
            let port = addr.port().to_string();
            let args = ["-h", "127.0.0.1", "-p", &port, "--cafile", &ca];
            let anonymous = [&args[..], &["-t", "wattchain/ledger/x", "-m", "x"]].concat();
            let exit = mosquitto_run("mosquitto_pub", &anonymous).await;
            assert_ne!(exit.code, Some(0), "anonymous TLS client refused");
            let login = ["-u", "publisher", "-P", "publisher-secret"];
            let exit = mosquitto_run("mosquitto_pub", &[&anonymous[..], &login[..]].concat()).await;
            assert_eq!(
                exit.code,
                Some(0),
                "TLS client with credentials: {}",
                exit.stderr
            );
        }
        if Some(addr) == ws {
            assert!(
                ws_anonymous_refused(addr).await,
                "anonymous WebSocket client refused"
            );
        }
    }
    serves_both(t.addr(), true).await;
}
both!(
    no_port_skips_authentication,
    Setup {
        users: true,
        all_listeners: true,
        exclusive: true,
        ..Setup::default()
    }
);

async fn ws_anonymous_refused(addr: std::net::SocketAddr) -> bool {
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    use async_tungstenite::tungstenite::http::HeaderValue;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("ws://{addr}/mqtt")
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let upgrade = tokio::time::timeout(WAIT, async_tungstenite::tokio::client_async(request, tcp));
    let Ok(Ok((ws, _))) = upgrade.await else {
        return true;
    };
    let mut ws = ws_stream_tungstenite::WsStream::new(ws);
    ws.write_all(&Connect::new(4, "ws-anonymous").encode())
        .await
        .expect("write CONNECT");
    ws.flush().await.expect("flush");
    let mut head = [0u8; 4];
    match tokio::time::timeout(WAIT, ws.read_exact(&mut head)).await {
        Ok(Ok(_)) if head[0] == 0x20 => head[3] != 0,
        _ => true,
    }
}
