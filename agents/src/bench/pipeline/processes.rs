//! The broker, averagers and nodes as child processes of this executable
//! (`wattchain broker|averager|node`), so each role's memory is its own process's.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{PipelineBench, PipelineBenchError};
use crate::bus::{BrokerUrl, Bus};
use crate::messages::{AgentStatus, Presence};
use crate::topics::Topics;

/// Resident memory of one role's process.
#[derive(Debug, Clone, Serialize)]
pub struct RoleMemory {
    /// `broker`, `node-N`, `averager-N`.
    pub role: String,
    /// Its process id.
    pub pid: u32,
    /// VmRSS once connected, before production, KiB.
    pub idle_kib: u64,
    /// VmHWM at the end of the run, KiB.
    pub peak_kib: u64,
}

/// The running children.
#[derive(Default)]
pub(super) struct Children {
    roles: Vec<(String, Child, u64)>,
}

fn spawn(role: &str, args: &[&str]) -> Result<Child, PipelineBenchError> {
    let exe = std::env::current_exe().map_err(|source| PipelineBenchError::Spawn {
        role: role.to_string(),
        source,
    })?;
    // Children log warnings only unless told otherwise: a line per block would flood stderr.
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string());
    Command::new(exe)
        .args(args)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PipelineBenchError::Spawn {
            role: role.to_string(),
            source,
        })
}

impl Children {
    /// Starts a broker child on a free loopback port; returns its URL.
    pub(super) async fn start_broker(&mut self) -> Result<BrokerUrl, PipelineBenchError> {
        let mut child = spawn("broker", &["broker", "--listen", "127.0.0.1:0"])?;
        let stdout = child
            .stdout
            .take()
            .ok_or(PipelineBenchError::NotReady("broker"))?;
        let mut lines = BufReader::new(stdout).lines();
        // `wattchain broker` prints "wattchain broker ready on ADDR (...)" once it is bound.
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .ok()
            .and_then(|l| l.ok().flatten())
            .ok_or(PipelineBenchError::NotReady("broker"))?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<std::net::SocketAddr>().ok())
            .ok_or(PipelineBenchError::NotReady("broker"))?;
        self.roles.push(("broker".into(), child, 0));
        Ok(format!("mqtt://{addr}").parse()?)
    }

    /// Starts the nodes and the averagers on `url`; waits until each announces itself
    /// online on `observer` (subscribed to every agent status).
    pub(super) async fn start_agents(
        &mut self,
        bench: &PipelineBench,
        url: &BrokerUrl,
        dir: &Path,
        observer: &mut Bus,
        topics: &Topics,
    ) -> Result<(), PipelineBenchError> {
        let run = std::process::id();
        let broker = url.to_string();
        let mut waiting = HashSet::new();
        let genesis = dir.join(crate::ledger::GENESIS_FILE);
        let genesis = genesis.to_string_lossy();
        for n in 1..=bench.nodes {
            let id = format!("bench-node-{run}-{n}");
            let data = dir.join(format!("node-{n}"));
            let data = data.to_string_lossy();
            let child = spawn(
                "node",
                &[
                    "node",
                    "--broker",
                    &broker,
                    "--id",
                    &id,
                    "--data-dir",
                    &data,
                    "--genesis",
                    &genesis,
                ],
            )?;
            self.roles.push((format!("node-{n}"), child, 0));
            waiting.insert(topics.agent_status(&id));
        }
        for n in 1..=bench.averagers {
            let id = format!("bench-averager-{run}-{n}");
            let child = spawn("averager", &["averager", "--broker", &broker, "--id", &id])?;
            self.roles.push((format!("averager-{n}"), child, 0));
            waiting.insert(topics.agent_status(&id));
        }
        let ready = async {
            while !waiting.is_empty() {
                let Some(msg) = observer.recv().await else {
                    return false;
                };
                let online = serde_json::from_slice::<AgentStatus>(&msg.payload)
                    .is_ok_and(|s| s.state == Presence::Online);
                if online {
                    waiting.remove(&msg.topic);
                }
            }
            true
        };
        match tokio::time::timeout(Duration::from_secs(20), ready).await {
            Ok(true) => Ok(()),
            _ => Err(PipelineBenchError::NotReady("node or averager")),
        }
    }

    /// Records each child's current RSS as its idle figure.
    pub(super) fn mark_idle(&mut self) {
        for (_, child, idle) in &mut self.roles {
            *idle = child
                .id()
                .and_then(|pid| status_kib(pid, "VmRSS"))
                .unwrap_or(0);
        }
    }

    /// Each child's idle and peak memory, read now.
    pub(super) fn memory(&self) -> Vec<RoleMemory> {
        self.roles
            .iter()
            .map(|(role, child, idle)| {
                let pid = child.id().unwrap_or(0);
                RoleMemory {
                    role: role.clone(),
                    pid,
                    idle_kib: *idle,
                    peak_kib: status_kib(pid, "VmHWM").unwrap_or(0),
                }
            })
            .collect()
    }

    /// Stops every child (the run is over: nothing of theirs is kept).
    pub(super) async fn stop(self) {
        for (_, mut child, _) in self.roles.into_iter().rev() {
            let _ = child.kill().await;
        }
    }
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    super::status_kib_of(&pid.to_string(), field)
}
