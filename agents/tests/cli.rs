//! The `wattchain` binary as a user runs it: `up` with blocks visible to `mosquitto_sub`, a clean
//! stop on SIGTERM, `chain verify` exit codes, the broker's readiness line and port errors.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{free_port, WAIT};
use wattchain::ledger::Block;

fn wattchain() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wattchain"));
    c.env("RUST_LOG", "warn,rumqttd=off");
    c
}

/// A child process killed on drop, with its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wattchain runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The first stdout line satisfying `pred`, within [`WAIT`].
    fn line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(_) => panic!("no stdout line with {what} within {WAIT:?}"),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        block.contains(" V ") && block.contains("mined in"),
        "{block}"
    );

    // The retained head, then the next one, exactly as a user would watch them.
    let heads = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "wattchain/ledger/head", "-C", "2", "-W", "20"])
        .output()
        .expect("mosquitto_sub runs");
    assert!(heads.status.success(), "{}", text(&heads));
    let heads: Vec<Block> = String::from_utf8_lossy(&heads.stdout)
        .lines()
        .map(|l| Block::from_json(l).expect("the head is a block"))
        .collect();
    assert_eq!(heads.len(), 2);
    assert!(heads[1].index > heads[0].index, "the head moves forward");
    assert!(!heads[1].records().is_empty());

    let status = up.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");

    let chain = data.path().join("chain.jsonl");
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
    let target = lines.len() - 1;
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
    ] {
        assert!(text(&help).contains(flag), "cabinet --help mentions {flag}");
    }
}
