//! One cabinet in the live view: its recent quadruplets, its status, its latest averages, and
//! the windows whose four averages have all arrived.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use utoipa::ToSchema;

use crate::messages::{Average, CabinetStatus, Quadruplet};
use crate::topics::Quantity;

/// Windows still missing an average, per cabinet (older ones are forgotten first).
const PARTIAL_WINDOWS: usize = 64;

/// A window of one cabinet with its four averages.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WindowSummary {
    /// Cabinet id.
    pub cabinet: String,
    /// Window id.
    pub window: u64,
    /// First sample's timestamp.
    pub from: String,
    /// Last sample's timestamp.
    pub to: String,
    /// Samples in the window.
    pub n: u32,
    /// Mean voltage, V.
    #[serde(rename = "U")]
    pub u: f64,
    /// Mean current, A.
    #[serde(rename = "I")]
    pub i: f64,
    /// Mean active power, W.
    #[serde(rename = "PA")]
    pub pa: f64,
    /// Mean reactive power, var.
    #[serde(rename = "PR")]
    pub pr: f64,
    /// Index of the block that commits it, once on the chain (API only; absent in events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_in: Option<u64>,
}

#[derive(Default)]
struct Partial {
    means: [Option<f64>; 4],
}

#[derive(Default)]
pub(super) struct CabinetLive {
    quads: VecDeque<Quadruplet>,
    pub(super) status: Option<CabinetStatus>,
    averages: [Option<Average>; 4],
    partial: BTreeMap<u64, Partial>,
    windows: VecDeque<WindowSummary>,
}

/// The live view of one cabinet, as the API serves it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CabinetView {
    /// Cabinet id.
    pub cabinet: String,
    /// Its retained status (loads, source, outbox depth, Modbus state), once seen.
    pub status: Option<CabinetStatus>,
    /// The latest quadruplet.
    pub latest: Option<Quadruplet>,
    /// The latest average of each quantity (U, I, PA, PR order; absent until seen).
    pub averages: Vec<Average>,
    /// The latest windows with all four averages, oldest first.
    pub windows: Vec<WindowSummary>,
    /// Recent quadruplets, oldest first (only in the single-cabinet view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Quadruplet>>,
}

impl CabinetLive {
    /// Keeps `quad`, and at most `history` of them.
    pub(super) fn push_quad(&mut self, quad: Quadruplet, history: usize) {
        self.quads.push_back(quad);
        if self.quads.len() > history {
            self.quads.pop_front();
        }
    }

    /// Takes one average; returns the window it completes, once (a re-published window is
    /// not completed twice). Keeps at most `windows` completed windows.
    pub(super) fn take_average(&mut self, avg: Average, windows: usize) -> Option<WindowSummary> {
        let q = avg.quantity.index();
        let done = self.windows.iter().any(|w| w.window == avg.window);
        let mut completed = None;
        if !done {
            let partial = self.partial.entry(avg.window).or_default();
            partial.means[q] = Some(avg.mean);
            if let [Some(u), Some(i), Some(pa), Some(pr)] = partial.means {
                self.partial.remove(&avg.window);
                let summary = WindowSummary {
                    cabinet: avg.cabinet.clone(),
                    window: avg.window,
                    from: avg.from.clone(),
                    to: avg.to.clone(),
                    n: avg.n,
                    u,
                    i,
                    pa,
                    pr,
                    committed_in: None,
                };
                self.windows.push_back(summary.clone());
                if self.windows.len() > windows {
                    self.windows.pop_front();
                }
                completed = Some(summary);
            }
            while self.partial.len() > PARTIAL_WINDOWS {
                self.partial.pop_first();
            }
        }
        self.averages[q] = Some(avg);
        completed
    }

    /// The API's view of this cabinet (`history`: with its recent quadruplets).
    pub(super) fn view(&self, id: &str, history: bool) -> CabinetView {
        CabinetView {
            cabinet: id.to_string(),
            status: self.status.clone(),
            latest: self.quads.back().cloned(),
            averages: Quantity::ALL
                .iter()
                .filter_map(|q| self.averages[q.index()].clone())
                .collect(),
            windows: self.windows.iter().cloned().collect(),
            history: history.then(|| self.quads.iter().cloned().collect()),
        }
    }
}
