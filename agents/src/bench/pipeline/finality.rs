//! PBFT finality as a user sees it from the broker, nodes untouched: from the moment the
//! **fourth average** of a window reaches the bench's own subscriber (the nodes subscribe to
//! the same topics on the same broker: that is when they see the window complete, within the
//! broker's fan-out) to the **first publication on `ledger/block`** of the block holding the
//! window (seen by the block observer; under PBFT only a replica holding the commit
//! certificate publishes there, so that is the window final).
//!
//! What the span holds: the nodes' assembly and the primary's proposal; PRE-PREPARE, PREPARE
//! and COMMIT — the three message delays that are the floor; the vote journal's fsyncs and the
//! append; and **one more hop**, the block's own publication. Any wait for the block of the
//! previous height is in it too (a primary proposes one block per height, as soon as a window
//! is pending). The report gives its median against three hops and against four.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::bench::modbus::Spread;
use crate::bus::{BrokerUrl, Bus, BusError, BusOptions, QoS};
use crate::topics::{Quantity, Route, Topics};

/// When the bench saw each `(cabinet, window)` complete (its four averages).
pub(super) type Completions = HashMap<(String, u64), Instant>;

/// What the finality line of the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Finality {
    /// Fourth average seen → first publication of the block holding the window.
    pub latency: Spread,
    /// Committed windows measured.
    pub samples: u64,
    /// Committed windows whose four averages the bench did not see (none in a sound run).
    pub unobserved: u64,
    /// `latency.p50 / (3 × hop p50)`: against the floor, PRE-PREPARE + PREPARE + COMMIT.
    pub vs_3_hops: f64,
    /// `latency.p50 / (4 × hop p50)`: the span also holds the block's publication.
    pub vs_4_hops: f64,
}

impl Finality {
    /// The finality of each committed window (`committed`: when its block was first seen)
    /// against when it was seen complete, compared with the median hop `hop_p50_us`.
    pub(super) fn of<'a>(
        committed: impl Iterator<Item = (&'a (String, u64), &'a Instant)>,
        completions: &Completions,
        hop_p50_us: f64,
    ) -> Finality {
        let mut latencies = Vec::new();
        let mut unobserved = 0;
        for (window, seen) in committed {
            match completions.get(window) {
                Some(complete) => latencies.push(seen.saturating_duration_since(*complete)),
                None => unobserved += 1,
            }
        }
        let latency = Spread::of(&mut latencies);
        let ratio = |hops: f64| {
            if hop_p50_us > 0.0 {
                latency.p50_us / (hops * hop_p50_us)
            } else {
                0.0
            }
        };
        Finality {
            samples: latencies.len() as u64,
            unobserved,
            vs_3_hops: ratio(3.0),
            vs_4_hops: ratio(4.0),
            latency,
        }
    }
}

/// The only field of an average the watch reads (serde skips the rest unparsed).
#[derive(Deserialize)]
struct WindowOf {
    window: u64,
}

/// The subscriber of every average, timestamping each window's fourth one.
pub(super) struct AverageWatch {
    /// Stops the task when dropped (an early return of the bench included).
    stop: DropGuard,
    task: JoinHandle<Completions>,
}

impl AverageWatch {
    /// Subscribes (acknowledged before it returns) and starts watching.
    pub(super) async fn start(
        url: &BrokerUrl,
        topics: &Topics,
        ready: Duration,
    ) -> Result<AverageWatch, BusError> {
        let mut bus = Bus::connect(
            BusOptions::new(url.clone(), "bench-averages", "bench"),
            vec![(topics.average_filter(), QoS::AtLeastOnce)],
        )?;
        bus.wait_ready(ready).await?;
        let (stop, topics) = (CancellationToken::new(), topics.clone());
        let s = stop.clone();
        let task = tokio::spawn(async move {
            // Quantities seen per window (one bit each), and when the fourth came.
            let mut seen: HashMap<(String, u64), (u8, Option<Instant>)> = HashMap::new();
            loop {
                let msg = tokio::select! {
                    _ = s.cancelled() => break,
                    msg = bus.recv() => match msg {
                        Some(m) => m,
                        None => break,
                    },
                };
                let now = Instant::now();
                let Some(Route::Average { cabinet, quantity }) = topics.parse(&msg.topic) else {
                    continue;
                };
                let Ok(WindowOf { window }) = serde_json::from_slice(&msg.payload) else {
                    continue;
                };
                let (mask, complete) = seen.entry((cabinet, window)).or_default();
                *mask |= 1 << quantity.index();
                if *mask == (1 << Quantity::ALL.len()) - 1 && complete.is_none() {
                    *complete = Some(now);
                }
            }
            bus.close().await;
            seen.into_iter()
                .filter_map(|(k, (_, at))| Some((k, at?)))
                .collect()
        });
        Ok(AverageWatch {
            stop: stop.drop_guard(),
            task,
        })
    }

    /// Stops watching; when each window was seen complete.
    pub(super) async fn finish(self) -> Completions {
        drop(self.stop);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_committed_window_is_measured_from_its_completion_and_compared_with_the_hops() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let completions: Completions = [
            (("c1".to_string(), 0), t0),
            (("c1".to_string(), 1), t0 + ms(10)),
        ]
        .into_iter()
        .collect();
        let committed: HashMap<(String, u64), Instant> = [
            (("c1".to_string(), 0), t0 + ms(6)),
            (("c1".to_string(), 1), t0 + ms(16)),
            (("c2".to_string(), 0), t0 + ms(16)),
        ]
        .into_iter()
        .collect();
        let f = Finality::of(committed.iter(), &completions, 1000.0);
        assert_eq!(
            (f.samples, f.unobserved),
            (2, 1),
            "c2#0 was never seen complete"
        );
        assert_eq!(f.latency.p50_us, 6000.0);
        assert_eq!((f.vs_3_hops, f.vs_4_hops), (2.0, 1.5));
        let none = Finality::of(committed.iter(), &completions, 0.0);
        assert_eq!(none.vs_3_hops, 0.0, "no hop measured: no ratio");
    }
}
