//! Which block committed which window, kept as run-length ranges so memory follows the number
//! of runs, not the number of windows.
//!
//! A run is consecutive windows `first..=last` of one cabinet whose blocks form an arithmetic
//! progression `first_block + k * stride`. That covers the usual shapes: several windows per
//! block (stride 0), one window per block (stride 1), or cabinets taking turns (stride = number
//! of cabinets). Lookups are a `BTreeMap` range query: O(log runs).

use std::collections::{BTreeMap, HashMap};

/// One run of consecutive windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    last_window: u64,
    first_block: u64,
    stride: u64,
}

/// The windows of one cabinet that the chain holds: count and extremes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CabinetWindows {
    /// Cabinet id.
    pub cabinet: String,
    /// Number of distinct windows committed.
    pub count: u64,
    /// Smallest window id.
    pub min: u64,
    /// Largest window id.
    pub max: u64,
}

/// Maps `(cabinet, window)` to the index of the block that committed it.
#[derive(Debug, Default, Clone)]
pub struct WindowIndex {
    cabinets: HashMap<String, BTreeMap<u64, Run>>,
    windows: u64,
}

impl WindowIndex {
    /// The block index that committed `window` of `cabinet`, if any.
    pub fn get(&self, cabinet: &str, window: u64) -> Option<u64> {
        let runs = self.cabinets.get(cabinet)?;
        let (&first, run) = runs.range(..=window).next_back()?;
        (window <= run.last_window).then(|| run.first_block + (window - first) * run.stride)
    }

    /// Records that `block` commits `window`; false (and no change) if it was already known.
    ///
    /// Blocks are added in chain order, so `block` is never below any block already stored.
    pub fn insert(&mut self, cabinet: &str, window: u64, block: u64) -> bool {
        if self.get(cabinet, window).is_some() {
            return false;
        }
        self.windows += 1;
        let runs = self.cabinets.entry(cabinet.to_owned()).or_default();
        // Extend the run ending just before this window, if the block fits its progression.
        if let Some(previous) = window.checked_sub(1) {
            if let Some((&first, run)) = runs.range_mut(..=previous).next_back() {
                if run.last_window == previous {
                    let len = previous - first + 1;
                    let fits = if len == 1 {
                        // The second window fixes the stride; a lower block cannot follow.
                        match block.checked_sub(run.first_block) {
                            Some(stride) => {
                                run.stride = stride;
                                true
                            }
                            None => false,
                        }
                    } else {
                        run.first_block.checked_add(len.saturating_mul(run.stride)) == Some(block)
                    };
                    if fits {
                        run.last_window = window;
                        return true;
                    }
                }
            }
        }
        // Prepend to the run starting just after it when both sit in the same block.
        if let Some(next) = window.checked_add(1) {
            if let Some(run) = runs.get(&next).copied() {
                let single = run.last_window == next;
                if run.first_block == block && (single || run.stride == 0) {
                    runs.remove(&next);
                    runs.insert(window, Run { stride: 0, ..run });
                    return true;
                }
            }
        }
        runs.insert(
            window,
            Run {
                last_window: window,
                first_block: block,
                stride: 0,
            },
        );
        true
    }

    /// Forgets every window committed in a block above `block` (a reorg moved the head back
    /// to it). Runs are progressions in block order, so each is cut, never split.
    pub fn truncate_above(&mut self, block: u64) {
        let mut removed = 0u64;
        self.cabinets.retain(|_, runs| {
            runs.retain(|&first, run| {
                let len = run.last_window - first + 1;
                if run.first_block > block {
                    removed += len;
                    return false;
                }
                if let Some(steps) = (block - run.first_block).checked_div(run.stride) {
                    let keep = steps + 1;
                    if keep < len {
                        removed += len - keep;
                        run.last_window = first + keep - 1;
                    }
                }
                true
            });
            !runs.is_empty()
        });
        self.windows -= removed;
    }

    /// Window ids missing between each cabinet's first and last committed window, as
    /// inclusive ranges `(cabinet, first missing, last missing)`, sorted by cabinet.
    pub fn gaps(&self) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        for (cabinet, runs) in &self.cabinets {
            let mut previous_last: Option<u64> = None;
            for (&first, run) in runs {
                if let Some(last) = previous_last {
                    if first > last + 1 {
                        out.push((cabinet.clone(), last + 1, first - 1));
                    }
                }
                previous_last = Some(run.last_window);
            }
        }
        out.sort();
        out
    }

    /// Total windows committed across cabinets.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Number of runs held (what memory use is proportional to).
    pub fn runs(&self) -> usize {
        self.cabinets.values().map(BTreeMap::len).sum()
    }

    /// Per-cabinet counts and extremes, sorted by cabinet id.
    pub fn cabinets(&self) -> Vec<CabinetWindows> {
        let mut out: Vec<CabinetWindows> = self
            .cabinets
            .iter()
            .filter_map(|(cabinet, runs)| {
                let (&min, _) = runs.first_key_value()?;
                let (_, last) = runs.last_key_value()?;
                let count = runs
                    .iter()
                    .map(|(first, run)| run.last_window - first + 1)
                    .sum();
                Some(CabinetWindows {
                    cabinet: cabinet.clone(),
                    count,
                    min,
                    max: last.last_window,
                })
            })
            .collect();
        out.sort_by(|a, b| a.cabinet.cmp(&b.cabinet));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_per_block_is_one_run() {
        let mut index = WindowIndex::default();
        for w in 0..10_000u64 {
            assert!(index.insert("a", w, w + 1));
        }
        assert_eq!(index.runs(), 1);
        assert_eq!(index.get("a", 0), Some(1));
        assert_eq!(index.get("a", 4321), Some(4322));
        assert_eq!(index.get("a", 10_000), None);
        assert_eq!(index.get("b", 1), None);
    }

    #[test]
    fn two_cabinets_taking_turns_stay_two_runs() {
        let mut index = WindowIndex::default();
        for w in 0..1000u64 {
            index.insert("a", w, 1 + 2 * w);
            index.insert("b", w, 2 + 2 * w);
        }
        assert_eq!(index.runs(), 2);
        assert_eq!(index.get("a", 500), Some(1001));
        assert_eq!(index.get("b", 500), Some(1002));
    }

    #[test]
    fn batches_of_windows_per_block_and_out_of_order_records_resolve_exactly() {
        let mut index = WindowIndex::default();
        // Block 1 holds windows 0..4 listed backwards, block 2 holds 4..8, window 20 in block 3.
        for w in (0..4u64).rev() {
            index.insert("a", w, 1);
        }
        for w in 4..8u64 {
            index.insert("a", w, 2);
        }
        index.insert("a", 20, 3);
        index.insert("a", 8, 3);
        for w in 0..4 {
            assert_eq!(index.get("a", w), Some(1), "window {w}");
        }
        for w in 4..8 {
            assert_eq!(index.get("a", w), Some(2), "window {w}");
        }
        assert_eq!(index.get("a", 8), Some(3));
        assert_eq!(index.get("a", 9), None);
        assert_eq!(index.get("a", 20), Some(3));
        assert!(index.runs() <= 4);
        assert_eq!(index.windows(), 10);
    }

    #[test]
    fn a_window_already_committed_is_refused_and_keeps_its_block() {
        let mut index = WindowIndex::default();
        assert!(index.insert("a", 5, 1));
        assert!(!index.insert("a", 5, 9));
        assert_eq!(index.get("a", 5), Some(1));
        assert_eq!(index.windows(), 1);
    }

    #[test]
    fn truncating_above_a_block_forgets_exactly_the_later_windows() {
        let mut index = WindowIndex::default();
        for w in 0..100u64 {
            index.insert("a", w, w + 1);
            index.insert("b", w, 5);
        }
        index.insert("c", 0, 60);
        index.truncate_above(40);
        assert_eq!(index.get("a", 39), Some(40));
        assert_eq!(index.get("a", 40), None);
        assert_eq!(index.get("b", 99), Some(5));
        assert_eq!(index.get("c", 0), None);
        assert_eq!(index.windows(), 140);
        assert!(
            index.insert("a", 40, 41),
            "the index grows again from there"
        );
        assert_eq!(index.get("a", 40), Some(41));
    }

    #[test]
    fn random_inserts_and_truncations_agree_with_a_plain_map() {
        use rand::{Rng, SeedableRng};
        for seed in 0..200u64 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut index = WindowIndex::default();
            let mut plain: HashMap<(u8, u64), u64> = HashMap::new();
            let mut block = 1u64;
            for _ in 0..300 {
                if rng.random_bool(0.1) {
                    let to = rng.random_range(0..=block);
                    index.truncate_above(to);
                    plain.retain(|_, b| *b <= to);
                    block = to + 1;
                    continue;
                }
                for _ in 0..rng.random_range(0..4) {
                    let (c, w) = (rng.random_range(0..2u8), rng.random_range(0..40u64));
                    let name = if c == 0 { "a" } else { "b" };
                    let fresh = !plain.contains_key(&(c, w));
                    assert_eq!(index.insert(name, w, block), fresh, "seed {seed}");
                    plain.entry((c, w)).or_insert(block);
                }
                block += 1;
            }
            for c in 0..2u8 {
                for w in 0..40 {
                    let name = if c == 0 { "a" } else { "b" };
                    assert_eq!(
                        index.get(name, w),
                        plain.get(&(c, w)).copied(),
                        "seed {seed} {name}#{w}"
                    );
                }
            }
            assert_eq!(index.windows(), plain.len() as u64, "seed {seed}");
        }
    }

    #[test]
    fn cabinet_summary_counts_and_bounds_windows() {
        let mut index = WindowIndex::default();
        for (w, b) in [(3, 1), (4, 1), (10, 2), (u64::MAX, 3)] {
            index.insert("z", w, b);
        }
        index.insert("a", 0, 3);
        let summary = index.cabinets();
        assert_eq!(summary[0].cabinet, "a");
        assert_eq!(
            summary[1],
            CabinetWindows {
                cabinet: "z".into(),
                count: 4,
                min: 3,
                max: u64::MAX
            }
        );
    }
}
