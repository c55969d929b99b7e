//! The embedded rumqttd: two loopback listeners (v4 and v5) on free ports, proven ready by a
//! real MQTT handshake because rumqttd only logs bind failures.
//!
//! rumqttd 0.20 has no shutdown API: its router and listener threads live until the process
//! exits. They listen on loopback only, so a stopped [`crate::Broker`] leaves nothing reachable
//! from outside. rumqttd has no process-wide state in the configuration used here (no
//! Prometheus exporter, no console), so several brokers can run in one process.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
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
        spawn(config, ports)?;
        match probe_both(ports, config.rumqttd.readiness_timeout).await {
            Ok(()) => return Ok(ports),
            Err(err) if attempt < LAUNCH_ATTEMPTS => {
                warn!(attempt, cause = %err, "rumqttd not ready, retrying on other ports");
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
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

/// Builds rumqttd's config from ours and starts it on its own thread.
fn spawn(config: &BrokerConfig, ports: Rumqttd) -> Result<(), BrokerError> {
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
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server("v4", ports.v4))])),
        v5: Some(HashMap::from([("v5".to_owned(), server("v5", ports.v5))])),
        ..rumqttd::Config::default()
    };
    std::thread::Builder::new()
        .name(format!("rumqttd-{}", ports.v4.port()))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(rumqttd_config);
            if let Err(err) = broker.start() {
                error!(cause = %err, "embedded rumqttd stopped");
            }
        })
        .map_err(|err| BrokerError::Readiness {
            addr: ports.v4,
            cause: format!("cannot spawn rumqttd thread: {err}"),
        })?;
    Ok(())
}

/// Probes the v4 then the v5 listener.
async fn probe_both(ports: Rumqttd, within: Duration) -> Result<(), BrokerError> {
    probe(ports.v4, ProtocolVersion::V4, within).await?;
    probe(ports.v5, ProtocolVersion::V5, within).await
}

/// Retries an MQTT handshake against `addr` until it succeeds or `within` elapses.
async fn probe(
    addr: SocketAddr,
    version: ProtocolVersion,
    within: Duration,
) -> Result<(), BrokerError> {
    let mut last = String::from("no attempt finished");
    let result = tokio::time::timeout(within, async {
        loop {
            match handshake(addr, version).await {
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
    result.map_err(|_| BrokerError::Readiness {
        addr,
        cause: format!("no CONNACK within {within:?}: {last}"),
    })
}

/// One CONNECT/CONNACK/DISCONNECT exchange.
async fn handshake(addr: SocketAddr, version: ProtocolVersion) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let id = b"wattchain-readiness";
    let level = match version {
        ProtocolVersion::V4 => 4,
        ProtocolVersion::V5 => 5,
    };
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 10];
    if version == ProtocolVersion::V5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await?;
    let mut ack = [0u8; 4];
    stream.read_exact(&mut ack).await?;
    if ack[0] != 0x20 || ack[3] != 0 {
        return Err(std::io::Error::other(format!(
            "unexpected CONNACK {ack:02x?}"
        )));
    }
    stream.write_all(&[0xe0, 0x00]).await?;
    Ok(())
}
