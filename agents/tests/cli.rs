//! The `wattchain` binary as a user runs it: `up` with blocks visible to `mosquitto_sub`, a clean
//! stop on SIGTERM, `chain verify` exit codes, the broker's readiness line and port errors.

mod support;

use std::process::{Command, Output};

use support::process::{mosquitto_sub, parse_sub_line, wattchain, Proc};
use support::{free_port, TestBroker, TestSim};
use wattchain::node::wire::HeadMessage;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `wattchain up` on `port` writing to `data`, fast enough for a test (low difficulty, short
/// period and windows).
fn fast_up(port: u16, data: &std::path::Path) -> Vec<String> {
    let listen = format!("127.0.0.1:{port}");
    let data = data.to_string_lossy().into_owned();
    let args = [
        "up",
        "--listen",
        &listen,
        "--data-dir",
        &data,
        "--http",
        "127.0.0.1:0",
    ];
    let fast = ["--difficulty", "8", "--period", "50ms", "--window", "2"];
    args.iter()
        .chain(fast.iter())
        .map(|a| a.to_string())
        .collect()
}

#[test]
fn up_mines_blocks_that_mosquitto_sub_sees_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let mut up = Proc::spawn(
        wattchain()
            .args(fast_up(port, data.path()))
            .args(["--churn", "500ms", "--seed", "7"]),
    );
    let watch = up.line("the mosquitto_sub line", |l| l.contains("mosquitto_sub"));
    assert!(watch.contains(&format!("-p {port}")), "{watch}");
    // The printed dashboard URL answers, as a newcomer would open it.
    let dashboard = up.line("the dashboard line", |l| {
        l.trim_start().starts_with("dashboard")
    });
    let http = dashboard
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("an address in {dashboard:?}"))
        .to_string();
    let page = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "10",
            &format!("http://{http}/api/v1/status"),
        ])
        .output()
        .expect("curl runs");
    assert!(page.status.success(), "{}", text(&page));
    assert!(String::from_utf8_lossy(&page.stdout).contains("\"mqtt_connected\""));
    let block = up.line("a block line", |l| {
        l.starts_with("block") && l.contains("c1#")
    });
    assert!(
        block.contains(" V ") && block.contains("mined in") && block.contains("by node-1"),
        "the block line names the node that mined it: {block}"
    );

    // The heads exactly as a user would watch them: the retained one and the live ones after
    // it. rmqtt's retainer may hand the retained copy over after a newer live head, so the
    // order is checked on the live ones (`%r` tells them apart): each has more work.
    let heads = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-t",
            "wattchain/ledger/head",
            "-F",
            "%r %p",
            "-C",
            "3",
            "-W",
            "20",
        ])
        .output()
        .expect("mosquitto_sub runs");
    assert!(heads.status.success(), "{}", text(&heads));
    let heads: Vec<(bool, HeadMessage)> = String::from_utf8_lossy(&heads.stdout)
        .lines()
        .map(|l| {
            let (retained, payload) = l.split_once(' ').expect("a retain flag and a payload");
            let head = serde_json::from_str(payload).expect("the head is a head message");
            (retained == "1", head)
        })
        .collect();
    assert_eq!(heads.len(), 3);
    let live: Vec<&HeadMessage> = heads.iter().filter(|(r, _)| !r).map(|(_, h)| h).collect();
    assert!(
        live.len() >= 2,
        "one retained head at most per subscription"
    );
    for pair in live.windows(2) {
        assert!(pair[1].work > pair[0].work, "the best head only gains work");
        assert!(pair[1].header.index > pair[0].header.index);
    }

    let status = up.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");

    let chain = data.path().join("node-1").join("chain.jsonl");
    let verify = wattchain()
        .args(["chain", "verify"])
        .arg(&chain)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("c1"), "{}", text(&verify));

    // One digit of one average changed: both verifiers name the block.
    let original = std::fs::read_to_string(&chain).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let target = lines
        .iter()
        .rposition(|l| l.contains("\"U\":2"))
        .expect("a block with a window");
    let tampered_line = lines[target].replacen("\"U\":2", "\"U\":3", 1);
    assert_ne!(
        tampered_line, lines[target],
        "found an average to tamper with"
    );
    let mut tampered: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    tampered[target] = tampered_line;
    let bad = data.path().join("tampered.jsonl");
    std::fs::write(&bad, tampered.join("\n") + "\n").unwrap();
    let verify = wattchain()
        .args(["chain", "verify"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(
        text(&verify).contains(&format!("block {target}")),
        "{}",
        text(&verify)
    );
    let py = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/verify_chain.py"
        ))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!py.status.success());
    assert!(
        text(&py).contains(&format!("block {target}")),
        "{}",
        text(&py)
    );

    // Started again, it continues the same chain.
    let mut again = Proc::spawn(wattchain().args(fast_up(free_port(), data.path())));
    let next = format!("block {:>5}", lines.len());
    again.line("the next block index", |l| l.starts_with(&next));
    assert!(again.terminate().success());
}

#[test]
fn the_broker_prints_a_ready_line_and_refuses_a_taken_port_by_name() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = wattchain()
        .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains(&port.to_string()) && msg.contains("--listen"),
        "{msg}"
    );

    let config = wattchain()
        .args(["broker", "generate-config"])
        .output()
        .unwrap();
    assert!(config.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, &config.stdout).unwrap();
    let mut broker = Proc::spawn(
        wattchain()
            .args(["broker", "--config"])
            .arg(&file)
            .args(["--listen", "127.0.0.1:0"]),
    );
    let ready = broker.line("the ready line", |l| l.contains("ready"));
    let addr = ready
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("address in {ready:?}"));
    let port = addr.rsplit(':').next().unwrap();
    let ping = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-t",
            "t",
            "-m",
            "x",
            "-V",
            "mqttv5",
        ])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{}", text(&ping));
    assert!(broker.terminate().success());
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["cabinet", "--modbus", "127.0.0.1:502", "--id", "c/1"],
            "invalid identifier",
        ),
        (
            &["averager", "--broker", "http://x:1"],
            "invalid broker URL",
        ),
        (&["up", "--window", "0"], "--window"),
        (&["sim", "--churn", "fast"], "churn"),
    ];
    for (args, expect) in cases {
        let out = wattchain().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(text(&out).contains(expect), "{args:?}: {}", text(&out));
    }
    let help = wattchain().args(["cabinet", "--help"]).output().unwrap();
    for flag in [
        "--modbus",
        "--id",
        "--period",
        "--window",
        "--data-dir",
        "--commit-deadline",
        "--broker",
        "--energy-every",
        "--ha-discovery",
        "--ha-prefix",
    ] {
        assert!(text(&help).contains(flag), "cabinet --help mentions {flag}");
    }
}

/// Every duration and count is checked before anything starts: a clear message and exit
/// status 1 (never a panic, 101), no broker banner, nothing written to the data directory,
/// and no connection retried forever.
#[test]
fn zero_periods_oversized_windows_and_broker_urls_that_are_not_urls_are_refused_before_anything_starts(
) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("never-created");
    let dir_arg = dir.to_string_lossy().into_owned();
    let cabinet = |extra: &[&str]| -> Vec<String> {
        let base = ["cabinet", "--modbus", "127.0.0.1:502", "--id", "c1"];
        base.iter()
            .chain(["--data-dir", dir_arg.as_str()].iter())
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let up = |extra: &[&str]| -> Vec<String> {
        [
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir_arg.as_str(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let node = |role: &str, extra: &[&str]| -> Vec<String> {
        [role, "--data-dir", dir_arg.as_str()]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            node("node", &["--threads", "5000"]),
            "mining threads (--threads) must be 0..=1024 (0: one per core), not 5000",
        ),
        (
            node("publisher", &["--threads", "5000"]),
            "must be 0..=1024 (0: one per core), not 5000",
        ),
        (
            node("node", &["--max-pending", "0"]),
            "windows in progress (--max-pending) must be at least 1, not 0",
        ),
        (
            node("publisher", &["--max-pending", "0"]),
            "(--max-pending) must be at least 1",
        ),
        (
            cabinet(&["--period", "0s"]),
            "--period must be greater than zero",
        ),
        (
            up(&["--period", "0s"]),
            "--period must be greater than zero",
        ),
        (
            cabinet(&["--window", "10001"]),
            "--window must be 1..=10000, not 10001",
        ),
        (up(&["--window", "10001"]), "--window must be 1..=10000"),
        (
            cabinet(&["--commit-deadline", "0s"]),
            "--commit-deadline must be greater than zero",
        ),
        (cabinet(&["--modbus-timeout", "0ms"]), "--modbus-timeout"),
        (cabinet(&["--outbox-capacity", "0"]), "--outbox-capacity"),
        (cabinet(&["--energy-every", "0s"]), "--energy-every"),
        (cabinet(&["--commit-deadline", "400days"]), "365 days"),
        (cabinet(&["--ha-prefix", "ha/+"]), "discovery prefix"),
        (up(&["--averagers", "1000"]), "--averagers must be 0..=64"),
        (
            cabinet(&["--broker", "not a url"]),
            "invalid broker URL \"not a url\"",
        ),
        (
            vec!["averager".into(), "--broker".into(), "not a url".into()],
            "not a host name",
        ),
        (
            ["bench", "modbus", "--period", "0s"]
                .map(String::from)
                .to_vec(),
            "--period must be greater than zero",
        ),
        (
            ["bench", "pipeline", "--tick", "0s"]
                .map(String::from)
                .to_vec(),
            "--tick must be greater than zero",
        ),
    ];
    for (args, expect) in cases {
        let out = wattchain().args(&args).output().expect("wattchain runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expect), "{args:?}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("is up"),
            "{args:?} printed the banner"
        );
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
}

/// A crashed cabinet's retained status must not claim counters it no longer knows: the will
/// is `{"cabinet","state":"offline"}` and nothing else.
#[test]
fn after_kill_9_the_retained_cabinet_status_is_the_will_and_claims_no_stale_counters() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = rt.block_on(TestBroker::embedded());
    let sim = rt.block_on(TestSim::start(false, 5));
    let port = broker.url().port;
    let data = tempfile::tempdir().unwrap();
    let status_topic = "wattchain/cabinet/c1/status";
    let watch = mosquitto_sub(port, &[status_topic]);
    let mut cabinet = Proc::spawn(wattchain().args([
        "cabinet",
        "--broker",
        &broker.url().to_string(),
        "--modbus",
        &sim.addr.to_string(),
        "--id",
        "c1",
        "--period",
        "20ms",
        "--window",
        "2",
        "--data-dir",
        &data.path().to_string_lossy(),
        "--genesis",
        &support::genesis_file(data.path()).to_string_lossy(),
    ]));
    let status = |line: &str| -> serde_json::Value {
        serde_json::from_str(&parse_sub_line(line).2).unwrap_or_default()
    };
    watch.line("a status past window 2", |l| {
        status(l)["next_window"].as_u64().is_some_and(|w| w >= 2)
    });
    assert!(!cabinet.kill9().success());
    let will = watch.line("the will", |l| status(l)["state"] == "offline");
    assert_eq!(
        status(&will),
        serde_json::json!({"cabinet": "c1", "state": "offline"}),
        "the will claims only what is true when it fires"
    );
    let retained = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", status_topic, "-C", "1", "-W", "20"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&retained.stdout).trim(),
        r#"{"cabinet":"c1","state":"offline"}"#
    );
    rt.block_on(broker.stop());
}

/// Logs are for a person at a terminal (colour) or for a file or pipe (plain); NO_COLOR
/// turns colour off even on a terminal.
#[test]
fn logs_are_coloured_only_on_a_terminal_and_never_with_no_color() {
    // An averager pointed at a port nobody listens on logs a warning at once, and retries.
    let nobody = format!("mqtt://127.0.0.1:{}", free_port());
    let exe = env!("CARGO_BIN_EXE_wattchain");
    let first_warning = |proc: Proc| -> String {
        let line = proc.line("a log line", |l| l.contains("MQTT connection lost"));
        drop(proc);
        line
    };
    // To a pipe.
    let piped = Proc::spawn_capturing_stderr(
        wattchain()
            .args(["averager", "--broker", &nobody])
            .env_remove("NO_COLOR"),
    );
    let line = piped.error_line("a log line", |l| l.contains("MQTT connection lost"));
    drop(piped);
    assert!(!line.contains('\x1b'), "escape codes in a pipe: {line:?}");
    // On a terminal (`script` gives the program a pseudo-terminal; `timeout` bounds its life).
    let on_tty = |no_color: Option<&str>| -> String {
        let inner = format!("timeout 20 {exe} averager --broker {nobody}");
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", &inner, "/dev/null"])
            .env("RUST_LOG", "warn")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        first_warning(Proc::spawn(&mut cmd))
    };
    let coloured = on_tty(None);
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_tty(Some("1"));
    assert!(!plain.contains('\x1b'), "NO_COLOR ignored: {plain:?}");
}

/// The defects of issue 15: an impossible difficulty is refused before anything starts or is
/// written; I/O errors name the right file once, with the right noun.
#[test]
fn impossible_difficulties_and_unusable_paths_are_refused_before_anything_is_written() {
    let data = tempfile::tempdir().unwrap();
    let afile = data.path().join("afile");
    std::fs::write(&afile, "").unwrap();
    let fresh = data.path().join("never-created");
    let fresh_arg = fresh.to_string_lossy().into_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            [
                "publisher",
                "--broker",
                "mqtt://127.0.0.1:1",
                "--difficulty",
                "256",
                "--data-dir",
                &fresh_arg,
            ]
            .map(String::from)
            .to_vec(),
            "at most 40",
        ),
        (
            [
                "publisher",
                "--broker",
                "mqtt://127.0.0.1:1",
                "--difficulty",
                "300",
                "--data-dir",
                &fresh_arg,
            ]
            .map(String::from)
            .to_vec(),
            "at most 40",
        ),
        (
            [
                "up",
                "--listen",
                "127.0.0.1:0",
                "--difficulty",
                "300",
                "--data-dir",
                &fresh_arg,
            ]
            .map(String::from)
            .to_vec(),
            "--difficulty must be 0..=40",
        ),
        (
            ["genesis", "new", "--difficulty", "41", "--out"]
                .iter()
                .map(|s| s.to_string())
                .chain([format!("{fresh_arg}/g.json")])
                .collect(),
            "2^41",
        ),
    ];
    for (args, expect) in cases {
        let out = wattchain().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expect), "{args:?}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("is up"),
            "{args:?}"
        );
        assert!(!fresh.exists(), "{args:?} wrote {}", fresh.display());
    }
    // A data directory that is a file: said once, as a data directory.
    let out = wattchain()
        .args(["publisher", "--broker", "mqtt://127.0.0.1:1", "--data-dir"])
        .arg(&afile)
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("data directory") && said.contains("not a directory"),
        "{said}"
    );
    assert_eq!(
        said.matches("not a directory").count(),
        1,
        "the cause once: {said}"
    );
    // chain verify of a missing file: an I/O error (exit 2) naming the chain file, not block 0.
    let out = wattchain()
        .args(["chain", "verify", "/nonexistent"])
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("cannot read chain file /nonexistent"),
        "{said}"
    );
    assert!(!said.contains("block 0"), "{said}");
    assert_eq!(said.matches("No such file").count(), 1, "{said}");
}

/// `genesis new`, `node keygen`, `chain show` as a user runs them.
#[test]
fn genesis_keygen_and_chain_show_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = dir.path().join("genesis.json");
    let out = wattchain()
        .args([
            "genesis",
            "new",
            "--consensus",
            "pow",
            "--difficulty",
            "6",
            "--finality-depth",
            "4",
            "--out",
        ])
        .arg(&genesis)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let g = wattchain::ledger::Genesis::load(&genesis).unwrap();
    assert!(
        text(&out).contains(&g.id().to_hex()),
        "prints the chain id: {}",
        text(&out)
    );
    assert_eq!(g.finality_depth, 4);
    let again = wattchain()
        .args(["genesis", "new", "--out"])
        .arg(&genesis)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );

    let key = dir.path().join("node.key");
    let out = wattchain()
        .args(["node", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        wattchain::ledger::NodeKey::load(&key)
            .unwrap()
            .public()
            .to_hex(),
        public
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let chain = dir.path().join("chain.jsonl");
    let blocks = support::mine_blocks(
        &g,
        &g.header(),
        &wattchain::ledger::NodeKey::load(&key).unwrap(),
        vec![vec![], vec![]],
    );
    let mut lines = vec![g.block().to_json()];
    lines.extend(blocks.iter().map(|b| b.to_json()));
    std::fs::write(&chain, lines.join("\n") + "\n").unwrap();
    let out = wattchain()
        .args(["chain", "show", "--from", "1", "--limit", "1"])
        .arg(&chain)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(shown.lines().count(), 1, "{shown}");
    assert!(
        shown.starts_with("#1 ") && shown.contains(&public[..8]),
        "{shown}"
    );
    let out = wattchain()
        .args(["chain", "show", "--json"])
        .arg(&chain)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let out = wattchain()
        .args(["chain", "verify"])
        .arg(&chain)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
