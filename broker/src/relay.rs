//! Relaying an accepted client to rumqttd once its CONNECT passed the guards.
//!
//! Client → broker bytes are framed (fixed headers only, bodies are skipped) so a packet over
//! the limit is caught before rumqttd sees it; with users configured they pass the permission
//! gate ([`crate::gate`]) instead, which reads whole packets. Broker → client bytes are copied
//! as they come, with only their packet boundaries tracked so the front door can insert its own
//! DISCONNECT, PUBACK or SUBACK without cutting a relayed packet in half.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::framing::Framer;
use crate::gate::{Gate, GateError};
use crate::packet::{
    PacketError, ProtocolVersion, DISCONNECT_MALFORMED, DISCONNECT_NOT_AUTHORIZED,
    DISCONNECT_PACKET_TOO_LARGE, DISCONNECT_SESSION_TAKEN_OVER, DISCONNECT_SHUTTING_DOWN,
    DISCONNECT_TOPIC_ALIAS_INVALID,
};

/// Bytes read per system call in each direction.
const CHUNK: usize = 64 * 1024;

/// Longest the front door waits for rumqttd to finish a packet before it sends DISCONNECT.
const FINISH_PACKET_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the front door keeps reading (and discarding) from a client it disconnected.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// A client stream that can be split into independently usable read and write halves.
pub(crate) trait SplitStream {
    /// The reading half.
    type Reader: AsyncRead + Unpin;
    /// The writing half.
    type Writer: AsyncWrite + Unpin;
    /// Splits the stream.
    fn split_halves(self) -> (Self::Reader, Self::Writer);
}

impl SplitStream for TcpStream {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;

    // Plain TCP halves need no lock between them, unlike `tokio::io::split`.
    fn split_halves(self) -> (Self::Reader, Self::Writer) {
        self.into_split()
    }
}

impl SplitStream for crate::websocket::WsConnection {
    type Reader = tokio::io::ReadHalf<Self>;
    type Writer = tokio::io::WriteHalf<Self>;

    // One WebSocket carries both directions' frames, so the halves share a lock.
    fn split_halves(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}

impl SplitStream for tokio_rustls::server::TlsStream<TcpStream> {
    type Reader = tokio::io::ReadHalf<Self>;
    type Writer = tokio::io::WriteHalf<Self>;

    // TLS state is shared by both directions, so the halves share a lock.
    fn split_halves(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}

/// How a relayed connection ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// The client closed or reset its side.
    ClientClosed,
    /// rumqttd closed its side.
    BrokerClosed,
    /// The client sent a packet over the limit or broke framing.
    Violation(PacketError),
    /// The permission gate refused a packet in a way that ends the connection.
    Refused(GateError),
    /// The broker is shutting down.
    Shutdown,
    /// A newer connection with the same client id took over.
    TakenOver,
}

/// How client → broker bytes are checked: only framed (no users configured), or gated by the
/// user's permissions.
pub(crate) enum Inbound {
    /// Boundaries and the size limit only; bytes pass as read.
    Framed(Framer),
    /// Whole packets, PUBLISH and SUBSCRIBE checked against the user's permissions.
    Gated(Box<Gate>),
}

/// Per-connection facts the relay needs.
pub(crate) struct RelayParams {
    /// The client's address, for logs.
    pub peer: SocketAddr,
    /// Protocol version of the session, deciding whether DISCONNECT can carry a reason.
    pub version: ProtocolVersion,
    /// Broker-wide stop signal.
    pub shutdown: CancellationToken,
    /// Cancelled when a newer connection claims this client id.
    pub evicted: CancellationToken,
}

/// Copies bytes both ways until either side closes, a guard trips or shutdown is signalled;
/// the framers may already have seen the bytes exchanged during the handshake.
pub(crate) async fn relay<C>(
    client: C,
    upstream: TcpStream,
    params: RelayParams,
    mut to_broker: Inbound,
    mut to_client: Framer,
) -> RelayEnd
where
    C: SplitStream,
{
    let (mut client_rx, mut client_tx) = client.split_halves();
    let (mut broker_rx, mut broker_tx) = upstream.into_split();
    let mut client_buf = vec![0u8; CHUNK];
    let mut broker_buf = vec![0u8; CHUNK];
    // The gate's output: packets allowed through, and the front door's own answers.
    let mut forward = Vec::new();
    let mut reply = Vec::new();
    let shutdown = &params.shutdown;

    let end = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break RelayEnd::Shutdown,
            _ = params.evicted.cancelled() => break RelayEnd::TakenOver,
            read = client_rx.read(&mut client_buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break RelayEnd::ClientClosed,
                    Ok(n) => n,
                };
                let (allowed, refused) = match &mut to_broker {
                    Inbound::Framed(framer) => match framer.feed(&client_buf[..n]) {
                        Ok(()) => (&client_buf[..n], None),
                        // The packets before the offending one are complete: let rumqttd
                        // have them, then cut its connection.
                        Err((whole, violation)) => {
                            (&client_buf[..whole], Some(RelayEnd::Violation(violation)))
                        }
                    },
                    Inbound::Gated(gate) => {
                        forward.clear();
                        reply.clear();
                        let verdict = gate.feed(&client_buf[..n], &mut forward, &mut reply);
                        (&forward[..], verdict.err().map(gate_end))
                    }
                };
                if !allowed.is_empty() && write(&mut broker_tx, allowed, shutdown).await.is_err() {
                    break RelayEnd::BrokerClosed;
                }
                if let Some(end) = refused {
                    break end;
                }
                if !reply.is_empty() {
                    // The front door's answer must not land inside a packet rumqttd is sending.
                    let finished = tokio::time::timeout(
                        FINISH_PACKET_TIMEOUT,
                        finish_packet(&mut broker_rx, &mut client_tx, &mut to_client, &mut broker_buf),
                    )
                    .await;
                    if !matches!(finished, Ok(Ok(()))) {
                        break RelayEnd::BrokerClosed;
                    }
                    if write(&mut client_tx, &reply, shutdown).await.is_err() {
                        break RelayEnd::ClientClosed;
                    }
                    reply.clear();
                }
            }
            read = broker_rx.read(&mut broker_buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break RelayEnd::BrokerClosed,
                    Ok(n) => n,
                };
                // Only boundaries matter here; rumqttd's own framing is trusted.
                let _ = to_client.feed(&broker_buf[..n]);
                if write(&mut client_tx, &broker_buf[..n], shutdown).await.is_err() {
                    break RelayEnd::ClientClosed;
                }
            }
        }
    };

    let goodbye = match (&end, params.version) {
        (RelayEnd::Violation(PacketError::TooLarge { .. }), ProtocolVersion::V5) => {
            Some(&DISCONNECT_PACKET_TOO_LARGE)
        }
        (RelayEnd::Shutdown, ProtocolVersion::V5) => Some(&DISCONNECT_SHUTTING_DOWN),
        (RelayEnd::TakenOver, ProtocolVersion::V5) => Some(&DISCONNECT_SESSION_TAKEN_OVER),
        (RelayEnd::Refused(GateError::Forbidden(_)), ProtocolVersion::V5) => {
            Some(&DISCONNECT_NOT_AUTHORIZED)
        }
        (RelayEnd::Refused(GateError::UnknownTopicAlias(_)), ProtocolVersion::V5) => {
            Some(&DISCONNECT_TOPIC_ALIAS_INVALID)
        }
        (RelayEnd::Refused(GateError::Malformed(_)), ProtocolVersion::V5) => {
            Some(&DISCONNECT_MALFORMED)
        }
        _ => None,
    };
    if let Some(goodbye) = goodbye {
        let finished = tokio::time::timeout(
            FINISH_PACKET_TIMEOUT,
            finish_packet(
                &mut broker_rx,
                &mut client_tx,
                &mut to_client,
                &mut broker_buf,
            ),
        )
        .await;
        if matches!(finished, Ok(Ok(()))) {
            let _ = client_tx.write_all(goodbye).await;
        }
    }
    // Closing rumqttd's side only now lets it finish the packet above. Then wait for rumqttd
    // to close too: by then it has queued this connection's disconnect in its router, so a
    // reconnect with the same id (see `sessions`) cannot be hit by it.
    drop(broker_tx);
    let _ = tokio::time::timeout(
        FINISH_PACKET_TIMEOUT,
        drain(&mut broker_rx, &mut broker_buf),
    )
    .await;
    let _ = client_tx.shutdown().await;
    if matches!(end, RelayEnd::Violation(_) | RelayEnd::Refused(_)) {
        // Closing a socket with unread input makes the kernel send RST, which can destroy the
        // DISCONNECT before the client reads it: read what the client still sends, bounded.
        let _ = tokio::time::timeout(LINGER, drain(&mut client_rx, &mut client_buf)).await;
    }
    match &end {
        RelayEnd::Violation(violation) => {
            warn!(peer = %params.peer, cause = %violation, "closing connection")
        }
        RelayEnd::Refused(refusal) => {
            warn!(peer = %params.peer, cause = %refusal, "closing connection")
        }
        other => debug!(peer = %params.peer, end = ?other, "connection ended"),
    }
    end
}

/// How the relay ends when the gate refuses: framing errors stay violations of the limit.
fn gate_end(err: GateError) -> RelayEnd {
    match err {
        GateError::Packet(violation) => RelayEnd::Violation(violation),
        other => RelayEnd::Refused(other),
    }
}

/// Writes all of `bytes` unless shutdown is signalled first (a stalled client must not hold
/// up shutdown).
async fn write<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    tokio::select! {
        written = writer.write_all(bytes) => written,
        _ = shutdown.cancelled() => Err(std::io::ErrorKind::Interrupted.into()),
    }
}

/// Relays broker bytes until the client stream sits on a packet boundary, so a DISCONNECT
/// written next is not spliced into the middle of a PUBLISH.
async fn finish_packet<R, W>(
    broker_rx: &mut R,
    client_tx: &mut W,
    framer: &mut Framer,
    buf: &mut [u8],
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while !framer.at_boundary() {
        // Mid-header, read byte by byte so nothing of the next packet is consumed.
        let want = framer.body_left().clamp(1, buf.len());
        let n = broker_rx.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let _ = framer.feed(&buf[..n]);
        client_tx.write_all(&buf[..n]).await?;
    }
    Ok(())
}

/// Reads and discards until EOF, an error or [`LINGER_BYTES`].
async fn drain<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) {
    let mut total = 0;
    while total < LINGER_BYTES {
        match reader.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}
