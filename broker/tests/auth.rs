//! Username/password checks by the broker against a users file of argon2 hashes, with the
//! CONNACK codes each protocol version expects, seen by raw clients, rumqttc and mosquitto.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rumqttc::{ConnectReturnCode, ConnectionError, Event, Packet};
use wattchain_broker::BrokerConfig;

/// mosquitto_pub -u/-P (or anonymous) sending one message; returns how it ended.
async fn mosquitto_pub_as(addr: SocketAddr, version: &str, login: Option<(&str, &str)>) -> Exit {
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let mut args = vec!["-h", &host, "-p", &port, "-V", version, "-q", "1"];
    args.extend(["-t", "wattchain/agent/publisher/status", "-m", "online"]);
    if let Some((user, pass)) = login {
        args.extend(["-u", user, "-P", pass]);
    }
    mosquitto_run("mosquitto_pub", &args).await
}

/// The CONNACK code a rumqttc 3.1.1 client gets for `login`.
async fn rumqttc_v4_connack(addr: SocketAddr, login: Option<(&str, &str)>) -> ConnectReturnCode {
    let mut options =
        rumqttc::MqttOptions::new("rumqttc-login", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    if let Some((user, pass)) = login {
        options.set_credentials(user, pass);
    }
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    let polled = tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return ack.code,
                Err(ConnectionError::ConnectionRefused(code)) => return code,
                Ok(_) => continue,
                Err(other) => panic!("unexpected rumqttc error: {other}"),
            }
        }
    });
    polled.await.expect("rumqttc CONNACK timed out")
}

#[tokio::test]
async fn anonymous_clients_are_refused_with_not_authorized() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    let (v4_code, _) = raw_connack(addr, &connect_packet(4, "anon", None)).await;
    let (v5_code, _) = raw_connack(addr, &connect_packet(5, "anon", None)).await;
    assert_eq!((v4_code, v5_code), (0x05, 0x87));
    assert_eq!(
        rumqttc_v4_connack(addr, None).await,
        ConnectReturnCode::NotAuthorized
    );
    for version in ["mqttv311", "mqttv5"] {
        let exit = mosquitto_pub_as(addr, version, None).await;
        assert_ne!(exit.code, Some(0), "{version}: anonymous publish refused");
        assert!(
            exit.stderr.to_lowercase().contains("not authori"),
            "{version}: {}",
            exit.stderr
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn wrong_password_or_unknown_user_gets_bad_username_or_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    for login in [("publisher", "guess"), ("mallory", "publisher-secret")] {
        let (v4_code, _) = raw_connack(addr, &connect_packet(4, "c", Some(login))).await;
        let (v5_code, _) = raw_connack(addr, &connect_packet(5, "c", Some(login))).await;
        assert_eq!((v4_code, v5_code), (0x04, 0x86), "login {login:?}");
        assert_eq!(
            rumqttc_v4_connack(addr, Some(login)).await,
            ConnectReturnCode::BadUserNamePassword
        );
    }
    for version in ["mqttv311", "mqttv5"] {
        let exit = mosquitto_pub_as(addr, version, Some(("publisher", "guess"))).await;
        assert_ne!(exit.code, Some(0), "{version}: wrong password refused");
        assert!(
            exit.stderr
                .to_lowercase()
                .contains("bad user name or password"),
            "{version}: {}",
            exit.stderr
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn the_right_password_connects_and_exchanges_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    let login = Some(("publisher", "publisher-secret"));
    let (code, mut stream) = raw_connack(addr, &connect_packet(4, "publisher-raw", login)).await;
    assert_eq!(code, 0);
    raw_subscribe_v4(&mut stream, "wattchain/ledger/head").await;
    let (v5_code, _) = raw_connack(addr, &connect_packet(5, "publisher-v5", login)).await;
    assert_eq!(v5_code, 0);
    assert_eq!(
        rumqttc_v4_connack(addr, login).await,
        ConnectReturnCode::Success
    );
    for version in ["mqttv311", "mqttv5"] {
        let exit = mosquitto_pub_as(addr, version, login).await;
        assert_eq!(exit.code, Some(0), "{version}: {}", exit.stderr);
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn the_users_file_holds_only_argon2_hashes_and_is_found_next_to_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_users_file(dir.path(), ROLES);
    let written = std::fs::read_to_string(dir.path().join("users.toml")).expect("read back");
    for role in ROLES {
        assert!(
            !written.contains(role.password),
            "{} stored in clear",
            role.name
        );
    }
    assert_eq!(
        written.matches("password_hash = \"$argon2id$").count(),
        ROLES.len()
    );

    // A relative users_file is read from the config file's directory, whatever the cwd.
    let config_path = dir.path().join("broker.toml");
    std::fs::write(
        &config_path,
        "listen = \"127.0.0.1:0\"\nusers_file = \"users.toml\"\n",
    )
    .expect("write config");
    let config = BrokerConfig::from_file(&config_path).expect("config reads");
    let users = config.load_users().expect("users load");
    assert_eq!(users.len(), ROLES.len());
    let broker = start(config).await;
    let (code, _) = raw_connack(
        broker.local_addr(),
        &connect_packet(4, "w", Some(("watcher", "watcher-secret"))),
    )
    .await;
    assert_eq!(code, 0);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_users_file_with_a_plaintext_password_stops_the_broker_from_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("users.toml");
    std::fs::write(
        &path,
        "[[users]]\nusername = \"alice\"\npassword_hash = \"wonderland\"\n",
    )
    .expect("write users");
    let config = BrokerConfig {
        users_file: Some(path),
        ..test_config()
    };
    let started = tokio::time::timeout(WAIT, wattchain_broker::start(config))
        .await
        .expect("start answers in time");
    let err = started.expect_err("a plaintext password is refused");
    assert!(err.to_string().contains("argon2"), "{err}");
}
