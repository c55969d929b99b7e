//! The `wattchain` binary and `mosquitto_sub` as child processes, as a user runs them: lines of
//! their output on channels, bounded waits, SIGTERM or SIGKILL, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::WAIT;

/// The binary under test, quiet but for warnings.
pub fn wattchain() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wattchain"));
    c.env("RUST_LOG", "warn");
    c
}

/// A child process killed on drop, with its stdout (and, if asked, stderr) lines on channels.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub errors: Option<mpsc::Receiver<String>>,
}

fn read_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Proc {
    /// Starts `cmd` with stdout on [`Proc::lines`]; stderr goes to the test's.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::start(cmd, false)
    }

    /// Starts `cmd` with stdout on [`Proc::lines`] and stderr on [`Proc::errors`].
    pub fn spawn_capturing_stderr(cmd: &mut Command) -> Proc {
        Proc::start(cmd, true)
    }

    fn start(cmd: &mut Command, capture_stderr: bool) -> Proc {
        let stderr = if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the program runs");
        let lines = read_lines(child.stdout.take().unwrap());
        let errors = child.stderr.take().map(read_lines);
        Proc {
            child,
            lines,
            errors,
        }
    }

    /// The first stdout line satisfying `pred`, within [`WAIT`].
    pub fn line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        next_line(&self.lines, what, pred)
    }

    /// The first stderr line satisfying `pred`, within [`WAIT`].
    pub fn error_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        next_line(self.errors.as_ref().expect("stderr captured"), what, pred)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM")
    }

    /// Sends SIGKILL (a crash: no goodbye, no final save) and waits for the exit.
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal("-KILL")
    }

    fn signal(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 10 s after kill {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn next_line(lines: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if pred(&l) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line with {what} within {WAIT:?}"),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_sub -v`-like: every message on `filters` as `retain|topic|payload` lines.
pub fn mosquitto_sub(port: u16, filters: &[&str]) -> Proc {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-F", "%r|%t|%p"]);
    for f in filters {
        cmd.args(["-t", f]);
    }
    Proc::spawn(&mut cmd)
}

/// One `retain|topic|payload` line of [`mosquitto_sub`], split.
pub fn parse_sub_line(line: &str) -> (bool, String, String) {
    let mut parts = line.splitn(3, '|');
    let retain = parts.next() == Some("1");
    let topic = parts.next().unwrap_or_default().to_string();
    let payload = parts.next().unwrap_or_default().to_string();
    (retain, topic, payload)
}
