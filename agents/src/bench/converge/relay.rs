//! A TCP relay between one node and the broker that can cut the node off: its connections
//! dropped and new ones refused until it heals, while the node itself keeps running — what a
//! network partition does to it (the same device as `scripts/faults`' relays, in-process).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Whether connections pass, and the token that drops the current ones.
struct Gate {
    open: bool,
    connections: CancellationToken,
}

/// One relay, listening on a port of its own until `stop`.
pub(super) struct Relay {
    addr: SocketAddr,
    gate: Arc<Mutex<Gate>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay to `upstream` on `127.0.0.1:0`, open.
    pub(super) async fn start(
        upstream: SocketAddr,
        stop: CancellationToken,
    ) -> std::io::Result<Relay> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let gate = Arc::new(Mutex::new(Gate {
            open: true,
            connections: stop.child_token(),
        }));
        let task = tokio::spawn(accept(listener, upstream, gate.clone(), stop.clone()));
        Ok(Relay {
            addr,
            gate,
            stop,
            task,
        })
    }

    /// Where clients connect (`mqtt://127.0.0.1:PORT`).
    pub(super) fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Drops every connection through the relay and refuses new ones.
    pub(super) fn cut(&self) {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        gate.open = false;
        gate.connections.cancel();
    }

    /// Lets connections through again.
    pub(super) fn heal(&self) {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        gate.open = true;
        gate.connections = self.stop.child_token();
    }

    /// Waits for the accept loop to end (after `stop`).
    pub(super) async fn join(self) {
        let _ = self.task.await;
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    gate: Arc<Mutex<Gate>>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    debug!(cause = %e, "relay: accept failed");
                    continue;
                }
            },
        };
        let token = {
            let gate = gate.lock().unwrap_or_else(|e| e.into_inner());
            // Refused while cut: the client sees its connection closed at once.
            gate.open.then(|| gate.connections.clone())
        };
        if let Some(token) = token {
            tokio::spawn(pass(client, upstream, token));
        }
    }
}

/// Copies both ways until either side closes or the relay cuts.
async fn pass(mut client: TcpStream, upstream: SocketAddr, cut: CancellationToken) {
    let mut server = tokio::select! {
        _ = cut.cancelled() => return,
        s = TcpStream::connect(upstream) => match s {
            Ok(s) => s,
            Err(e) => {
                debug!(cause = %e, "relay: broker unreachable");
                return;
            }
        },
    };
    // The relay must not add Nagle's delay the direct connection does not have.
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
