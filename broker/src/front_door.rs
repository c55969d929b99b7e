//! The front door: accepts on the public ports, reads and judges CONNECT, and hands accepted
//! clients to rumqttd's v4 or v5 loopback listener.
//!
//! Every guard here exists because rumqttd 0.20 misbehaves without it (see design.md):
//! handshake timeout, protocol routing, client-id rewriting, connection limit,
//! authentication (`auth`, including the will topic's permission) and one-connection-per-id
//! (`sessions`) before rumqttd sees anything; the packet-size limit and, with users configured,
//! the permission gate (`gate`) in [`crate::relay`].

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

use crate::auth::Authenticator;
use crate::client_id;
use crate::config::BrokerConfig;
use crate::framing::{fixed_header, FixedHeader, Framer};
use crate::gate::Gate;
use crate::internal::Rumqttd;
use crate::packet::{connack_refusal, Connect, PacketError, ProtocolVersion, Refusal};
use crate::relay::{relay, Inbound, RelayParams, SplitStream};
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
    /// Users and the password verifier; `None` when no users are configured (open broker).
    pub auth: Option<Authenticator>,
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
pub(crate) enum FirstPacketError {
    #[error("connection closed before CONNECT")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Packet(#[from] PacketError),
}

/// What a public listener speaks under MQTT.
#[derive(Clone)]
pub(crate) enum Transport {
    /// MQTT straight over TCP.
    Plain,
    /// MQTT over TLS, terminated here.
    Tls(TlsAcceptor),
    /// MQTT over WebSocket.
    WebSocket,
}

impl FrontDoor {
    /// Accepts on `listener` until shutdown, unwrapping `transport` (TLS, WebSocket) first.
    pub(crate) async fn accept_loop(self: Arc<Self>, listener: TcpListener, transport: Transport) {
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
            let transport = transport.clone();
            self.tracker.spawn(async move {
                match transport {
                    Transport::Plain => door.serve(stream, peer).await,
                    Transport::Tls(tls) => door.serve_tls(stream, peer, tls).await,
                    Transport::WebSocket => door.serve_ws(stream, peer).await,
                }
            });
        }
    }

    async fn serve_tls(&self, stream: TcpStream, peer: SocketAddr, tls: TlsAcceptor) {
        self.upgrade_then_admit(peer, "TLS", tls.accept(stream))
            .await;
    }

    /// Runs a transport's handshake (`upgrade`) and reads CONNECT, both within the connect
    /// timeout, then admits the client: an idle socket can never hold a listener.
    pub(crate) async fn upgrade_then_admit<S, F>(
        &self,
        peer: SocketAddr,
        transport: &'static str,
        upgrade: F,
    ) where
        F: std::future::Future<Output = std::io::Result<S>>,
        S: AsyncRead + AsyncWrite + Unpin + SplitStream,
    {
        let timeout = self.config.connect_timeout;
        let handshake = tokio::time::timeout(timeout, async {
            let mut stream = upgrade.await?;
            let first = read_packet(&mut stream, 0x10, self.config.max_packet_size).await;
            Ok::<_, std::io::Error>((stream, first))
        });
        let shaken = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            shaken = handshake => shaken,
        };
        match shaken {
            Err(_) => info!(%peer, ?timeout, transport, "closing connection: no CONNECT in time"),
            Ok(Err(err)) => {
                info!(%peer, cause = %err, transport, "closing connection: handshake failed")
            }
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
    pub(crate) async fn admit<S>(
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
        let mut to_broker = match self.authorize(&connect, peer).await {
            Ok(inbound) => inbound,
            Err(refusal) => return refuse(stream, &connack_refusal(version, refusal)).await,
        };
        // Bytes the client pipelined after CONNECT (often SUBSCRIBE) belong to rumqttd too,
        // once they pass the same checks as later ones.
        let mut pipelined_allowed = Vec::new();
        let mut early_replies = Vec::new();
        match &mut to_broker {
            Inbound::Framed(framer) => match framer.feed(pipelined) {
                Ok(()) => pipelined_allowed.extend_from_slice(pipelined),
                Err((_, violation)) => {
                    return warn!(%peer, cause = %violation, "closing connection");
                }
            },
            Inbound::Gated(gate) => {
                if let Err(err) = gate.feed(pipelined, &mut pipelined_allowed, &mut early_replies) {
                    return warn!(%peer, cause = %err, "closing connection");
                }
            }
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
        forward.extend_from_slice(&pipelined_allowed);
        let (upstream, connack) = match self.open_upstream(version, &forward).await {
            Ok(opened) => opened,
            Err(cause) => {
                warn!(%peer, %cause, "refusing connection: rumqttd did not accept it");
                return refuse(stream, &connack_refusal(version, Refusal::ServerBusy)).await;
            }
        };
        let mut to_client = Framer::new(usize::MAX);
        let _ = to_client.feed(&connack);
        // The CONNACK read is whole, so the gate's early answers follow it on a boundary.
        let first_bytes = [connack.as_slice(), early_replies.as_slice()].concat();
        if let Err(err) = stream.write_all(&first_bytes).await {
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

    /// Checks credentials and the will topic when users are configured, and picks how the
    /// client's packets will be checked: gated by the user's permissions, or only framed.
    async fn authorize(&self, connect: &Connect, peer: SocketAddr) -> Result<Inbound, Refusal> {
        let limit = self.config.max_packet_size;
        let Some(auth) = &self.auth else {
            return Ok(Inbound::Framed(Framer::from_client(limit)));
        };
        let permissions = auth.login(connect).await.inspect_err(|refusal| {
            warn!(%peer, user = ?connect.username, ?refusal, "refusing connection: authentication");
        })?;
        let username = connect.username.clone().unwrap_or_default();
        if let Some(topic) = &connect.will_topic {
            // A will is a publish the broker makes on the client's behalf later.
            if !permissions.may_publish(topic) {
                warn!(%peer, user = %username, will_topic = %topic, "refusing connection: will topic not authorized");
                return Err(Refusal::NotAuthorized);
            }
        }
        let gate = Gate::new(permissions, connect.version, limit, peer, username);
        Ok(Inbound::Gated(Box::new(gate)))
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
pub(crate) async fn read_packet<S: AsyncRead + Unpin>(
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
