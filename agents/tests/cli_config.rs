//! `wattchain.toml` as a user meets it through the binary: `generate-config` prints a file that
//! reads back as exactly the defaults, every subcommand takes `--config`, a flag overrides the
//! file and the file the defaults, bad keys and values are named with their line, and `up` runs
//! its agents and broker (a WebSocket listener included) from the file.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use support::free_port;
use support::process::{wattchain, Proc};
use wattchain::config::WattchainConfig;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, asserts it exits 1 (a refused configuration), returns what it printed.
fn refused(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    out
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn generate_config_prints_a_file_that_reads_back_as_exactly_the_defaults() {
    let out = wattchain().arg("generate-config").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let parsed = WattchainConfig::from_toml(&printed, Path::new("generated.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{printed}"));
    assert_eq!(parsed, WattchainConfig::default());
    for section in [
        "[bus]",
        "[ha]",
        "[broker]",
        "[cabinet]",
        "[simulator]",
        "[averager]",
        "[node]",
        "[publisher]",
        "[web]",
        "[up]",
    ] {
        assert!(
            printed.contains(&format!("\n{section}\n")),
            "{section} in\n{printed}"
        );
    }
    // The broker's own commented default is the [broker] section, tables nested under it.
    let broker = wattchain()
        .args(["broker", "generate-config"])
        .output()
        .unwrap();
    let broker = String::from_utf8(broker.stdout).unwrap();
    let first = broker.lines().find(|l| l.starts_with("listen")).unwrap();
    assert!(printed.contains(first), "{first}");
    assert!(!printed.lines().any(|l| l == "[rumqttd]" || l == "[tls]"));

    // And it is a file every subcommand runs with: the simulator, from it.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "wattchain.toml", &printed);
    let port = free_port();
    let mut sim = Proc::spawn(
        wattchain()
            .args(["sim", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    let ready = sim.line("the listening line", |l| l.contains("listening on"));
    assert!(ready.ends_with(&format!("127.0.0.1:{port}")), "{ready}");
    assert!(sim.terminate().success());
}

#[test]
fn a_flag_overrides_the_file_and_the_file_overrides_the_default() {
    let dir = tempfile::tempdir().unwrap();
    // The default is 127.0.0.1:5020; the file asks for any free port.
    let file = write(
        dir.path(),
        "w.toml",
        "[simulator]\nlisten = \"127.0.0.1:0\"\nno_noise = true\n",
    );
    let mut sim = Proc::spawn(wattchain().args(["sim", "--config"]).arg(&file));
    let ready = sim.line("the listening line", |l| l.contains("listening on"));
    let port: u16 = ready.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 5020, "the file's port 0, not the default: {ready}");
    assert!(sim.terminate().success());

    let port = free_port();
    let mut sim = Proc::spawn(
        wattchain()
            .args(["sim", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    let ready = sim.line("the listening line", |l| l.contains("listening on"));
    assert!(
        ready.ends_with(&format!("127.0.0.1:{port}")),
        "the flag wins: {ready}"
    );
    assert!(sim.terminate().success());

    // A value the file makes invalid is refused; the same value from a flag overrides it.
    let bad = write(dir.path(), "bad.toml", "[cabinet]\nwindow = 10001\n");
    let out = refused(
        wattchain()
            .args([
                "cabinet",
                "--id",
                "c1",
                "--modbus",
                "127.0.0.1:1",
                "--config",
            ])
            .arg(&bad),
    );
    assert!(
        text(&out).contains("--window must be 1..=10000, not 10001"),
        "{}",
        text(&out)
    );
    let out = wattchain()
        .args([
            "cabinet",
            "--id",
            "c1",
            "--modbus",
            "127.0.0.1:1",
            "--window",
            "8",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("cabinet"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!text(&out).contains("--window"), "{}", text(&out));
    assert!(
        !dir.path().join("cabinet").exists(),
        "refused before its data directory is written"
    );
    assert!(
        text(&out).contains("genesis"),
        "next check, the genesis: {}",
        text(&out)
    );
}

#[test]
fn an_unknown_key_is_refused_with_its_path_and_line_and_a_bad_duration_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let typo = write(
        dir.path(),
        "typo.toml",
        "[bus]\nroot = \"site\"\n\n[cabinet]\nperod = \"2s\"\n",
    );
    let out = refused(wattchain().args(["cabinet", "--config"]).arg(&typo));
    let message = text(&out);
    assert!(
        message.contains("typo.toml, line 5") && message.contains("cabinet.perod"),
        "{message}"
    );
    assert!(
        message.contains("`period`"),
        "the keys it could be: {message}"
    );

    let duration = write(
        dir.path(),
        "d.toml",
        "[up]\nnodes = 2\n[cabinet]\nperiod = \"2 parsecs\"\n",
    );
    let out = refused(wattchain().args(["up", "--config"]).arg(&duration));
    let message = text(&out);
    assert!(
        message.contains("line 4")
            && message.contains("cabinet.period")
            && message.contains("2 parsecs"),
        "{message}"
    );
    assert!(!message.contains("wattchain is up"), "{message}");
}

#[test]
fn every_subcommand_takes_config_and_reads_it_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "[nodes]\ncount = 3\n");
    let good = write(dir.path(), "good.toml", "[bus]\nroot = \"site\"\n");
    let out_file = dir.path().join("never-written");
    let out = out_file.to_str().unwrap();
    let subcommands: &[&[&str]] = &[
        &["up"],
        &["broker"],
        &["broker", "generate-config"],
        &["sim"],
        &["cabinet"],
        &["cabinet", "churn"],
        &["cabinet", "forget"],
        &["averager"],
        &["node"],
        &["node", "keygen", "--out", out],
        &["publisher"],
        &["web"],
        &["genesis", "new", "--out", out],
        &["chain", "verify", out],
        &["chain", "show", out],
        &["bench", "mine", "--seconds", "0.1"],
        &["generate-config"],
    ];
    for args in subcommands {
        let run = wattchain()
            .args(*args)
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        let message = text(&run);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {message}");
        assert!(
            message.contains("bad.toml, line 1") && message.contains("unknown field `nodes`"),
            "{args:?}: {message}"
        );
        assert!(
            !out_file.exists(),
            "{args:?} wrote before reading its config"
        );
    }
    let run = wattchain()
        .args(["generate-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    // Before the subcommand, too.
    let run = wattchain()
        .arg("--config")
        .arg(&good)
        .args(["chain", "show"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        !text(&run).contains("unexpected argument"),
        "{}",
        text(&run)
    );
}

#[test]
fn help_shows_the_defaults_of_the_one_place_they_live() {
    let defaults = WattchainConfig::default();
    let help = |args: &[&str]| {
        let out = wattchain().args(args).arg("--help").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let cabinet = help(&["cabinet"]);
    let period = humantime::format_duration(defaults.cabinet.period).to_string();
    assert!(
        cabinet.contains(&format!("[default: {period}]")),
        "{cabinet}"
    );
    assert!(
        cabinet.contains("[default: mqtt://127.0.0.1:1883]"),
        "{cabinet}"
    );
    let up = help(&["up"]);
    for shown in [
        format!("[default: {}]", defaults.broker.listen),
        format!("[default: {}]", defaults.up.churn),
        format!("[default: {}]", defaults.up.difficulty),
        format!("[default: {period}]"),
        "[default: on]".to_string(),
    ] {
        assert!(up.contains(&shown), "{shown} in\n{up}");
    }
    let node = help(&["node"]);
    assert!(node.contains("[default: off]"), "{node}");
    assert!(
        !node.contains("[default: web]"),
        "no other section's id: {node}"
    );
    let averager = help(&["averager"]);
    assert!(averager.contains("[default: U,I,PA,PR]"), "{averager}");
}

#[test]
fn up_runs_its_agents_and_broker_from_the_file_with_a_websocket_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, ws) = (free_port(), free_port());
    let data = dir.path().join("data");
    let file = write(
        dir.path(),
        "wattchain.toml",
        &format!(
            "[bus]\nroot = \"site\"\nquad_qos = 1\n\n\
             [broker]\nlisten = \"127.0.0.1:{mqtt}\"\n\n[broker.ws]\nlisten = \"127.0.0.1:{ws}\"\n\n\
             [cabinet]\nperiod = \"50ms\"\nwindow = 2\n\n\
             [up]\nnodes = 2\naveragers = 1\ndifficulty = 8\nhttp = \"off\"\nchurn = \"off\"\n\
             data_dir = {data:?}\n",
        ),
    );
    let mut up = Proc::spawn(
        wattchain()
            .args(["up", "--config"])
            .arg(&file)
            .args(["--nodes", "3"]),
    );
    let line = up.line("the WebSocket line", |l| l.contains("ws://"));
    assert!(line.contains(&format!("ws://127.0.0.1:{ws}/")), "{line}");
    let nodes = up.line("the nodes line", |l| l.trim_start().starts_with("nodes"));
    assert!(
        nodes.contains("node-1, node-2, node-3"),
        "the flag's 3 nodes: {nodes}"
    );
    let watch = up.line("the watch line", |l| l.contains("mosquitto_sub"));
    assert!(
        watch.contains(&format!("-p {mqtt}")) && watch.contains("'site/#'"),
        "the file's port and root: {watch}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", ws)).is_ok(),
        "the file's WebSocket listener accepts"
    );
    let block = up.line("a block line", |l| {
        l.starts_with("block") && l.contains("c1#")
    });
    assert!(block.contains("mined in"), "{block}");
    assert!(up.terminate().success());
    assert!(data.join("node-3").join("chain.jsonl").exists());
}

#[test]
fn up_logs_its_agents_in_with_the_bus_credentials_when_its_broker_has_users() {
    let dir = tempfile::tempdir().unwrap();
    let hash = wattchain_broker::hash_password("pipeline-secret").unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let file = write(
        dir.path(),
        "wattchain.toml",
        &format!(
            "[bus]\nusername = \"pipeline\"\npassword = \"pipeline-secret\"\n\n\
             [broker]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[broker.users]]\nusername = \"pipeline\"\npassword_hash = \"{hash}\"\n\
             publish = [\"#\"]\n\n\
             [cabinet]\nperiod = \"50ms\"\nwindow = 2\n\n\
             [up]\ndifficulty = 8\nhttp = \"off\"\nchurn = \"off\"\ndata_dir = {data:?}\n",
        ),
    );
    let mut up = Proc::spawn(wattchain().args(["up", "--config"]).arg(&file));
    // Blocks need the cabinet, the averagers and the node, each logged in.
    let block = up.line("a block line", |l| {
        l.starts_with("block") && l.contains("c1#")
    });
    assert!(block.contains("by node-1"), "{block}");
    // An anonymous client is refused by the same broker.
    let anonymous = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "wattchain/x", "-m", "x"])
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "{}", text(&anonymous));
    assert!(up.terminate().success());
}

#[test]
fn a_setting_without_a_default_comes_from_a_flag_or_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = refused(wattchain().args(["cabinet", "--modbus", "127.0.0.1:1"]));
    assert!(
        text(&out).contains("--id (or `cabinet.id` in the config file) is required"),
        "{}",
        text(&out)
    );
    let file = write(
        dir.path(),
        "w.toml",
        &format!(
            "[cabinet]\nid = \"c7\"\nmodbus = \"127.0.0.1:1\"\ndata_dir = {:?}\n",
            dir.path().join("c7")
        ),
    );
    let out = refused(wattchain().args(["cabinet", "--config"]).arg(&file));
    assert!(
        text(&out).contains("cabinet c7: no genesis given"),
        "id and modbus from the file, the genesis is what is missing: {}",
        text(&out)
    );
    let out = wattchain().arg("web").output().unwrap();
    assert!(
        text(&out).contains("--chain (or `web.chain`"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_readme_example_is_a_valid_file() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a TOML example in it");
    let parsed = WattchainConfig::from_toml(example, Path::new("README.md"))
        .unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(parsed.cabinet.id.as_deref(), Some("c1"));
    assert_ne!(parsed, WattchainConfig::default());
}
