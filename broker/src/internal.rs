//! The embedded rumqttd: two loopback listeners (v4 and v5) on free ports, proven ready by a
//! real MQTT handshake because rumqttd only logs bind failures.
//!
//! A free port picked here can be taken by someone else before rumqttd binds it (another
//! broker in the same test process, say), and that someone may speak MQTT too. So the probe
//! also publishes to a unique topic that a local link into *this* rumqttd's router watches:
//! only our own rumqttd can deliver it.
//!
//! rumqttd 0.20 has no shutdown API: its router and listener threads live until the process
//! exits. They listen on loopback only, so a stopped [`crate::Broker`] leaves nothing reachable
//! from outside. rumqttd has no process-wide state in the configuration used here (no
//! Prometheus exporter, no console), so several brokers can run in one process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttd::local::LinkRx;
use rumqttd::{ConnectionSettings, Notification, RouterConfig, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, error, warn};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::packet::ProtocolVersion;

/// Extra bytes rumqttd accepts beyond `max_packet_size`: the front door may lengthen CONNECT
/// when it rewrites a client id, and it has already enforced the real limit.
const PAYLOAD_HEADROOM: usize = 64 * 1024;

/// Connections rumqttd accepts beyond the front door's limit, so that rumqttd itself never
/// refuses (its refusal path poisons the listener on the client's retry).
const CONNECTION_HEADROOM: usize = 16;

/// Times a launch is retried with fresh ports if a readiness probe fails (a free port picked
/// here can be taken by another process before rumqttd binds it).
const LAUNCH_ATTEMPTS: usize = 3;

/// Longest wait for the witness link to see a probe's publish once the handshake succeeded.
const WITNESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Distinguishes the probes of brokers started in one process.
static PROBE_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The internal loopback addresses of a running rumqttd.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rumqttd {
    /// MQTT 3.1.1 listener.
    pub v4: SocketAddr,
    /// MQTT 5 listener.
    pub v5: SocketAddr,
}

/// Starts rumqttd on two free loopback ports and waits until both complete a handshake.
pub(crate) async fn launch(config: &BrokerConfig) -> Result<Rumqttd, BrokerError> {
    let mut attempt = 1;
    loop {
        let ports = free_loopback_ports()?;
        let nonce = format!(
            "{}-{}",
            std::process::id(),
            PROBE_SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let topic = format!("wattchain-readiness/{nonce}");
        let mut witness = spawn(config, ports, &topic)?;
        let within = config.rumqttd.readiness_timeout;
        let mut outcome = probe(ports.v4, ProtocolVersion::V4, within, &topic, &mut witness).await;
        if outcome.is_ok() {
            outcome = probe(ports.v5, ProtocolVersion::V5, within, &topic, &mut witness).await;
        }
        match outcome {
            Ok(()) => {
                disable_nagle(&[ports.v4, ports.v5]);
                return Ok(ports);
            }
            Err(err) if attempt < LAUNCH_ATTEMPTS => {
                warn!(attempt, cause = %err, "rumqttd not ready, retrying on other ports");
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Sets TCP_NODELAY on rumqttd's listening sockets, found among this process's descriptors by
/// their address; Linux gives every accepted socket the option of its listener.
///
/// rumqttd does not set it on the connections it accepts. Its small writes to the front door
/// then wait for the ACK of the previous one, which the front door's kernel delays by up to
/// 40 ms: every hop through the broker cost 40 ms whenever two messages followed each other.
fn disable_nagle(listeners: &[SocketAddr]) {
    let mut found = 0;
    for_each_socket_on(listeners, |socket| {
        if socket.is_listener().unwrap_or(false) && socket.set_tcp_nodelay(true).is_ok() {
            found += 1;
        }
    });
    if found < listeners.len() {
        warn!(
            found,
            "could not set TCP_NODELAY on rumqttd's listeners: messages may wait up to 40 ms per hop"
        );
    } else {
        debug!(?listeners, "TCP_NODELAY set on rumqttd's listeners");
    }
}

/// Calls `f` with every socket of this process whose local address is one of `addrs`
/// (listening or connected), found among the descriptors in /proc/self/fd; none elsewhere.
fn for_each_socket_on(addrs: &[SocketAddr], mut f: impl FnMut(socket2::SockRef<'_>)) {
    #[cfg(target_os = "linux")]
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        use std::os::fd::{BorrowedFd, RawFd};
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(fd) = name.to_str().and_then(|n| n.parse::<RawFd>().ok()) else {
                continue;
            };
            // SAFETY: the descriptor is only queried and given socket options, never closed.
            // If another thread closes it meanwhile, the calls fail with EBADF; if the number
            // is reused, the address check keeps us off the newcomer.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&fd);
            let local = socket.local_addr().ok().and_then(|a| a.as_socket());
            if local.is_some_and(|a| addrs.contains(&a)) {
                f(socket);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addrs, &mut f);
}

/// Picks two distinct free loopback ports by binding both at once, then releasing them.
fn free_loopback_ports() -> Result<Rumqttd, BrokerError> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let bind = || StdListener::bind(any).map_err(|source| BrokerError::Bind { addr: any, source });
    let (v4, v5) = (bind()?, bind()?);
    let local = |l: &StdListener| {
        l.local_addr()
            .map_err(|source| BrokerError::Bind { addr: any, source })
    };
    Ok(Rumqttd {
        v4: local(&v4)?,
        v5: local(&v5)?,
    })
}

/// Builds rumqttd's config from ours, starts it on its own thread, and returns a local link
/// subscribed to `topic/#` that witnesses the readiness probes.
fn spawn(config: &BrokerConfig, ports: Rumqttd, topic: &str) -> Result<LinkRx, BrokerError> {
    let tuning = &config.rumqttd;
    let connections = ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: config.max_packet_size + PAYLOAD_HEADROOM,
        max_inflight_count: tuning.max_inflight_count,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections + CONNECTION_HEADROOM,
            max_outgoing_packet_count: tuning.max_outgoing_packet_count,
            max_segment_size: tuning.max_segment_size,
            max_segment_count: tuning.max_segment_count,
            custom_segment: custom_segments(tuning),
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server("v4", ports.v4))])),
        v5: Some(HashMap::from([("v5".to_owned(), server("v5", ports.v5))])),
        ..rumqttd::Config::default()
    };
    let not_ready = |cause: String| BrokerError::Readiness {
        addr: ports.v4,
        cause,
    };
    let mut broker = rumqttd::Broker::new(rumqttd_config);
    let (mut witness_tx, witness_rx) = broker
        .link("wattchain-readiness-witness")
        .map_err(|err| not_ready(format!("cannot link to rumqttd's router: {err}")))?;
    witness_tx
        .subscribe(format!("{topic}/#"))
        .map_err(|err| not_ready(format!("cannot subscribe the readiness witness: {err}")))?;
    let matcher = match_every_topic(&mut broker)
        .map_err(|err| not_ready(format!("cannot link the topic matcher: {err}")))?;
    std::thread::Builder::new()
        .name(format!("rumqttd-{}", ports.v4.port()))
        .spawn(move || {
            // The witness's sending half and the matcher live as long as rumqttd does.
            let _witness_tx = witness_tx;
            let _matcher = matcher;
            if let Err(err) = broker.start() {
                error!(cause = %err, "embedded rumqttd stopped");
            }
        })
        .map_err(|err| not_ready(format!("cannot spawn rumqttd thread: {err}")))?;
    Ok(witness_rx)
}

/// rumqttd's per-filter log sizes, from `filter_segments`.
fn custom_segments(
    tuning: &crate::config::RumqttdTuning,
) -> Option<HashMap<String, rumqttd::SegmentConfig>> {
    let map: HashMap<String, rumqttd::SegmentConfig> = tuning
        .filter_segments
        .iter()
        .map(|f| {
            let segments = rumqttd::SegmentConfig {
                max_segment_size: f.max_segment_size,
                max_segment_count: f.max_segment_count,
            };
            (f.filter.clone(), segments)
        })
        .collect();
    (!map.is_empty()).then_some(map)
}

/// Subscribes a local link, which never reads, to `#`.
///
/// rumqttd caches which filters a topic matches, but only when it matches at least one: a
/// publish nobody subscribes to (every quadruplet, when no dashboard watches) is matched again
/// against every filter, and a site with a commit filter per cabinet has hundreds. With `#`
/// every topic matches something, so each is matched once and then found in the cache.
///
/// The link never reads: rumqttd parks it once its outgoing buffer is full, so a publish
/// costs only its append to the `#` log. (With logs of 1 MiB segments rumqttd kept waking
/// it to skip it ahead, thousands of times a second; with the default 4 MiB it did not. A
/// link that drains instead never lags, but cost 20 % more CPU in the pipeline bench.)
fn match_every_topic(
    broker: &mut rumqttd::Broker,
) -> Result<(rumqttd::local::LinkTx, LinkRx), String> {
    let (mut tx, rx) = broker
        .link("wattchain-topic-matcher")
        .map_err(|e| e.to_string())?;
    tx.subscribe("#").map_err(|e| e.to_string())?;
    Ok((tx, rx))
}

/// Retries an MQTT handshake against `addr` until it succeeds or `within` elapses, then
/// checks that the witness saw the probe's publish (proof the port is this rumqttd's).
async fn probe(
    addr: SocketAddr,
    version: ProtocolVersion,
    within: Duration,
    topic: &str,
    witness: &mut LinkRx,
) -> Result<(), BrokerError> {
    let probe_topic = format!("{topic}/{}", addr.port());
    let mut last = String::from("no attempt finished");
    let handshake_done = tokio::time::timeout(within, async {
        loop {
            match handshake(addr, version, &probe_topic).await {
                Ok(()) => return,
                Err(err) => {
                    debug!(%addr, cause = %err, "rumqttd readiness probe failed");
                    last = err.to_string();
                }
            }
            // rumqttd offers no readiness signal; poll its port at a short interval.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if handshake_done.is_err() {
        return Err(BrokerError::Readiness {
            addr,
            cause: format!("no CONNACK within {within:?}: {last}"),
        });
    }
    let witnessed = tokio::time::timeout(WITNESS_TIMEOUT, async {
        loop {
            match witness.next().await {
                Ok(Some(Notification::Forward(forward)))
                    if forward.publish.topic == probe_topic.as_bytes() =>
                {
                    return true
                }
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    match witnessed {
        Ok(true) => Ok(()),
        _ => Err(BrokerError::Readiness {
            addr,
            cause: "the port answers MQTT but is not this broker's rumqttd (taken meanwhile)"
                .into(),
        }),
    }
}

/// One CONNECT/CONNACK, a QoS 0 PUBLISH to `topic`, then DISCONNECT.
async fn handshake(addr: SocketAddr, version: ProtocolVersion, topic: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let id = format!("wattchain-readiness-{}", addr.port());
    let v5 = version == ProtocolVersion::V5;
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        if v5 { 5 } else { 4 },
        0x02,
        0,
        10,
    ];
    if v5 {
        body.push(0); // no properties
    }
    push_string(&mut body, id.as_bytes());
    let mut packets = vec![0x10, body.len() as u8];
    packets.extend_from_slice(&body);
    stream.write_all(&packets).await?;
    let mut ack = [0u8; 4];
    stream.read_exact(&mut ack).await?;
    if ack[0] != 0x20 || ack[3] != 0 {
        return Err(std::io::Error::other(format!(
            "unexpected CONNACK {ack:02x?}"
        )));
    }
    let mut publish = Vec::new();
    push_string(&mut publish, topic.as_bytes());
    if v5 {
        publish.push(0); // no properties
    }
    publish.extend_from_slice(b"ready");
    let mut packets = vec![0x30, publish.len() as u8];
    packets.extend_from_slice(&publish);
    packets.extend_from_slice(&[0xe0, 0x00]);
    stream.write_all(&packets).await?;
    // Wait for rumqttd to close after DISCONNECT, so the publish has been handled.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    Ok(())
}

/// Appends an MQTT length-prefixed string (callers keep it under 128 bytes).
fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn rumqttd_sends_without_nagle_so_back_to_back_messages_are_not_held_for_an_ack() {
        // rumqttd leaves Nagle on for what it accepts: its second small write then waits for
        // the front door's delayed ACK, up to 40 ms per hop. The broker sets TCP_NODELAY on
        // rumqttd's listeners, which Linux hands down to every accepted connection.
        let config = BrokerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ..BrokerConfig::default()
        };
        let broker = crate::start(config).await.expect("broker starts");
        let addr = broker.local_addr();
        let options = rumqttc::MqttOptions::new("nagle", addr.ip().to_string(), addr.port());
        let (_client, mut events) = rumqttc::AsyncClient::new(options, 8);
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
                    Ok(_) => {}
                    Err(e) => panic!("connection failed: {e}"),
                }
            }
        })
        .await;
        assert!(
            connected.is_ok(),
            "the client is connected through the front door"
        );
        let mut flags = Vec::new();
        for_each_socket_on(&[broker.internal_v4_addr()], |socket| {
            if !socket.is_listener().unwrap_or(true) {
                flags.push(socket.tcp_nodelay().unwrap_or(false));
            }
        });
        assert!(
            !flags.is_empty(),
            "the front door's upstream connection is found"
        );
        assert!(
            flags.iter().all(|&on| on),
            "every connection rumqttd accepted has TCP_NODELAY: {flags:?}"
        );
        broker.shutdown().await;
    }
}
