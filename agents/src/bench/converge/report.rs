//! What `bench converge` reports: each trial, and the distributions over the trials.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Nearest-rank quantiles of a set of samples, in the unit its field names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Maximum.
    pub max: f64,
}

impl Quantiles {
    /// The quantiles of `samples` (sorted in place); all zero when empty.
    pub fn of(samples: &mut [f64]) -> Quantiles {
        if samples.is_empty() {
            return Quantiles::default();
        }
        samples.sort_unstable_by(f64::total_cmp);
        let rank = |p: f64| crate::bench::modbus::nearest_rank(samples, p);
        Quantiles {
            n: samples.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            max: rank(1.0),
        }
    }

    /// The quantiles of `durations`, in milliseconds.
    pub fn of_ms(durations: &[Duration]) -> Quantiles {
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Quantiles::of(&mut ms)
    }
}

impl fmt::Display for Quantiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2}  p90 {:.2}  max {:.2}  (n {})",
            self.p50, self.p90, self.max, self.n
        )
    }
}

/// One partition and its healing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrialReport {
    /// The node cut off the broker.
    pub node: String,
    /// Blocks the other nodes were ahead of it when the cut healed.
    pub behind: u64,
    /// How long it was cut off, ms.
    pub cut_ms: f64,
    /// From healing to its session up again (its reconnection backoff), ms.
    pub reconnect_ms: f64,
    /// From its reconnection to every node's head naming one block, ms (none: not within the
    /// settle limit).
    pub convergence_ms: Option<f64>,
    /// Median block propagation before the cut (first publication → every node's head), ms.
    pub propagation_ms: f64,
    /// Blocks whose propagation was timed before the cut.
    pub propagation_blocks: usize,
    /// Median sync round trip before the cut (request → reply), ms.
    pub sync_rtt_ms: f64,
    /// `2 × propagation + sync round trip`, ms: the target's bound.
    pub bound_ms: f64,
    /// `convergence / bound` (target ≤ 1).
    pub ratio: Option<f64>,
    /// Why the trial did not complete.
    pub failure: Option<String>,
}

/// The measurement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConvergeReport {
    /// Ledger nodes.
    pub nodes: usize,
    /// Trials run.
    pub trials_run: usize,
    /// Trials in which every node came back to one head.
    pub converged: usize,
    /// Trials whose convergence was within the bound (ratio ≤ 1).
    pub within_bound: usize,
    /// Convergence time over the trials, ms.
    pub convergence_ms: Quantiles,
    /// `convergence / (2 × propagation + sync round trip)` over the trials.
    pub ratio: Quantiles,
    /// Every block propagation timed, ms.
    pub propagation_ms: Quantiles,
    /// Every sync round trip timed, ms.
    pub sync_rtt_ms: Quantiles,
    /// Reconnection after healing, ms.
    pub reconnect_ms: Quantiles,
    /// Each trial.
    pub trials: Vec<TrialReport>,
    /// Roles that failed.
    pub failures: Vec<String>,
}

impl fmt::Display for ConvergeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "converge: {} nodes, {} trials, {} converged, {} within 2×propagation + sync RTT",
            self.nodes, self.trials_run, self.converged, self.within_bound
        )?;
        writeln!(f, "  convergence ms  {}", self.convergence_ms)?;
        writeln!(f, "  ratio           {}", self.ratio)?;
        writeln!(f, "  propagation ms  {}", self.propagation_ms)?;
        writeln!(f, "  sync RTT ms     {}", self.sync_rtt_ms)?;
        writeln!(f, "  reconnect ms    {}", self.reconnect_ms)?;
        for (k, t) in self.trials.iter().enumerate() {
            let conv = t
                .convergence_ms
                .map_or("-".to_string(), |c| format!("{c:.1}"));
            let ratio = t.ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
            write!(
                f,
                "  trial {k}: {} cut {:.0} ms, {} behind; converged in {conv} ms vs bound {:.1} ms \
                 (propagation {:.2} ms over {} blocks, sync RTT {:.2} ms): ratio {ratio}",
                t.node,
                t.cut_ms,
                t.behind,
                t.bound_ms,
                t.propagation_ms,
                t.propagation_blocks,
                t.sync_rtt_ms
            )?;
            if let Some(why) = &t.failure {
                write!(f, " — {why}")?;
            }
            writeln!(f)?;
        }
        for why in &self.failures {
            writeln!(f, "  failure: {why}")?;
        }
        write!(f, "  (target: ratio ≤ 1)")
    }
}

impl ConvergeReport {
    /// The report over `trials`.
    pub fn new(
        nodes: usize,
        trials: Vec<TrialReport>,
        propagation: &[Duration],
        rtt: &[Duration],
    ) -> Self {
        let mut conv: Vec<f64> = trials.iter().filter_map(|t| t.convergence_ms).collect();
        let mut ratio: Vec<f64> = trials.iter().filter_map(|t| t.ratio).collect();
        let mut reconnect: Vec<f64> = trials
            .iter()
            .filter(|t| t.convergence_ms.is_some())
            .map(|t| t.reconnect_ms)
            .collect();
        ConvergeReport {
            nodes,
            trials_run: trials.len(),
            converged: conv.len(),
            within_bound: ratio.iter().filter(|r| **r <= 1.0).count(),
            convergence_ms: Quantiles::of(&mut conv),
            ratio: Quantiles::of(&mut ratio),
            propagation_ms: Quantiles::of_ms(propagation),
            sync_rtt_ms: Quantiles::of_ms(rtt),
            reconnect_ms: Quantiles::of(&mut reconnect),
            trials,
            failures: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut s: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let q = Quantiles::of(&mut s);
        assert_eq!((q.n, q.p50, q.p90, q.max), (10, 5.0, 9.0, 10.0));
        assert_eq!(Quantiles::of(&mut []), Quantiles::default());
    }
}
