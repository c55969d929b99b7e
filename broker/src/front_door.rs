//! The front door: accepts on the public ports, reads and judges CONNECT, and hands accepted
//! clients to rumqttd's v4 or v5 loopback listener.
//!
//! Every guard here exists because rumqttd 0.20 misbehaves without it (see design.md):
//! handshake timeout, protocol routing, client-id rewriting, connection limit,
//! authentication and one-connection-per-id (`sessions`) before rumqttd sees anything; the
//! packet-size limit in [`crate::relay`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::client_id;
use crate::config::{BrokerConfig, User};
use crate::framing::{fixed_header, FixedHeader, Framer};
use crate::internal::Rumqttd;
use crate::packet::{connack_refusal, Connect, PacketError, ProtocolVersion, Refusal};
use crate::relay::{relay, RelayParams, SplitStream};
use crate::sessions::Sessions;

/// Keep-alive forwarded to rumqttd for clients that ask for none (0): rumqttd refuses 0
/// without a CONNACK, so such clients get the longest interval MQTT can express (~18 h).
const KEEP_ALIVE_FOR_ZERO: u16 = u16::MAX;

/// State shared by every accept loop and connection task of one broker.
pub(crate) struct FrontDoor {
    /// The validated configuration.
    pub config: BrokerConfig,
    /// rumqttd's internal listeners.
    pub rumqttd: Rumqttd,
    /// One permit per allowed client connection.
    pub permits: Arc<Semaphore>,
    /// One relayed connection per client id.
    pub sessions: Arc<Sessions>,
    /// Broker-wide stop signal.
    pub shutdown: CancellationToken,
    /// Tracks every task so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Why a first packet was not read.
#[derive(Debug, thiserror::Error)]
enum FirstPacketError {
    #[error("connection closed before CONNECT")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Packet(#[from] PacketError),
}

impl FrontDoor {
    /// Accepts on `listener` until shutdown; `tls` terminates TLS first when present.
    pub(crate) async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    warn!(cause = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let door = Arc::clone(&self);
            let tls = tls.clone();
            self.tracker.spawn(async move {
                match tls {
                    Some(tls) => door.serve_tls(stream, peer, tls).await,
                    None => door.serve(stream, peer).await,
                }
            });
        }
    }

    async fn serve_tls(&self, stream: TcpStream, peer: SocketAddr, tls: TlsAcceptor) {
        let timeout = self.config.connect_timeout;
        let handshake = tokio::time::timeout(timeout, async {
            let mut stream = tls.accept(stream).await?;
            let first = read_packet(&mut stream, 0x10, self.config.max_packet_size).await;
            Ok::<_, std::io::Error>((stream, first))
        });
        let shaken = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            shaken = handshake => shaken,
        };
        match shaken {
            Err(_) => info!(%peer, ?timeout, "closing TLS connection: no CONNECT in time"),
            Ok(Err(err)) => info!(%peer, cause = %err, "closing connection: TLS handshake failed"),
            Ok(Ok((stream, first))) => self.admit(stream, peer, first).await,
        }
    }

    async fn serve(&self, mut stream: TcpStream, peer: SocketAddr) {
        let timeout = self.config.connect_timeout;
        let first = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            first = tokio::time::timeout(timeout, read_packet(&mut stream, 0x10, self.config.max_packet_size)) => first,
        };
        match first {
            Err(_) => info!(%peer, ?timeout, "closing connection: no CONNECT in time"),
            Ok(first) => self.admit(stream, peer, first).await,
        }
    }

    /// Judges the CONNECT and either refuses it with a CONNACK or relays the client.
    async fn admit<S>(
        &self,
        mut stream: S,
        peer: SocketAddr,
        first: Result<(Vec<u8>, usize), FirstPacketError>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + SplitStream,
    {
        let (buf, size) = match first {
            Ok(read) => read,
            Err(FirstPacketError::Closed) => {
                return debug!(%peer, "connection closed before CONNECT");
            }
            Err(err) => return warn!(%peer, cause = %err, "closing connection: bad first packet"),
        };
        let (packet, pipelined) = buf.split_at(size);
        let (connect, encoded_id) = match self.judge(packet, peer) {
            Ok(judged) => judged,
            Err(Verdict::Refuse(ack)) => return refuse(stream, &ack).await,
            Err(Verdict::Close) => return,
        };
        let version = connect.version;
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            warn!(%peer, limit = self.config.max_connections, "refusing connection: connection limit reached");
            return refuse(stream, &connack_refusal(version, Refusal::ServerBusy)).await;
        };
        let mut to_broker = Framer::from_client(self.config.max_packet_size);
        if let Err((_, violation)) = to_broker.feed(pipelined) {
            return warn!(%peer, cause = %violation, "closing connection");
        }
        // rumqttd gives every empty id a fresh random one, so those never collide.
        let claim = if encoded_id.is_empty() {
            None
        } else {
            let timeout = self.config.connect_timeout;
            match tokio::time::timeout(timeout, self.sessions.claim(&encoded_id)).await {
                Ok(claim) => Some(claim),
                Err(_) => {
                    warn!(%peer, client_id = %connect.client_id, "refusing connection: previous session with this id did not close in time");
                    return refuse(stream, &connack_refusal(version, Refusal::ServerBusy)).await;
                }
            }
        };
        let evicted = claim
            .as_ref()
            .map_or_else(CancellationToken::new, |claim| claim.evicted.clone());
        if evicted.is_cancelled() {
            // An even newer connection with this id arrived while this one waited.
            return info!(%peer, client_id = %connect.client_id, "closing connection: taken over before it started");
        }
        let mut forward = connect.splice(packet, &encoded_id, keep_alive_for(connect.keep_alive));
        // Bytes the client pipelined after CONNECT (often SUBSCRIBE) belong to rumqttd too.
        forward.extend_from_slice(pipelined);
        let (upstream, connack) = match self.open_upstream(version, &forward).await {
            Ok(opened) => opened,
            Err(cause) => {
                warn!(%peer, %cause, "refusing connection: rumqttd did not accept it");
                return refuse(stream, &connack_refusal(version, Refusal::ServerBusy)).await;
            }
        };
        let mut to_client = Framer::new(usize::MAX);
        let _ = to_client.feed(&connack);
        if let Err(err) = stream.write_all(&connack).await {
            return debug!(%peer, cause = %err, "client left before its CONNACK");
        }
        debug!(%peer, client_id = %connect.client_id, ?version, "relaying to rumqttd");
        let params = RelayParams {
            peer,
            version,
            shutdown: self.shutdown.clone(),
            evicted,
        };
        relay(stream, upstream, params, to_broker, to_client).await;
        // Released only now: the relay has seen rumqttd close this connection.
        drop(claim);
        drop(permit);
    }

    /// Parses CONNECT and applies the guards that need no resources: protocol level,
    /// credentials, client-id length. Returns the CONNECT and the client id rumqttd will see.
    fn judge(&self, packet: &[u8], peer: SocketAddr) -> Result<(Connect, String), Verdict> {
        let connect = match Connect::parse(packet) {
            Ok(connect) => connect,
            Err(PacketError::UnsupportedLevel(level)) => {
                info!(%peer, level, "refusing connection: unsupported MQTT protocol level");
                // 3.1.1's "unacceptable protocol version": what MQTT 3.1 clients understand.
                let ack = connack_refusal(ProtocolVersion::V4, Refusal::UnsupportedProtocol);
                return Err(Verdict::Refuse(ack));
            }
            Err(err) => {
                warn!(%peer, cause = %err, "closing connection: bad CONNECT");
                return Err(Verdict::Close);
            }
        };
        let version = connect.version;
        if let Some(refusal) = check_credentials(&self.config.users, &connect) {
            warn!(%peer, user = ?connect.username, ?refusal, "refusing connection: authentication");
            return Err(Verdict::Refuse(connack_refusal(version, refusal)));
        }
        let encoded_id = client_id::encode(&connect.client_id);
        if encoded_id.len() > client_id::MAX_ENCODED_LEN {
            warn!(%peer, len = connect.client_id.len(), "refusing connection: client id too long");
            return Err(Verdict::Refuse(connack_refusal(
                version,
                Refusal::ClientIdRejected,
            )));
        }
        Ok((connect, encoded_id))
    }

    /// Connects to rumqttd's listener for `version`, sends `forward` (the rewritten CONNECT
    /// and pipelined bytes) and returns the connection with rumqttd's CONNACK bytes.
    async fn open_upstream(
        &self,
        version: ProtocolVersion,
        forward: &[u8],
    ) -> Result<(TcpStream, Vec<u8>), String> {
        let internal = match version {
            ProtocolVersion::V4 => self.rumqttd.v4,
            ProtocolVersion::V5 => self.rumqttd.v5,
        };
        let mut upstream = TcpStream::connect(internal)
            .await
            .map_err(|err| format!("connect to {internal}: {err}"))?;
        let _ = upstream.set_nodelay(true);
        upstream
            .write_all(forward)
            .await
            .map_err(|err| format!("write to {internal}: {err}"))?;
        // Keep rumqttd's side open until its CONNACK is read: if its CONNACK write fails,
        // rumqttd leaves a stale entry for this client id and panics when the id returns.
        let timeout = self.config.connect_timeout;
        let limit = self.config.max_packet_size;
        match tokio::time::timeout(timeout, read_packet(&mut upstream, 0x20, limit)).await {
            Ok(Ok((connack, _))) => Ok((upstream, connack)),
            Ok(Err(err)) => Err(format!("no CONNACK from {internal}: {err}")),
            Err(_) => Err(format!("no CONNACK from {internal} within {timeout:?}")),
        }
    }
}

/// The outcome of a CONNECT that is not admitted.
enum Verdict {
    /// Answer with this CONNACK, then close.
    Refuse(Vec<u8>),
    /// Close without answering (the bytes were not MQTT enough to answer).
    Close,
}

/// The keep-alive forwarded to rumqttd for a client's requested one.
fn keep_alive_for(requested: u16) -> u16 {
    match requested {
        0 => KEEP_ALIVE_FOR_ZERO,
        secs => secs,
    }
}

/// Reads exactly one whole packet whose first byte must be `kind` (plus whatever followed it
/// in the same reads), failing as soon as the header shows the wrong type or a size over
/// `limit`. Returns the bytes and the packet's length.
async fn read_packet<S: AsyncRead + Unpin>(
    stream: &mut S,
    kind: u8,
    limit: usize,
) -> Result<(Vec<u8>, usize), FirstPacketError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(&first) = buf.first() {
            if first != kind {
                return Err(PacketError::NotConnect(first).into());
            }
            if let FixedHeader::Complete {
                header_len,
                remaining,
            } = fixed_header(&buf)?
            {
                let size = header_len + remaining;
                if size > limit {
                    return Err(PacketError::TooLarge { size, limit }.into());
                }
                if buf.len() >= size {
                    return Ok((buf, size));
                }
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(FirstPacketError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends a refusal CONNACK and closes.
async fn refuse<S: AsyncWrite + Unpin>(mut stream: S, connack: &[u8]) {
    let _ = stream.write_all(connack).await;
    let _ = stream.shutdown().await;
}

/// Decides authentication; `None` admits. No users configured admits everyone.
fn check_credentials(users: &[User], connect: &Connect) -> Option<Refusal> {
    if users.is_empty() {
        return None;
    }
    let Some(username) = &connect.username else {
        return Some(Refusal::NotAuthorized);
    };
    let password = connect.password.as_deref().unwrap_or_default();
    let known = users
        .iter()
        .find(|user| &user.username == username)
        .is_some_and(|user| constant_time_eq(user.password.as_bytes(), password));
    (!known).then_some(Refusal::BadCredentials)
}

/// Compares without an early exit on the first differing byte, so response time does not
/// reveal how much of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
