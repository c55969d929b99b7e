//! `wattchain broker hash-password`: the hash it prints, pasted into a users file, lets that
//! password (and only it) log in.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet};
use wattchain_broker::BrokerConfig;

const WAIT: Duration = Duration::from_secs(20);

/// Runs `wattchain broker hash-password` with `stdin` and returns its stdout.
fn hash_with_cli(stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wattchain"))
        .args(["broker", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wattchain runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.as_bytes()).expect("write password");
    drop(input);
    let out = child.wait_with_output().expect("wattchain exits");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The CONNACK code a 3.1.1 client logging in as `user`/`password` gets.
async fn connack(port: u16, user: &str, password: &str) -> ConnectReturnCode {
    let mut options = MqttOptions::new("cli-hash-test", "127.0.0.1", port);
    options.set_credentials(user, password);
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 10);
    tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return ack.code,
                Err(ConnectionError::ConnectionRefused(code)) => return code,
                Ok(_) => {}
                Err(other) => panic!("unexpected client error: {other}"),
            }
        }
    })
    .await
    .expect("CONNACK in time")
}

#[tokio::test]
async fn the_printed_hash_admits_exactly_the_password_read_from_stdin() {
    let printed = hash_with_cli("correct horse battery staple\n");
    let hash = printed.trim();
    assert!(hash.starts_with("$argon2id$"), "{printed}");
    assert!(!printed.contains("correct horse"));

    let dir = tempfile::tempdir().expect("temp dir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!("[[users]]\nusername = \"watcher\"\npassword_hash = {hash:?}\n"),
    )
    .expect("write users file");
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        users_file: Some(users),
        ..BrokerConfig::default()
    };
    let broker = tokio::time::timeout(WAIT, wattchain_broker::start(config))
        .await
        .expect("start in time")
        .expect("broker starts");
    let port = broker.local_addr().port();
    assert_eq!(
        connack(port, "watcher", "correct horse battery staple").await,
        ConnectReturnCode::Success
    );
    assert_eq!(
        connack(port, "watcher", "correct horse battery staple\n").await,
        ConnectReturnCode::BadUserNamePassword
    );
    broker.shutdown().await;
}

#[test]
fn an_empty_stdin_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_wattchain"))
        .args(["broker", "hash-password"])
        .stdin(Stdio::null())
        .output()
        .expect("wattchain runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no password"));
}
