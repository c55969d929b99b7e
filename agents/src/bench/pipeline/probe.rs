//! One broker hop, measured in the same run as the figures compared with it: a real MQTT
//! client publishes on `bench/probe` every [`PROBE_PERIOD`] at QoS 1 (the QoS of the consensus
//! messages), and another one, subscribed, timestamps each arrival. Both live in this process,
//! so the payload carries the send time on the process's monotonic clock and no clock
//! agreement is needed. The hop spans what a vote's hop spans once the node hands it to its
//! session: the sender's queue, the broker, the subscriber's queue.
//!
//! Each client runs in its own task on its own session: the bench's observers, busy with
//! averages and blocks, do not delay its timestamps.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::bus::{BrokerUrl, Bus, BusError, BusOptions, QoS};
use crate::topics::Topics;

/// Time between two probe messages: ~200 samples a second, noise beside the pipeline's load.
pub(super) const PROBE_PERIOD: Duration = Duration::from_millis(5);

/// The running probe pair.
pub(super) struct HopProbe {
    /// Stops both tasks when dropped (an early return of the bench included).
    stop: DropGuard,
    sender: JoinHandle<()>,
    receiver: JoinHandle<Vec<Duration>>,
}

impl HopProbe {
    /// Connects both clients (subscription acknowledged) and starts probing.
    pub(super) async fn start(
        url: &BrokerUrl,
        topics: &Topics,
        ready: Duration,
    ) -> Result<HopProbe, BusError> {
        let topic = topics.bench_probe();
        let mut rx = Bus::connect(
            BusOptions::new(url.clone(), "bench-probe-rx", "bench"),
            vec![(topic.clone(), QoS::AtLeastOnce)],
        )?;
        let tx = Bus::connect(
            BusOptions::new(url.clone(), "bench-probe-tx", "bench"),
            vec![],
        )?;
        rx.wait_ready(ready).await?;
        tx.wait_ready(ready).await?;
        let stop = CancellationToken::new();
        let origin = Instant::now();
        let s = stop.clone();
        let sender = tokio::spawn(async move {
            let outlet = tx.outlet();
            let mut tick = tokio::time::interval(PROBE_PERIOD);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tick.tick() => {
                        let sent = origin.elapsed().as_nanos().to_string();
                        // Never waits: a stalled session must not hold the bench at its
                        // end; a probe not queued is a sample missing, not a wrong one.
                        let _ = outlet.try_publish(
                            topic.clone(),
                            Bytes::from(sent),
                            QoS::AtLeastOnce,
                            false,
                        );
                    }
                }
            }
            tx.close().await;
        });
        let s = stop.clone();
        let receiver = tokio::spawn(async move {
            let mut hops = Vec::new();
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    msg = rx.recv() => {
                        let Some(msg) = msg else { break };
                        let now = origin.elapsed();
                        let sent = std::str::from_utf8(&msg.payload)
                            .ok()
                            .and_then(|t| t.parse::<u64>().ok());
                        if let Some(sent) = sent {
                            hops.push(now.saturating_sub(Duration::from_nanos(sent)));
                        }
                    }
                }
            }
            rx.close().await;
            hops
        });
        Ok(HopProbe {
            stop: stop.drop_guard(),
            sender,
            receiver,
        })
    }

    /// Stops probing; the hops measured.
    pub(super) async fn finish(self) -> Vec<Duration> {
        drop(self.stop);
        let _ = self.sender.await;
        self.receiver.await.unwrap_or_default()
    }
}
