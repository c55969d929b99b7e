//! Username/password checks at the front door, with the CONNACK codes each version expects.

mod common;

use common::*;
use wattchain_broker::{BrokerConfig, User};

fn with_alice() -> BrokerConfig {
    BrokerConfig {
        users: vec![User {
            username: "alice".into(),
            password: "wonderland".into(),
        }],
        ..test_config()
    }
}

#[tokio::test]
async fn wrong_or_unknown_credentials_get_bad_username_or_password() {
    let broker = start(with_alice()).await;
    let addr = broker.local_addr();
    for login in [("alice", "guess"), ("mallory", "wonderland")] {
        let (v4_code, _) = raw_connack(addr, &connect_packet(4, "c", Some(login))).await;
        let (v5_code, _) = raw_connack(addr, &connect_packet(5, "c", Some(login))).await;
        assert_eq!((v4_code, v5_code), (0x04, 0x86), "login {login:?}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn missing_credentials_get_not_authorized() {
    let broker = start(with_alice()).await;
    let addr = broker.local_addr();
    let (v4_code, _) = raw_connack(addr, &connect_packet(4, "anon", None)).await;
    let (v5_code, _) = raw_connack(addr, &connect_packet(5, "anon", None)).await;
    assert_eq!((v4_code, v5_code), (0x05, 0x87));
    broker.shutdown().await;
}

#[tokio::test]
async fn right_credentials_connect_and_exchange_messages() {
    let broker = start(with_alice()).await;
    let addr = broker.local_addr();
    let (code, mut stream) = raw_connack(
        addr,
        &connect_packet(4, "alice-raw", Some(("alice", "wonderland"))),
    )
    .await;
    assert_eq!(code, 0);
    raw_round_trip_v4(&mut stream, "auth/echo").await;
    let (v5_code, _) = raw_connack(
        addr,
        &connect_packet(5, "alice-v5", Some(("alice", "wonderland"))),
    )
    .await;
    assert_eq!(v5_code, 0);
    broker.shutdown().await;
}
