//! The optional TLS listener: same users, permissions and connect timeout as the plain port.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use wattchain_broker::{BrokerConfig, TlsConfig};

/// Writes a self-signed certificate for 127.0.0.1 with openssl (fails the test if missing).
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl must be installed for the TLS test");
    assert!(status.success(), "openssl generated a certificate");
    (cert, key)
}

#[tokio::test]
async fn tls_client_publishes_to_a_plain_subscriber_and_idle_tls_sockets_are_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = self_signed(dir.path());
    let config = BrokerConfig {
        connect_timeout: Duration::from_millis(300),
        tls: Some(TlsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert: cert.clone(),
            key,
        }),
        ..test_config()
    };
    let broker = start(config).await;
    let tls_addr = broker.tls_local_addr().expect("TLS listener");
    // A TLS handshake that never starts must not freeze the listener.
    let mut idle = raw_send(tls_addr, &[]).await;
    let mut sub = MosquittoSub::start(broker.local_addr(), "mqttv311", "plain-sub", "tls/t").await;

    let cafile = cert.to_string_lossy().into_owned();
    mosquitto_pub_with(
        tls_addr,
        "mqttv5",
        "tls/t",
        &["over tls".to_owned()],
        &["--cafile", &cafile],
    )
    .await;

    assert_eq!(sub.next_payload().await, "over tls");
    assert!(
        read_to_close(&mut idle).await.is_empty(),
        "idle TLS socket closed"
    );
    sub.stop().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn tls_with_a_users_file_serves_mosquitto_clients_with_cafile_and_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = ca_and_server_cert(dir.path());
    let config = BrokerConfig {
        tls: Some(TlsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert: pki.cert,
            key: pki.key,
        }),
        ..config_with_roles(dir.path())
    };
    let broker = start(config).await;
    let tls_addr = broker.tls_local_addr().expect("TLS listener");
    let cafile = pki.ca.to_string_lossy().into_owned();
    let mut sub = MosquittoSub::start_with(
        tls_addr,
        "mqttv5",
        "watcher-tls",
        "wattchain/ledger/block",
        &["--cafile", &cafile, "-u", "watcher", "-P", "watcher-secret"],
    )
    .await;

    // Over TLS the same refusals apply: a wrong password is told so.
    let (host, port) = (tls_addr.ip().to_string(), tls_addr.port().to_string());
    let wrong = mosquitto_run(
        "mosquitto_sub",
        &[
            "-h",
            &host,
            "-p",
            &port,
            "--cafile",
            &cafile,
            "-u",
            "watcher",
            "-P",
            "guess",
            "-t",
            "wattchain/#",
            "-C",
            "1",
            "-W",
            "5",
        ],
    )
    .await;
    assert_ne!(wrong.code, Some(0));
    assert!(
        wrong
            .stderr
            .to_lowercase()
            .contains("bad user name or password"),
        "{}",
        wrong.stderr
    );

    mosquitto_pub_with(
        tls_addr,
        "mqttv311",
        "wattchain/ledger/block",
        &["block over tls".to_owned()],
        &[
            "--cafile",
            &cafile,
            "-u",
            "publisher",
            "-P",
            "publisher-secret",
        ],
    )
    .await;
    assert_eq!(sub.next_payload().await, "block over tls");
    sub.stop().await;
    broker.shutdown().await;
}
