//! Where a cabinet's measurements come from: the PLC over Modbus TCP, or a synthetic generator
//! that replaces only the Modbus read, so benchmarks drive the real window cutter, outbox,
//! publishing and commit handling at rates no PLC delivers.

use tokio::time::Instant;

use crate::regmap::Measurement;

/// Which source a cabinet agent reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SourceConfig {
    /// The PLC (or simulator) at [`CabinetConfig::modbus`](super::CabinetConfig::modbus).
    #[default]
    Modbus,
    /// Generated readings, for benchmarks.
    Synthetic(SyntheticConfig),
}

/// How fast, and how many, synthetic readings are produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Readings per second (the agent's tick only sets how they are batched).
    pub rate: f64,
    /// Stop after this many readings (`None`: never).
    pub limit: Option<u64>,
    /// Most readings taken in one tick, so a cabinet that fell behind still serves its commits.
    pub max_burst: usize,
}

impl SyntheticConfig {
    /// `rate` readings per second, at most `limit` in all.
    pub fn new(rate: f64, limit: Option<u64>) -> Self {
        SyntheticConfig {
            rate,
            limit,
            max_burst: 1000,
        }
    }
}

/// A synthetic meter: owes `rate × elapsed` readings since its first tick.
#[derive(Debug)]
pub struct Synthetic {
    config: SyntheticConfig,
    start: Option<Instant>,
    produced: u64,
}

impl Synthetic {
    /// A generator that starts owing readings at its first [`Synthetic::take_due`].
    pub fn new(config: SyntheticConfig) -> Self {
        Synthetic {
            config,
            start: None,
            produced: 0,
        }
    }

    /// Readings produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The readings owed at `now`: one at the first call, then `rate` per second of elapsed
    /// time, at most `max_burst` at once and never beyond `limit`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Measurement> {
        let start = *self.start.get_or_insert(now);
        let owed =
            1 + (now.saturating_duration_since(start).as_secs_f64() * self.config.rate) as u64;
        let owed = self.config.limit.map_or(owed, |l| owed.min(l));
        let count = owed
            .saturating_sub(self.produced)
            .min(self.config.max_burst as u64);
        let readings = (self.produced..self.produced + count)
            .map(reading)
            .collect();
        self.produced += count;
        readings
    }
}

/// Reading number `k`: a plausible, slowly varying, deterministic load.
fn reading(k: u64) -> Measurement {
    let phase = (k % 1000) as f64 / 1000.0 * std::f64::consts::TAU;
    let u = 230.0 + 2.0 * phase.sin();
    let i = 4.0 + 0.5 * phase.cos();
    Measurement {
        u,
        i,
        pa: u * i * 0.95,
        pr: u * i * 0.31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn synthetic_readings_follow_the_rate_and_stop_at_the_limit() {
        let mut s = Synthetic::new(SyntheticConfig::new(1000.0, Some(2500)));
        let start = Instant::now();
        assert_eq!(s.take_due(start).len(), 1, "the first tick reads once");
        assert_eq!(s.take_due(start + Duration::from_millis(10)).len(), 10);
        let late = start + Duration::from_secs(2);
        assert_eq!(
            s.take_due(late).len(),
            1000,
            "a late tick takes at most one burst"
        );
        assert_eq!(
            s.take_due(late).len(),
            990,
            "the rest of what is owed follows"
        );
        assert_eq!(s.take_due(start + Duration::from_secs(60)).len(), 499);
        assert!(s.take_due(start + Duration::from_secs(61)).is_empty());
        assert_eq!(s.produced(), 2500, "never beyond the limit");
    }

    #[test]
    fn synthetic_readings_are_finite_and_deterministic() {
        for k in [0, 1, 999, 1_000_000] {
            let m = reading(k);
            assert!([m.u, m.i, m.pa, m.pr].iter().all(|v| v.is_finite()));
            assert_eq!(m, reading(k));
        }
    }
}
