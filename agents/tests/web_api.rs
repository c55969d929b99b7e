//! The HTTP API as a client sees it, against a real `wattchain up` in-process: every endpoint
//! answers in the shape its served OpenAPI document declares, bad input gets RFC 9457
//! problems, the event stream replays and resumes, a configured token is enforced, the event
//! stream is bounded, `/metrics` parses as Prometheus text and moves, and the standalone
//! `wattchain web` serves a chain and a broker it does not own.

mod web_support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use wattchain::web::client::EventReader;
use wattchain::web::{LiveLimits, WebConfig};
use web_support::{check_against_openapi, check_problem, fast_config, mosquitto_pub, Up, WAIT};

const JSON: &str = "application/json";

/// Waits for a chain with a committed window, and the cabinet's status.
async fn ready(up: &Up) -> (u64, String) {
    let head = up
        .wait_for("three blocks", "/api/v1/chain/head", |v| {
            v["length"].as_u64() >= Some(3)
        })
        .await;
    up.wait_for(
        "the cabinet's status and a window",
        "/api/v1/cabinets/c1",
        |v| v["status"].is_object() && v["windows"].as_array().is_some_and(|w| !w.is_empty()),
    )
    .await;
    let hash = head["block"]["hash"].as_str().unwrap().to_string();
    (head["block"]["index"].as_u64().unwrap(), hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_in_the_shape_its_openapi_document_declares() {
    let up = Up::start(fast_config(WebConfig::default())).await;
    let (head_index, head_hash) = ready(&up).await;
    // A ledger node's retained head, in whatever shape the node chooses: shown as it is.
    mosquitto_pub(
        &up.broker,
        "wattchain/ledger/node/n1/head",
        r#"{"index":5,"hash":"ab","state":"mining"}"#,
        true,
    );
    up.wait_for("node n1", "/api/v1/nodes", |v| {
        v["nodes"][0]["node"] == "n1"
    })
    .await;

    let doc = up.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );

    let cases: Vec<(&str, String)> = vec![
        ("/api/v1/status", "/api/v1/status".into()),
        ("/api/v1/chain/head", "/api/v1/chain/head".into()),
        (
            "/api/v1/chain/blocks",
            "/api/v1/chain/blocks?from=0&limit=2".into(),
        ),
        (
            "/api/v1/chain/blocks/{index}",
            "/api/v1/chain/blocks/1".into(),
        ),
        (
            "/api/v1/chain/blocks/by-hash/{hash}",
            format!("/api/v1/chain/blocks/by-hash/{head_hash}"),
        ),
        ("/api/v1/chain/verify", "/api/v1/chain/verify".into()),
        (
            "/api/v1/records/{cabinet}/{window}",
            "/api/v1/records/c1/0".into(),
        ),
        ("/api/v1/cabinets", "/api/v1/cabinets".into()),
        ("/api/v1/cabinets/{cabinet}", "/api/v1/cabinets/c1".into()),
        ("/api/v1/agents", "/api/v1/agents".into()),
        ("/api/v1/nodes", "/api/v1/nodes".into()),
    ];
    let mut bodies = HashMap::new();
    for (path, url) in &cases {
        let reply = up.get(url).await;
        assert_eq!(reply.status, 200, "GET {url}: {:?}", reply.body);
        assert_eq!(reply.header("content-type"), Some(JSON), "GET {url}");
        check_against_openapi(&doc, path, 200, JSON, &reply.json());
        bodies.insert(*path, reply.json());
    }
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let mut exercised: BTreeSet<String> = cases.iter().map(|(p, _)| p.to_string()).collect();
    exercised.extend(["/api/v1/events".to_string(), "/metrics".to_string()]);
    assert_eq!(
        documented, exercised,
        "every documented path is exercised, and only those"
    );

    // What the answers say, not only their shape.
    let status = &bodies["/api/v1/status"];
    assert_eq!(status["mqtt_connected"], true);
    assert_eq!(status["chain"]["valid"], true);
    let page = &bodies["/api/v1/chain/blocks"];
    assert_eq!(page["blocks"][0]["index"], 0, "genesis first");
    assert_eq!(
        page["blocks"][1]["previous_hash"],
        page["blocks"][0]["hash"]
    );
    assert_eq!(page["next"], "/api/v1/chain/blocks?from=2&limit=2");
    let by_hash = &bodies["/api/v1/chain/blocks/by-hash/{hash}"];
    assert!(by_hash["index"].as_u64() >= Some(head_index));
    let proof = &bodies["/api/v1/records/{cabinet}/{window}"];
    assert_eq!(
        (proof["cabinet"].as_str(), proof["window"].as_u64()),
        (Some("c1"), Some(0))
    );
    // Final by the genesis's rule (pow: k blocks on top), as the cabinet judges it.
    let k = wattchain::ledger::DEFAULT_FINALITY_DEPTH;
    let deep = |p: &serde_json::Value| p["confirmations"].as_u64().is_some_and(|c| c >= k);
    assert_eq!(proof["final"].as_bool(), Some(deep(proof)), "{proof}");
    let settled = up
        .wait_for("window 0 final", "/api/v1/records/c1/0", |p| {
            p["final"] == true
        })
        .await;
    assert!(
        deep(&settled),
        "final with fewer than {k} blocks on top: {settled}"
    );
    let block = up
        .get(&format!("/api/v1/chain/blocks/{}", proof["block"]["index"]))
        .await
        .json();
    assert_eq!(block["hash"], proof["block"]["hash"]);
    assert_eq!(
        block["data"]["records"][proof["position"].as_u64().unwrap() as usize],
        proof["record"]
    );
    let cabinet = &bodies["/api/v1/cabinets/{cabinet}"];
    assert!(cabinet["history"].as_array().is_some_and(|h| !h.is_empty()));
    assert_eq!(cabinet["averages"].as_array().map(Vec::len), Some(4));
    let agents: BTreeSet<&str> = bodies["/api/v1/agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "online")
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    for id in ["cabinet-c1", "averager-1", "averager-2", "node-1", "web"] {
        assert!(agents.contains(id), "{id} online in {agents:?}");
    }
    assert_eq!(
        bodies["/api/v1/nodes"]["nodes"][0]["head"]["state"],
        "mining"
    );

    // Bad input: problems, each with its status declared for its path.
    let declared = |path: &str, status: u16| {
        let p = format!("/paths/{}/get/responses/{status}", path.replace('/', "~1"));
        assert!(doc.pointer(&p).is_some(), "{status} is declared for {path}");
    };
    let hex = "ab".repeat(32);
    for (path, url, status, code) in [
        (
            "/api/v1/chain/blocks/{index}",
            "/api/v1/chain/blocks/999999".to_string(),
            404,
            "unknown_block",
        ),
        (
            "/api/v1/chain/blocks/{index}",
            "/api/v1/chain/blocks/abc".into(),
            400,
            "bad_index",
        ),
        (
            "/api/v1/chain/blocks",
            "/api/v1/chain/blocks?limit=1000000000".into(),
            400,
            "limit_too_large",
        ),
        (
            "/api/v1/chain/blocks",
            "/api/v1/chain/blocks?limit=0".into(),
            400,
            "limit_too_large",
        ),
        (
            "/api/v1/chain/blocks",
            "/api/v1/chain/blocks?limit=-1".into(),
            400,
            "bad_query",
        ),
        (
            "/api/v1/chain/blocks/by-hash/{hash}",
            "/api/v1/chain/blocks/by-hash/xyz".into(),
            400,
            "bad_hash",
        ),
        (
            "/api/v1/chain/blocks/by-hash/{hash}",
            format!("/api/v1/chain/blocks/by-hash/{hex}"),
            404,
            "unknown_block",
        ),
        (
            "/api/v1/records/{cabinet}/{window}",
            "/api/v1/records/c1/soon".into(),
            400,
            "bad_window",
        ),
        (
            "/api/v1/records/{cabinet}/{window}",
            "/api/v1/records/c%241/3".into(),
            400,
            "bad_cabinet",
        ),
        (
            "/api/v1/records/{cabinet}/{window}",
            "/api/v1/records/c1/99999999".into(),
            404,
            "unknown_record",
        ),
        (
            "/api/v1/cabinets/{cabinet}",
            "/api/v1/cabinets/nope".into(),
            404,
            "unknown_cabinet",
        ),
    ] {
        declared(path, status);
        check_problem(&doc, &url, &up.get(&url).await, status, code);
    }
    check_problem(
        &doc,
        "an unknown route",
        &up.get("/api/v2/chain").await,
        404,
        "no_such_route",
    );
    let post = up.request("POST", "/api/v1/chain/head", &[]).await;
    check_problem(&doc, "POST", &post, 405, "method_not_allowed");

    // The dashboard: embedded, this origin only.
    let page = up.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    for asset in ["/app.js", "/plot.js", "/style.css", "/favicon.svg"] {
        assert_eq!(up.get(asset).await.status, 200, "{asset}");
    }
    assert!(
        up.get("/")
            .await
            .header("access-control-allow-origin")
            .is_none(),
        "CORS is off by default"
    );
    up.stop().await;
}

/// Reads events until `n` have arrived, within [`WAIT`].
async fn take(reader: &mut EventReader, n: usize) -> Vec<wattchain::web::client::Event> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        while out.len() < n {
            match reader.next().await {
                Some(e) => out.push(e),
                None => panic!("the stream ended after {} events", out.len()),
            }
        }
    })
    .await
    .expect("events arrive in time");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_replay_the_latest_on_connect_and_resume_exactly_after_last_event_id() {
    let up = Up::start(fast_config(WebConfig::default())).await;
    ready(&up).await;
    let (status, headers, mut reader) = up.events("/api/v1/events", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    let first = take(&mut reader, 60).await;
    // Agents announce themselves once, at start: seeing them all means a replay.
    let agents: BTreeSet<String> = first
        .iter()
        .filter(|e| e.event == "agent")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        agents.len(),
        5,
        "every agent's status is replayed: {agents:?}"
    );
    let kinds: BTreeSet<&str> = first.iter().map(|e| e.event.as_str()).collect();
    for kind in ["quad", "cabinet", "block", "agent", "head", "average"] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    let ids: Vec<u64> = first
        .iter()
        .map(|e| e.id.expect("every event has an id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for e in &first {
        let v: serde_json::Value = serde_json::from_str(&e.data).expect("data is JSON");
        if e.event == "quad" {
            assert_eq!(v["cabinet"], "c1");
            assert!(v["PA"].is_number());
        }
    }
    drop(reader);

    // Reconnect having seen up to the 40th: exactly what came after it, nothing missed.
    let seen = first[39].id.unwrap().to_string();
    let (_, _, mut resumed) = up
        .events("/api/v1/events", &[("last-event-id", &seen)])
        .await;
    let again = take(&mut resumed, 20).await;
    assert_eq!(
        again,
        first[40..60].to_vec(),
        "resumed exactly after event {seen}"
    );

    // An id the server no longer holds (or never issued): the latest of everything again.
    let (_, _, mut fresh) = up.events("/api/v1/events", &[("last-event-id", "1")]).await;
    let fresh = take(&mut fresh, 30).await;
    assert!(fresh.iter().filter(|e| e.event == "agent").count() >= 5);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_for_data_and_the_page_still_loads_and_cors_is_opt_in() {
    let web = WebConfig {
        token: Some("s3cret+/=".into()),
        cors: vec!["http://wall.example".into()],
        ..WebConfig::default()
    };
    let up = Up::start(fast_config(web)).await;
    let doc = up.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200, "the document holds no data and stays open");
    let doc = doc.json();
    assert_eq!(
        up.get("/").await.status,
        200,
        "the dashboard's files hold no data"
    );
    for path in [
        "/api/v1/chain/head",
        "/api/v1/events",
        "/metrics",
        "/api/v1/cabinets",
    ] {
        let reply = up.get(path).await;
        check_problem(&doc, path, &reply, 401, "unauthorized");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"wattchain\"")
        );
        let wrong = up
            .get_with(path, &[("authorization", "Bearer guess")])
            .await;
        check_problem(&doc, path, &wrong, 401, "unauthorized");
    }
    let good = up
        .wait_for_with(
            "a head with the token",
            "/api/v1/chain/head",
            &[("authorization", "Bearer s3cret+/=")],
        )
        .await;
    assert!(good["block"]["hash"].is_string());
    // A dashboard served elsewhere: its preflight needs no token, its origin is allowed,
    // another origin is not.
    let preflight = up
        .request(
            "OPTIONS",
            "/api/v1/chain/head",
            &[
                ("origin", "http://wall.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
        )
        .await;
    assert!(
        preflight.status.is_success(),
        "preflight: {:?}",
        preflight.status
    );
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://wall.example")
    );
    let token = [
        ("authorization", "Bearer s3cret+/="),
        ("origin", "http://wall.example"),
    ];
    let allowed = up.get_with("/api/v1/chain/head", &token).await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://wall.example")
    );
    let other = [
        ("authorization", "Bearer s3cret+/="),
        ("origin", "http://elsewhere.example"),
    ];
    let refused = up.get_with("/api/v1/chain/head", &other).await;
    assert!(refused.header("access-control-allow-origin").is_none());
    // Where a header cannot be set (EventSource): the RFC 6750 query parameter.
    let (status, _, mut stream) = up
        .events("/api/v1/events?access_token=s3cret%2B%2F%3D", &[])
        .await;
    assert_eq!(status, 200);
    let events = take(&mut stream, 3).await;
    assert_eq!(events.len(), 3);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_and_a_client_that_stops_reading_is_dropped() {
    let web = WebConfig {
        max_sse_clients: 1,
        write_deadline: Duration::from_millis(300),
        // Room for the whole flood: only the write deadline can free the slot.
        live: LiveLimits {
            client_buffer: 100_000,
            ring: 100_000,
            ..LiveLimits::default()
        },
        ..WebConfig::default()
    };
    let up = Up::start(fast_config(web)).await;
    ready(&up).await;
    let doc = up.get("/api/openapi.json").await.json();

    // A client that never reads, with a tiny receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut stuck = socket.connect(up.http).await.unwrap();
    use tokio::io::AsyncWriteExt;
    stuck
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    up.wait_for(
        "the stuck client to hold the only slot",
        "/api/v1/status",
        |v| v["event_clients"] == 1,
    )
    .await;
    let refused = up.get("/api/v1/events").await;
    check_problem(&doc, "a second stream", &refused, 503, "too_many_streams");

    // Flood the live view (valid quadruplets of another cabinet) until the stuck client's
    // socket is full and its write deadline passes: its slot is freed.
    let flooding = tokio::spawn(flood(up.broker.clone(), 20_000));
    up.wait_for("the stuck client to be dropped", "/api/v1/status", |v| {
        v["event_clients"] == 0
    })
    .await;
    flooding.await.unwrap();
    let metrics = up.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("wattchain_web_stalled_total ")),
        "the drop is counted:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("wattchain_web_sse_refused_total ")),
        "{text}"
    );
    // The slot is free again.
    let (status, _, _again) = up.events("/api/v1/events", &[]).await;
    assert_eq!(status, 200);
    drop(stuck);
    up.stop().await;
}

/// Publishes `count` valid quadruplets of cabinet `flood` as fast as `mosquitto_pub -l` can.
async fn flood(broker: String, count: usize) {
    use tokio::io::AsyncWriteExt;
    let payload = r#"{"cabinet":"flood","seq":1,"ts":"2026-11-21T10:00:00.000Z","U":230.0,"I":1.0,"PA":230.0,"PR":0.0}"#;
    let port = broker.rsplit(':').next().unwrap().to_string();
    let lines: String = std::iter::repeat_n(format!("{payload}\n"), count).collect();
    let mut child = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "wattchain/cabinet/flood/quad",
            "-l",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the flood ends")
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_too_far_behind_is_disconnected_and_counted() {
    let web = WebConfig {
        live: LiveLimits {
            client_buffer: 16,
            ..LiveLimits::default()
        },
        ..WebConfig::default()
    };
    let up = Up::start(fast_config(web)).await;
    ready(&up).await;
    let (_, _, mut slow) = up.events("/api/v1/events", &[]).await;
    take(&mut slow, 1).await;
    // It reads nothing while 20 000 events go by, then tries to catch up: the stream ends.
    flood(up.broker.clone(), 20_000).await;
    let ended = tokio::time::timeout(WAIT, async {
        let mut read = 0usize;
        while slow.next().await.is_some() {
            read += 1;
        }
        read
    })
    .await
    .expect("the slow client is disconnected");
    assert!(
        ended < 20_000,
        "it was dropped, not served everything ({ended} events)"
    );
    let metrics = scrape(&String::from_utf8_lossy(&up.get("/metrics").await.body));
    assert!(total(&metrics, wattchain::metrics::WEB_SSE_DROPPED) >= Some(1.0));
    up.stop().await;
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("/metrics is Prometheus text format")
}

/// Sum of every sample of `name` (whatever the labels).
fn total(scrape: &prometheus_parse::Scrape, name: &str) -> Option<f64> {
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_with_the_documented_names_moving() {
    use wattchain::metrics as m;
    let up = Up::start(fast_config(WebConfig::default())).await;
    ready(&up).await;
    // A bad window task: an averager dead-letters it and the web service counts that.
    mosquitto_pub(
        &up.broker,
        "wattchain/cabinet/c1/window/U",
        "not json",
        false,
    );
    mosquitto_pub(
        &up.broker,
        "wattchain/ledger/node/n9/head",
        r#"{"index":41}"#,
        true,
    );
    let first = up.get("/metrics").await;
    assert_eq!(first.status, 200);
    assert!(first
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let before = scrape(&String::from_utf8_lossy(&first.body));
    let moving = [
        m::CABINET_QUADRUPLETS,
        m::CABINET_WINDOWS_PRODUCED,
        m::CABINET_WINDOWS_COMMITTED,
        m::AVERAGER_AVERAGES,
        m::WEB_MESSAGES,
        m::WEB_REQUESTS,
        // Recorded by the node runtime: it mines blocks, so both move.
        m::NODE_BLOCKS,
        m::NODE_HASHES,
    ];
    let present = [
        m::NODE_HASH_RATE,
        m::NODE_REORGS,
        m::NODE_STALE,
        m::NODE_SYNC_STATE,
        m::NODE_PENDING,
        m::CABINET_OUTBOX,
        m::CHAIN_BLOCKS,
        m::CHAIN_RECORDS,
        m::CHAIN_VALID,
        m::WEB_SSE_CLIENTS,
    ];
    for name in moving.iter().chain(present.iter()) {
        assert!(total(&before, name).is_some(), "{name} is exported");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = scrape(&String::from_utf8_lossy(&up.get("/metrics").await.body));
        let still: Vec<&str> = moving
            .iter()
            .copied()
            .filter(|n| total(&now, n) <= total(&before, n))
            .collect();
        let dead = total(&now, m::DEADLETTERS).unwrap_or(0.0) >= 1.0;
        let node = now.samples.iter().any(|s| {
            s.metric == m::NODE_HEIGHT
                && s.labels.get("node") == Some("n9")
                && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 41.0)
        });
        // The embedded broker's own counters, copied in every second: its agents are
        // connected, messages flow through it, and its drops are exported.
        let broker = total(&now, m::BROKER_CONNECTIONS) >= Some(3.0)
            && total(&now, m::BROKER_RECEIVED) > Some(0.0)
            && total(&now, m::BROKER_SENT) > Some(0.0)
            && total(&now, m::BROKER_DROPPED).is_some();
        if still.is_empty() && dead && node && broker {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not moving: {still:?}, dead letters {dead}, node height {node}, broker {broker}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(total(&before, m::CHAIN_VALID), Some(1.0));
    // The blocks counted are the ones this node produced, labelled with its id and origin.
    let produced = before.samples.iter().any(|s| {
        s.metric == m::NODE_BLOCKS
            && s.labels.get("origin") == Some("produced")
            && s.labels.get("node").is_some_and(|n| !n.is_empty())
            && matches!(s.value, prometheus_parse::Value::Counter(v) if v >= 1.0)
    });
    assert!(produced, "no node counted a produced block");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_http_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = fast_config(WebConfig::default());
    let addr = taken.local_addr().unwrap();
    config.http.as_mut().unwrap().listen = addr;
    config.data_dir = tempfile::tempdir().unwrap().keep();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let err = tokio::time::timeout(WAIT, wattchain::up::run(config, shutdown, tx))
        .await
        .expect("fails at once")
        .expect_err("a taken port is an error");
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("cannot listen for HTTP on {addr}")) && text.contains("--http"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_web_command_serves_a_chain_and_a_broker_it_does_not_own() {
    let up = Up::start(fast_config(WebConfig::default())).await;
    ready(&up).await;
    let mut web = tokio::process::Command::new(env!("CARGO_BIN_EXE_wattchain"))
        .args(["web", "--broker", &up.broker, "--chain"])
        .arg(&up.chain)
        .args(["--http", "127.0.0.1:0", "--id", "watcher-1"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(web.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.trim_start().starts_with("dashboard") {
                return l;
            }
        }
        panic!("no dashboard line");
    })
    .await
    .expect("the dashboard line in time");
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an address in {line:?}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    let get = |path: &'static str| async move {
        tokio::time::timeout(WAIT, wattchain::web::client::get(addr, path, &[]))
            .await
            .expect("the standalone service answers in time")
    };
    loop {
        let theirs = get("/api/v1/cabinets/c1").await;
        let head = get("/api/v1/chain/head").await;
        if let (Ok(c), Ok(h)) = (theirs, head) {
            if c.status == 200 && h.status == 200 && h.json()["length"].as_u64() >= Some(3) {
                let mine = up
                    .get(&format!(
                        "/api/v1/chain/blocks/{}",
                        h.json()["block"]["index"]
                    ))
                    .await;
                assert_eq!(mine.json(), h.json()["block"], "the same chain");
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standalone web service serves in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &web.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(WAIT, web.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    up.stop().await;
}
