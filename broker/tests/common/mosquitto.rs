//! The real mosquitto command-line clients, as IoT tools would use the broker.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::WAIT;

/// A mosquitto_sub process whose stdout lines (with -d debug output) arrive on a channel;
/// killed when dropped.
pub struct MosquittoSub {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub -d -V <version> -q 1 -t <filter>` and waits for its SUBACK.
    pub async fn start(addr: SocketAddr, version: &str, id: &str, filter: &str) -> MosquittoSub {
        Self::start_with(addr, version, id, filter, &[]).await
    }

    /// [`MosquittoSub::start`] with extra command-line arguments (credentials, TLS).
    pub async fn start_with(
        addr: SocketAddr,
        version: &str,
        id: &str,
        filter: &str,
        extra: &[&str],
    ) -> MosquittoSub {
        // mosquitto_sub block-buffers a piped stdout; stdbuf makes it flush every line.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-d",
                "-h",
                &addr.ip().to_string(),
                "-p",
                &addr.port().to_string(),
            ])
            .args(extra)
            .args(["-V", version, "-q", "1", "-i", id, "-t", filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("stdbuf (coreutils) must be installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sub = MosquittoSub { child, lines };
        // `-d` prints this after the SUBACK; payload lines follow it.
        sub.wait_for(|line| line.starts_with("Subscribed (mid:"))
            .await;
        sub
    }

    /// Waits (bounded) for a line matching `pred` and returns it.
    pub async fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        timeout(WAIT, async {
            loop {
                match self.lines.recv().await {
                    Some(line) if pred(&line) => return line,
                    Some(_) => continue,
                    None => panic!("mosquitto_sub exited (is it installed?)"),
                }
            }
        })
        .await
        .expect("mosquitto_sub line timed out")
    }

    /// The next payload line (not debug output), bounded by [`WAIT`].
    pub async fn next_payload(&mut self) -> String {
        self.wait_for(|line| !line.starts_with("Client ")).await
    }

    /// Payload lines (not debug output) received so far, without waiting.
    pub fn drain_payloads(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            if !line.starts_with("Client ") {
                out.push(line);
            }
        }
        out
    }

    /// Kills the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// How a mosquitto client process ended: exit code and stderr.
pub struct Exit {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// Runs `program` (mosquitto_pub or mosquitto_sub) with `args` to completion, bounded.
pub async fn mosquitto_run(program: &str, args: &[&str]) -> Exit {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto clients must be installed");
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .expect("mosquitto client timed out")
        .expect("mosquitto client ran");
    Exit {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs mosquitto_pub to completion (bounded) and asserts it succeeded.
pub async fn mosquitto_pub(addr: SocketAddr, version: &str, topic: &str, messages: &[String]) {
    mosquitto_pub_with(addr, version, topic, messages, &[]).await
}

/// [`mosquitto_pub`] with extra command-line arguments (credentials, TLS).
pub async fn mosquitto_pub_with(
    addr: SocketAddr,
    version: &str,
    topic: &str,
    messages: &[String],
    extra: &[&str],
) {
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(extra)
        .args(["-V", version, "-q", "1", "-t", topic, "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .expect("mosquitto_pub must be installed (tests fail rather than skip without it)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("feed mosquitto_pub");
    drop(stdin);
    let output = timeout(WAIT, child.wait_with_output())
        .await
        .expect("mosquitto_pub timed out")
        .expect("mosquitto_pub ran");
    assert!(
        output.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
