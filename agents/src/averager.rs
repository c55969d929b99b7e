//! The averaging agent: a stateless worker on the shared window subscription.
//!
//! Each averager joins one shared group per quantity it serves, so the broker hands every window
//! task to exactly one member; start one or fifty, anywhere. A task is validated (shape, finite
//! values, size, digest), averaged in f64 and answered on `average/{Q}`. A bad task goes to the
//! dead-letter topic with its reason; the agent keeps running. Nothing is kept between tasks, so
//! a crash loses at most the task in hand, which the cabinet re-issues after its deadline.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::bus::{Bus, Outlet, QoS};
use crate::config::{self, ConfigError};
use crate::messages::{decode, encode, Average, DeadLetter, WindowTask};
use crate::topics::{check_id, Quantity, Route, Topics};

/// The role name, used in status and dead-letter topics.
pub const ROLE: &str = "averager";

/// How an averager runs.
#[derive(Debug, Clone)]
pub struct AveragerConfig {
    /// Agent id, reported in every average.
    pub id: String,
    /// Quantities this averager serves.
    pub quantities: Vec<Quantity>,
    /// Topic namespace.
    pub topics: Topics,
    /// Largest task payload accepted, bytes.
    pub max_payload: usize,
    /// Artificial delay per task, for fault drills (a slow averager). Zero in normal use.
    pub delay: Duration,
}

impl AveragerConfig {
    /// An averager serving every quantity.
    pub fn new(id: &str, topics: Topics) -> Self {
        AveragerConfig {
            id: id.to_string(),
            quantities: Quantity::ALL.to_vec(),
            topics,
            max_payload: wattchain_broker::DEFAULT_MAX_PACKET_SIZE,
            delay: Duration::ZERO,
        }
    }

    /// Checks every value before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_id(&self.id)?;
        config::within(
            "quantities",
            self.quantities.len(),
            1..=4,
            ": serve U, I, PA or PR",
        )?;
        config::within("max-payload", self.max_payload, 1..=256 << 20, "")?;
        config::at_most_max("delay", self.delay)
    }

    /// The shared subscriptions to open the bus with.
    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        self.quantities
            .iter()
            .map(|q| (self.topics.averager_share(*q), QoS::AtLeastOnce))
            .collect()
    }
}

/// What an averager did, returned when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AveragerStats {
    /// Tasks averaged and answered.
    pub averaged: u64,
    /// Messages rejected to the dead-letter topic.
    pub rejected: u64,
}

/// Serves window tasks until `shutdown`, then closes the bus.
pub async fn run(
    config: AveragerConfig,
    mut bus: Bus,
    shutdown: CancellationToken,
) -> AveragerStats {
    let outlet = bus.outlet();
    let mut stats = AveragerStats::default();
    let averaged =
        metrics::counter!(crate::metrics::AVERAGER_AVERAGES, "agent" => config.id.clone());
    info!(id = %config.id, quantities = ?config.quantities, "averager started");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = bus.recv() => match msg { Some(m) => m, None => break },
        };
        if !config.delay.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(config.delay) => {}
            }
        }
        match answer(&config, &msg.topic, &msg.payload) {
            Ok(average) => {
                let topic = config.topics.average(&average.cabinet, average.quantity);
                debug!(cabinet = %average.cabinet, window = average.window, quantity = %average.quantity, "averaged");
                if outlet
                    .publish(topic, encode(&average), QoS::AtLeastOnce, false)
                    .await
                    .is_err()
                {
                    break;
                }
                stats.averaged += 1;
                averaged.increment(1);
            }
            Err(reason) => {
                stats.rejected += 1;
                reject(&outlet, &config, &msg.topic, &reason, &msg.payload);
            }
        }
    }
    info!(id = %config.id, averaged = stats.averaged, rejected = stats.rejected, "averager stopping");
    bus.close().await;
    stats
}

/// Validates one task received on `topic` and computes its average.
pub fn answer(config: &AveragerConfig, topic: &str, payload: &[u8]) -> Result<Average, String> {
    let Some(Route::Window { cabinet, quantity }) = config.topics.parse(topic) else {
        return Err("not a window topic".to_string());
    };
    let task: WindowTask = decode(payload, config.max_payload).map_err(|e| e.to_string())?;
    if task.cabinet != cabinet || task.quantity != quantity {
        return Err(format!(
            "payload is for {}/{} but arrived on {cabinet}/{quantity}",
            task.cabinet, task.quantity
        ));
    }
    Ok(Average::of(&task, &config.id))
}

/// Publishes a dead letter for a rejected message (best effort: never blocks the agent).
pub fn reject(outlet: &Outlet, config: &AveragerConfig, topic: &str, reason: &str, payload: &[u8]) {
    warn!(id = %config.id, topic, reason, "rejected a window task");
    let letter = DeadLetter::new(ROLE, &config.id, topic, reason, payload);
    if let Err(e) = outlet.try_publish(
        config.topics.deadletter(ROLE),
        encode(&letter),
        QoS::AtMostOnce,
        false,
    ) {
        warn!(cause = %e, "dead letter not published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Incoming;
    use crate::ledger::digest_hex;
    use crate::messages::DeadLetter;

    fn task(cabinet: &str, quantity: Quantity, values: Vec<f64>) -> WindowTask {
        WindowTask {
            cabinet: cabinet.into(),
            window: 3,
            quantity,
            first_seq: 12,
            digest: digest_hex(&values),
            values,
            from: "2026-11-21T10:00:00.000Z".into(),
            to: "2026-11-21T10:00:03.000Z".into(),
        }
    }

    #[tokio::test]
    async fn answers_good_tasks_and_dead_letters_bad_ones_without_stopping() {
        let topics = Topics::default();
        let config = AveragerConfig::new("a1", topics.clone());
        let (bus, mut peer) = Bus::memory(16);
        let shutdown = CancellationToken::new();
        let agent = tokio::spawn(run(config, bus, shutdown.clone()));

        let deliver = |topic: String, payload: Vec<u8>| Incoming {
            topic,
            payload: payload.into(),
            retain: false,
        };
        let good = task("c1", Quantity::PA, vec![100.0, 102.0, 104.0, 106.0]);
        let mut forged = good.clone();
        forged.values[0] = 1e6;
        let misrouted = task("c2", Quantity::PA, vec![1.0]);
        for (topic, payload) in [
            (topics.window("c1", Quantity::PA), b"{garbage".to_vec()),
            (topics.window("c1", Quantity::PA), encode(&forged)),
            (topics.window("c1", Quantity::PA), encode(&misrouted)),
            (topics.window("c1", Quantity::PA), encode(&good)),
        ] {
            peer.deliver.send(deliver(topic, payload)).await.unwrap();
        }

        let mut letters = Vec::new();
        let average = loop {
            let out = peer.published.recv().await.unwrap();
            if out.topic == topics.deadletter(ROLE) {
                letters.push(serde_json::from_slice::<DeadLetter>(&out.payload).unwrap());
            } else {
                assert_eq!(out.topic, topics.average("c1", Quantity::PA));
                break serde_json::from_slice::<Average>(&out.payload).unwrap();
            }
        };
        assert_eq!(letters.len(), 3, "{letters:?}");
        assert!(letters[0].reason.contains("malformed JSON"));
        assert!(letters[1].reason.contains("digest"));
        assert!(letters[2].reason.contains("arrived on c1/PA"));
        assert_eq!(
            (average.mean, average.n, average.agent.as_str()),
            (103.0, 4, "a1")
        );

        shutdown.cancel();
        let stats = agent.await.unwrap();
        assert_eq!(
            stats,
            AveragerStats {
                averaged: 1,
                rejected: 3
            }
        );
    }

    #[test]
    fn subscribes_with_one_shared_group_per_quantity() {
        let mut config = AveragerConfig::new("a1", Topics::default());
        config.quantities = vec![Quantity::U, Quantity::PR];
        let subs = config.subscriptions();
        assert_eq!(subs.len(), 2);
        assert!(subs
            .iter()
            .all(|(f, q)| f.starts_with("$share/") && *q == QoS::AtLeastOnce));
    }
}
