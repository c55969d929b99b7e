//! Agents' MQTT sessions against a broker with TLS and a users file: `mqtts://` with a CA file
//! and username/password, the way `--broker mqtts://… --ca-file … --username …` runs them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wattchain::bus::{BrokerUrl, Bus, BusError, BusOptions, QoS};
use wattchain_broker::{BrokerConfig, TlsConfig};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

fn openssl(args: &[&str], dir: &Path) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed for the TLS tests");
    assert!(status.success(), "openssl {args:?} succeeded");
}

/// Writes ca.pem and a server.pem/server.key for 127.0.0.1 signed by it into `dir`.
fn ca_and_server_cert(dir: &Path) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let ca = format!("req -x509 -days 1 {ec} -keyout ca.key -out ca.pem");
    let mut args: Vec<&str> = ca.split(' ').collect();
    args.extend(["-subj", "/CN=wattchain test CA"]);
    openssl(&args, dir);
    let csr = format!("req -new {ec} -keyout server.key -out server.csr");
    let mut args: Vec<&str> = csr.split(' ').collect();
    args.extend(["-subj", "/CN=127.0.0.1"]);
    openssl(&args, dir);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext file");
    let sign = "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                -extfile server.ext -out server.pem";
    openssl(&sign.split_whitespace().collect::<Vec<_>>(), dir);
}

/// A users file: the publisher may write the chain, the watcher only its own status (its will).
fn write_users(dir: &Path) {
    let mut text = String::new();
    for (name, publish) in [
        (
            "publisher",
            r#"["wattchain/ledger/#", "wattchain/agent/%u/status"]"#,
        ),
        ("watcher", r#"["wattchain/agent/%u/status"]"#),
    ] {
        let hash = wattchain_broker::hash_password(&format!("{name}-secret")).expect("hash");
        text.push_str(&format!(
            "[[users]]\nusername = {name:?}\npassword_hash = {hash:?}\npublish = {publish}\n"
        ));
    }
    std::fs::write(dir.join("users.toml"), text).expect("write users");
}

fn options(port: u16, dir: &Path, user: &str, password: &str) -> BusOptions {
    let url: BrokerUrl = format!("mqtts://127.0.0.1:{port}").parse().expect("url");
    let mut options = BusOptions::new(url, user, user);
    options.username = Some(user.to_owned());
    options.password = Some(password.to_owned());
    options.ca_file = Some(dir.join("ca.pem"));
    options
}

#[tokio::test]
async fn agents_log_in_over_mqtts_and_a_wrong_password_never_gets_a_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    ca_and_server_cert(dir.path());
    write_users(dir.path());
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        users_file: Some(dir.path().join("users.toml")),
        tls: Some(TlsConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
        }),
        ..BrokerConfig::default()
    };
    let broker = tokio::time::timeout(WAIT, wattchain_broker::start(config))
        .await
        .expect("broker start in time")
        .expect("broker starts");
    let port = broker.tls_local_addr().expect("TLS listener").port();

    let block = "wattchain/ledger/block".to_owned();
    let mut watcher = Bus::connect(
        options(port, dir.path(), "watcher", "watcher-secret"),
        vec![(block.clone(), QoS::AtLeastOnce)],
    )
    .expect("watcher bus");
    watcher
        .wait_ready(WAIT)
        .await
        .expect("watcher logged in over TLS");
    let publisher = Bus::connect(
        options(port, dir.path(), "publisher", "publisher-secret"),
        vec![],
    )
    .expect("publisher bus");
    publisher
        .wait_ready(WAIT)
        .await
        .expect("publisher logged in over TLS");
    publisher
        .outlet()
        .publish(
            block.clone(),
            &b"{\"index\":1}"[..],
            QoS::AtLeastOnce,
            false,
        )
        .await
        .expect("publish block");
    let got = tokio::time::timeout(WAIT, watcher.recv())
        .await
        .expect("block in time")
        .expect("watcher session open");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        (block.as_str(), &b"{\"index\":1}"[..])
    );

    let intruder = Bus::connect(options(port, dir.path(), "publisher", "guess"), vec![])
        .expect("intruder bus");
    let refused = intruder.wait_ready(Duration::from_secs(2)).await;
    assert!(
        matches!(refused, Err(BusError::NotReady { .. })),
        "{refused:?}"
    );

    intruder.close().await;
    publisher.close().await;
    watcher.close().await;
    broker.shutdown().await;
}
