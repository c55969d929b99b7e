//! mosquitto as the reference broker (its own process, its own port) and the listening TCP
//! sockets of a process, read from /proc.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::WAIT;

/// A mosquitto broker process on a free loopback port; killed when dropped.
pub struct MosquittoBroker {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn mosquitto_exe() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto")
}

impl MosquittoBroker {
    /// Starts mosquitto with `extra` config lines (after `listener`, anonymous access and no
    /// persistence, which `extra` may override); `files` are written into its config
    /// directory first (password files).
    pub async fn start(extra: &str, files: &[(&str, String)]) -> MosquittoBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        // mosquitto started as root drops to its own user, which must read these files.
        set_mode(dir.path(), 0o755);
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write mosquitto file");
            set_mode(&path, 0o644);
        }
        let extra = extra.replace("{dir}", &dir.path().display().to_string());
        // mosquitto cannot listen on port 0 (it means a unix socket there): take a port free
        // now and retry with another one if someone else bound it meanwhile.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let conf = dir.path().join("mosquitto.conf");
            let anonymous = if extra.contains("allow_anonymous") {
                ""
            } else {
                "allow_anonymous true\n"
            };
            let text = format!(
                "listener {port} 127.0.0.1\n{anonymous}persistence false\nlog_dest stderr\n\
                 log_type error\nlog_type warning\nlog_type notice\nlog_type information\n{extra}\n"
            );
            std::fs::write(&conf, text).expect("write mosquitto.conf");
            // mosquitto block-buffers its log on a pipe; stdbuf makes it flush every line.
            let mut child = Command::new("stdbuf")
                .args(["-eL", mosquitto_exe(), "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("mosquitto must be installed (scripts/test installs it)");
            let stderr = child.stderr.take().expect("piped stderr");
            let (ready_tx, ready_rx) = oneshot::channel();
            // Reads the log until the end, so mosquitto never blocks on a full pipe.
            tokio::spawn(async move {
                let mut ready = Some(ready_tx);
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains(" running") {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            });
            // The "running" line comes after the listener is bound; a closed channel means
            // mosquitto exited (port taken, bad config).
            if timeout(WAIT, ready_rx)
                .await
                .expect("mosquitto start timed out")
                .is_ok()
            {
                return MosquittoBroker {
                    child,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    _dir: dir,
                };
            }
            let _ = child.wait().await;
        }
        panic!("mosquitto did not start on any of 5 free ports");
    }

    /// The MQTT listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("mosquitto still running")
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A mosquitto password file for `users` (name, password), made by `mosquitto_passwd`.
pub async fn mosquitto_password_file(users: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    std::fs::write(&path, "").expect("create passwd");
    for (name, password) in users {
        let status = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&path)
            .args([name, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("mosquitto_passwd must be installed (package mosquitto)");
        assert!(status.success(), "mosquitto_passwd failed");
    }
    std::fs::read_to_string(&path).expect("read passwd")
}

/// Every TCP socket in LISTEN state that process `pid` (or this process, `None`) holds open:
/// the socket inodes among its file descriptors, looked up in /proc/net/tcp and tcp6.
pub fn listening_sockets(pid: Option<u32>) -> Vec<SocketAddr> {
    let fd_dir = match pid {
        Some(pid) => format!("/proc/{pid}/fd"),
        None => "/proc/self/fd".to_string(),
    };
    let inodes: HashSet<String> = std::fs::read_dir(&fd_dir)
        .expect("read the process's file descriptors")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            Some(
                text.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                found.push(parse_proc_addr(fields[1]));
            }
        }
    }
    found
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6), each 32-bit word in host order.
fn parse_proc_addr(text: &str) -> SocketAddr {
    let (ip, port) = text.split_once(':').expect("address:port");
    let port = u16::from_str_radix(port, 16).expect("hex port");
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[8 * i..8 * i + 8], 16).expect("hex word"))
        .collect();
    let ip = if words.len() == 1 {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    } else {
        let mut bytes = [0u8; 16];
        for (i, word) in words.iter().enumerate() {
            bytes[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    };
    SocketAddr::new(ip, port)
}
