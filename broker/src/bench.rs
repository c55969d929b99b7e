//! Throughput of the front door against direct rumqttd access, measured in one run.
//!
//! One rumqttc publisher sends QoS 1 messages to one subscriber; the same broker is used
//! through its internal v4 listener and through the front door, alternating (direct, front,
//! front, direct, direct, front) so drift affects both sides equally. Each side reports its
//! best run: interference from other processes only ever slows a run down, so the best run
//! is the least noisy estimate of what the path can do.
//!
//! Memory: [`bound`] computes what the broker can hold for a configuration and a load, and
//! [`memory`] floods a broker with many filters and a stalled subscriber to measure its peak
//! resident size next to that bound.

pub mod bound;
mod client;
pub mod memory;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Serialize;

use crate::{BrokerConfig, BrokerError};

/// Bound on one measured run, so a stuck client fails the bench instead of hanging it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Result of [`front_door`].
#[derive(Debug, Clone, Serialize)]
pub struct FrontDoorReport {
    /// Best messages per second with clients connected straight to rumqttd.
    pub direct_msgs_per_sec: f64,
    /// Best messages per second with clients connected through the front door.
    pub front_door_msgs_per_sec: f64,
    /// `front_door_msgs_per_sec / direct_msgs_per_sec`.
    pub ratio: f64,
}

impl fmt::Display for FrontDoorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "direct {:.0} msg/s, front door {:.0} msg/s, ratio {:.3}",
            self.direct_msgs_per_sec, self.front_door_msgs_per_sec, self.ratio
        )
    }
}

/// Username and password of the bench clients when authentication is measured.
const BENCH_LOGIN: (&str, &str) = ("bench", "bench-password");

/// Starts a broker on a free port and measures QoS 1 throughput of `messages` messages of
/// `payload` bytes, direct and through the front door.
pub async fn front_door(messages: usize, payload: usize) -> Result<FrontDoorReport, BrokerError> {
    measure(messages, payload, false).await
}

/// As [`front_door`], but with a user configured: front-door clients log in and every
/// PUBLISH and SUBSCRIBE passes the permission gate (the cost of authentication being on).
pub async fn front_door_authenticated(
    messages: usize,
    payload: usize,
) -> Result<FrontDoorReport, BrokerError> {
    measure(messages, payload, true).await
}

async fn measure(
    messages: usize,
    payload: usize,
    authenticated: bool,
) -> Result<FrontDoorReport, BrokerError> {
    if messages == 0 {
        return Err(BrokerError::Bench("messages must be positive".into()));
    }
    let mut config = BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..BrokerConfig::default()
    };
    if authenticated {
        config.users.push(crate::User {
            username: BENCH_LOGIN.0.into(),
            password_hash: crate::hash_password(BENCH_LOGIN.1)?,
            publish: vec!["bench/#".into()],
            subscribe: Some(vec!["bench/#".into()]),
        });
    }
    let broker = crate::start(config).await?;
    let direct_addr = broker.internal_v4_addr();
    let front_addr = broker.local_addr();
    let mut direct = Vec::new();
    let mut front = Vec::new();
    let order = [
        direct_addr,
        front_addr,
        front_addr,
        direct_addr,
        direct_addr,
        front_addr,
    ];
    for (round, addr) in order.into_iter().enumerate() {
        let login = (authenticated && addr == front_addr).then_some(BENCH_LOGIN);
        let rate = run(addr, login, messages, payload, round).await;
        let rate = match rate {
            Ok(rate) => rate,
            Err(err) => {
                broker.shutdown().await;
                return Err(err);
            }
        };
        if addr == direct_addr {
            direct.push(rate);
        } else {
            front.push(rate);
        }
    }
    broker.shutdown().await;
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    let (direct, front) = (best(&direct), best(&front));
    Ok(FrontDoorReport {
        direct_msgs_per_sec: direct,
        front_door_msgs_per_sec: front,
        ratio: front / direct,
    })
}

/// One publisher → one subscriber run; returns messages per second received.
async fn run(
    addr: SocketAddr,
    login: Option<(&str, &str)>,
    messages: usize,
    payload: usize,
    round: usize,
) -> Result<f64, BrokerError> {
    let options = |role: &str| {
        let mut options = MqttOptions::new(
            format!("bench-{role}-{round}"),
            addr.ip().to_string(),
            addr.port(),
        );
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(
                crate::DEFAULT_MAX_PACKET_SIZE,
                crate::DEFAULT_MAX_PACKET_SIZE,
            )
            .set_inflight(100);
        if let Some((username, password)) = login {
            options.set_credentials(username, password);
        }
        options
    };
    let topic = format!("bench/{round}");
    let (subscriber, mut sub_loop) = AsyncClient::new(options("sub"), 1000);
    let (publisher, mut pub_loop) = AsyncClient::new(options("pub"), 1000);
    let bench_err = |err: &dyn fmt::Display| BrokerError::Bench(err.to_string());

    subscriber
        .subscribe(&topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| bench_err(&e))?;
    let measured = tokio::time::timeout(RUN_TIMEOUT, async {
        loop {
            match sub_loop.poll().await.map_err(|e| bench_err(&e))? {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
        // Connect the publisher before the clock starts: with authentication on, its login
        // (an argon2 verification, tens of milliseconds) would otherwise count as relay time.
        loop {
            match pub_loop.poll().await.map_err(|e| bench_err(&e))? {
                Event::Incoming(Packet::ConnAck(_)) => break,
                _ => continue,
            }
        }
        let publisher_task = tokio::spawn(async move {
            loop {
                if pub_loop.poll().await.is_err() {
                    return;
                }
            }
        });
        let body = vec![0x5a; payload];
        let start = Instant::now();
        let sender = tokio::spawn({
            let publisher = publisher.clone();
            let topic = topic.clone();
            async move {
                for _ in 0..messages {
                    if publisher
                        .publish(&topic, QoS::AtLeastOnce, false, body.clone())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut received = 0;
        while received < messages {
            if let Event::Incoming(Packet::Publish(_)) =
                sub_loop.poll().await.map_err(|e| bench_err(&e))?
            {
                received += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        sender.abort();
        let _ = publisher.disconnect().await;
        let _ = subscriber.disconnect().await;
        let _ = sub_loop.poll().await;
        publisher_task.abort();
        Ok::<_, BrokerError>(messages as f64 / elapsed)
    })
    .await;
    measured.map_err(|_| BrokerError::Bench(format!("run {round} against {addr} timed out")))?
}
