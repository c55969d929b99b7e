//! Harness of the web tests: a real `wattchain up` in-process (broker, simulator, cabinet,
//! averagers, a ledger node, web service, all on free ports), bounded waits on its API, and
//! response checks against the OpenAPI document it serves.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use wattchain::config::WattchainConfig;
use wattchain::sim::{Churn, ChurnSpec};
use wattchain::up::{self, UpConfig, UpEvent};
use wattchain::web::client::{self, Client, EventReader, Reply};
use wattchain::web::{HttpSettings, WebConfig};

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running `up` with its HTTP address.
pub struct Up {
    /// The HTTP API.
    pub http: SocketAddr,
    /// The broker URL.
    pub broker: String,
    /// The chain file.
    pub chain: PathBuf,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
}

/// `up` fast enough for a test: difficulty 8, 50 ms polls, windows of 2, loads switching.
pub fn fast_config(web: WebConfig) -> UpConfig {
    let mut file = WattchainConfig::default();
    file.broker.listen = "127.0.0.1:0".parse().unwrap();
    file.cabinet.period = Duration::from_millis(50);
    file.cabinet.window = 2;
    file.up.difficulty = 8;
    file.up.churn = Churn(Some("300ms".parse::<ChurnSpec>().unwrap()));
    file.up.seed = Some(7);
    file.node.threads = 1;
    let mut config = UpConfig::from_config(&file).expect("a valid configuration");
    config.http = Some(HttpSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        web,
    });
    config
}

impl Up {
    /// Starts `config` (its data directory replaced by a fresh one) and waits for it to be up.
    pub async fn start(mut config: UpConfig) -> Up {
        let data = tempfile::tempdir().unwrap();
        config.data_dir = data.path().to_path_buf();
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(up::run(config, shutdown.clone(), tx));
        let started = tokio::time::timeout(WAIT, async {
            while let Some(event) = rx.recv().await {
                if let UpEvent::Started {
                    http,
                    broker,
                    chain,
                    ..
                } = event
                {
                    return Some((http, broker, chain));
                }
            }
            None
        })
        .await
        .expect("up starts in time")
        .expect("up reports its start");
        let (http, broker, chain) = started;
        // Later events (blocks) are not needed; keep the channel drained.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        Up {
            http: http.expect("HTTP is on"),
            broker,
            chain,
            shutdown,
            task: Some(task),
            _data: data,
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[]).await
    }

    /// GET `path` with headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers).await
    }

    /// Any method on a fresh connection, within [`WAIT`].
    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let exchange = async {
            let mut c = Client::connect(self.http).await?;
            c.request(method, path, headers).await
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Opens `/api/v1/events` (with `headers`) on a fresh connection, within [`WAIT`].
    pub async fn events(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (hyper::StatusCode, hyper::HeaderMap, EventReader) {
        let open = async {
            let mut c = Client::connect(self.http).await?;
            c.send("GET", path, headers).await
        };
        let response = tokio::time::timeout(WAIT, open)
            .await
            .unwrap_or_else(|_| panic!("GET {path}: no answer within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (
            response.status(),
            response.headers().clone(),
            EventReader::new(response),
        )
    }

    /// Polls `path` until `pred` holds on its JSON, within [`WAIT`].
    pub async fn wait_for(
        &self,
        what: &str,
        path: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.poll(what, path, &[], pred).await
    }

    /// Polls `path` (with `headers`) until it answers 200, within [`WAIT`].
    pub async fn wait_for_with(
        &self,
        what: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> serde_json::Value {
        self.poll(what, path, headers, |v| {
            !v.is_null() && v.get("status").is_none()
        })
        .await
    }

    async fn poll(
        &self,
        what: &str,
        path: &str,
        headers: &[(&str, &str)],
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = tokio::time::timeout(WAIT, client::get(self.http, path, headers)).await;
            let reply = reply.map_err(|_| ()).and_then(|r| r.map_err(|_| ()));
            if let Ok(r) = reply {
                let v = r.json();
                if pred(&v) {
                    return v;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops everything and checks it stopped cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("up stops within 20 s of the shutdown");
        result
            .expect("up does not panic")
            .expect("up stops cleanly");
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Checks `instance` against the OpenAPI document's schema for `path`'s `status` response
/// (its `content_type` content), resolving `#/components/...` references.
pub fn check_against_openapi(
    doc: &serde_json::Value,
    path: &str,
    status: u16,
    content_type: &str,
    instance: &serde_json::Value,
) {
    let schema = doc
        .pointer(&format!(
            "/paths/{}/get/responses/{status}/content/{}/schema",
            path.replace('~', "~0").replace('/', "~1"),
            content_type.replace('~', "~0").replace('/', "~1"),
        ))
        .unwrap_or_else(|| {
            panic!(
                "the OpenAPI document declares no {status} {content_type} response for GET {path}"
            )
        });
    let mut root = schema.clone();
    if let Some(obj) = root.as_object_mut() {
        obj.insert("components".into(), doc["components"].clone());
    } else {
        panic!("schema of {path} {status} is not an object");
    }
    let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| {
        panic!("the schema of GET {path} {status} is not valid JSON Schema: {e}")
    });
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "GET {path} {status} does not match its OpenAPI schema:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// Publishes one message with the real `mosquitto_pub` (QoS 1), `retain` if asked.
pub fn mosquitto_pub(broker: &str, topic: &str, payload: &str, retain: bool) {
    let port = broker.rsplit(':').next().expect("mqtt://host:port");
    let mut cmd = std::process::Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-q",
        "1",
        "-t",
        topic,
        "-m",
        payload,
    ]);
    if retain {
        cmd.arg("-r");
    }
    let out = cmd
        .output()
        .expect("mosquitto_pub is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks a problem response: status, `code`, media type, and the document's Problem schema.
pub fn check_problem(doc: &serde_json::Value, what: &str, reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{what}: {:?}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{what}: problems are application/problem+json"
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
    let schema = serde_json::json!({
        "$ref": "#/components/schemas/Problem",
        "components": doc["components"].clone(),
    });
    let validator = jsonschema::validator_for(&schema).expect("Problem schema");
    assert!(
        validator.is_valid(&body),
        "{what}: {body} is not a Problem per the document"
    );
}
