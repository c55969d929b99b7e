//! What `bench pipeline` reports, as text for people and as JSON (`--json`) for scripts.

use std::fmt;

use serde::Serialize;

use super::modes::ChainFigures;
use super::{Finality, RoleMemory};
use crate::bench::modbus::Spread;

/// What `bench pipeline` measured.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// The broker used (`embedded` or its URL).
    pub broker: String,
    /// Cabinets.
    pub cabinets: usize,
    /// Whether the cabinets started spread over one window (`--stagger`) or all at once.
    pub staggered: bool,
    /// Offered load: cabinets × rate, quadruplets/s.
    pub offered_quads_per_s: f64,
    /// Committed quadruplets per second, from start to the last new commit seen.
    pub sustained_quads_per_s: f64,
    /// Windows the cabinets produced.
    pub windows_produced: u64,
    /// Distinct produced windows seen in a block.
    pub windows_committed: u64,
    /// Produced windows never seen in a block.
    pub windows_lost: u64,
    /// Windows seen in more than one block.
    pub windows_duplicated: u64,
    /// Distinct blocks seen on `ledger/block` (every node's, stale ones included).
    pub blocks: u64,
    /// Blocks of the final main chain (node 1's chain file), genesis excluded.
    pub blocks_final: u64,
    /// Share of the blocks seen that did not make the final chain: `1 - final/seen`.
    pub stale_rate: f64,
    /// Window publications the cabinets repeated (commit deadline passed).
    pub republished: u64,
    /// From a window's last sample (its `to`, ms grain) to its block's arrival.
    pub window_to_block: Spread,
    /// One broker hop (QoS 1 publication → a subscriber), probed throughout the same run.
    pub hop: Spread,
    /// Probe messages received.
    pub hop_samples: u64,
    /// PBFT only (`null` under other modes): each committed window's finality, from its fourth
    /// average seen to the first publication of its block, against the hop.
    pub finality: Option<Finality>,
    /// Resident memory of this process once every role is connected, KiB.
    pub rss_idle_kib: u64,
    /// Peak resident memory of this process, KiB.
    pub rss_peak_kib: u64,
    /// Seconds from start to the last new commit.
    pub elapsed_s: f64,
    /// Memory of each child process (with `--processes`; empty otherwise).
    pub roles: Vec<RoleMemory>,
    /// Block intervals, rounds and producer shares of the final chain.
    pub chain: ChainFigures,
    /// Roles that stopped with an error.
    pub failures: Vec<String>,
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: f64| us / 1000.0;
        writeln!(
            f,
            "pipeline on {} broker, {} cabinets ({})",
            self.broker,
            self.cabinets,
            if self.staggered {
                "staggered starts"
            } else {
                "windows cut in the same tick"
            }
        )?;
        writeln!(f, "  offered      {:.0} quads/s", self.offered_quads_per_s)?;
        writeln!(
            f,
            "  sustained    {:.0} quads/s over {:.2} s",
            self.sustained_quads_per_s, self.elapsed_s
        )?;
        writeln!(f, "  windows      produced {}  committed {}  lost {}  duplicated {}  (blocks {}, re-published {})",
            self.windows_produced, self.windows_committed, self.windows_lost, self.windows_duplicated, self.blocks, self.republished)?;
        writeln!(
            f,
            "  blocks       {} seen, {} in the final chain: stale rate {:.1} %",
            self.blocks,
            self.blocks_final,
            self.stale_rate * 100.0
        )?;
        writeln!(
            f,
            "  window→block p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.window_to_block.p50_us),
            ms(self.window_to_block.p99_us),
            ms(self.window_to_block.max_us)
        )?;
        if let Some(fin) = &self.finality {
            writeln!(
                f,
                "  finality     p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} windows; 4th average seen → first ledger/block publication{})",
                ms(fin.latency.p50_us),
                ms(fin.latency.p99_us),
                ms(fin.latency.max_us),
                fin.samples,
                match fin.unobserved {
                    0 => String::new(),
                    n => format!("; {n} committed windows not seen complete"),
                }
            )?;
        }
        writeln!(
            f,
            "  broker hop   p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} probes at QoS 1, same run)",
            ms(self.hop.p50_us),
            ms(self.hop.p99_us),
            ms(self.hop.max_us),
            self.hop_samples
        )?;
        if let Some(fin) = &self.finality {
            writeln!(
                f,
                "  finality p50 = {:.2} × 3 hops (PRE-PREPARE, PREPARE, COMMIT)  = {:.2} × 4 hops (with the block's publication)",
                fin.vs_3_hops, fin.vs_4_hops
            )?;
        }
        let c = &self.chain;
        writeln!(
            f,
            "  interval     mean {:.1} ms  p50 {:.1} ms  p99 {:.1} ms{}  rounds {:?}",
            c.mean_interval_ms,
            ms(c.block_interval.p50_us),
            ms(c.block_interval.p99_us),
            c.configured_interval_ms.map_or(String::new(), |i| format!(
                " (configured {i} ms: mean {:+.1} %, round-0 blocks' mean {:.1} ms {:+.1} %, p50 {:+.1} %)",
                (c.mean_interval_ms / i as f64 - 1.0) * 100.0,
                c.mean_round0_interval_ms,
                (c.mean_round0_interval_ms / i as f64 - 1.0) * 100.0,
                (ms(c.block_interval.p50_us) / i as f64 - 1.0) * 100.0
            )),
            c.rounds
        )?;
        for p in &c.producers {
            writeln!(
                f,
                "  producer     {}…  {} blocks  {:.1} % of them  (stake {:.1} %)",
                p.producer,
                p.blocks,
                p.share * 100.0,
                p.stake_share * 100.0
            )?;
        }
        if self.roles.is_empty() {
            write!(
                f,
                "  memory       {} KiB idle, {} KiB peak (whole process: broker and every role)",
                self.rss_idle_kib, self.rss_peak_kib
            )?;
        } else {
            write!(
                f,
                "  memory       bench process (cabinets, observer): {} KiB idle, {} KiB peak",
                self.rss_idle_kib, self.rss_peak_kib
            )?;
            for r in &self.roles {
                write!(
                    f,
                    "\n               {:<12} {} KiB idle, {} KiB peak",
                    r.role, r.idle_kib, r.peak_kib
                )?;
            }
        }
        for failure in &self.failures {
            write!(f, "\n  FAILED       {failure}")?;
        }
        Ok(())
    }
}
