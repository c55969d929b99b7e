//! Cutting the stream of quadruplets into windows of N samples, one task per quantity.

use crate::ledger::digest_hex;
use crate::messages::{Quadruplet, WindowTask};
use crate::topics::Quantity;

/// Collects quadruplets and cuts a window every `size` samples: no sample in two windows, none
/// skipped.
#[derive(Debug)]
pub struct WindowCutter {
    size: usize,
    samples: Vec<Quadruplet>,
}

impl WindowCutter {
    /// A cutter of windows of `size` samples (at least 1).
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        WindowCutter {
            size,
            samples: Vec::with_capacity(size),
        }
    }

    /// Samples collected towards the next window.
    pub fn buffered(&self) -> usize {
        self.samples.len()
    }

    /// Adds a sample; when it completes a window, returns the four tasks of window `id`.
    pub fn push(&mut self, quad: Quadruplet, id: u64) -> Option<Vec<WindowTask>> {
        self.samples.push(quad);
        if self.samples.len() < self.size {
            return None;
        }
        let samples = std::mem::replace(&mut self.samples, Vec::with_capacity(self.size));
        Some(tasks_of(&samples, id))
    }
}

/// The four per-quantity tasks of one window of samples (non-empty, in sequence order).
pub fn tasks_of(samples: &[Quadruplet], id: u64) -> Vec<WindowTask> {
    let first = &samples[0];
    let last = &samples[samples.len() - 1];
    Quantity::ALL
        .iter()
        .map(|&quantity| {
            let values: Vec<f64> = samples.iter().map(|s| s.value(quantity)).collect();
            WindowTask {
                cabinet: first.cabinet.clone(),
                window: id,
                quantity,
                first_seq: first.seq,
                digest: digest_hex(&values),
                values,
                from: first.ts.clone(),
                to: last.ts.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Validate;

    fn quad(seq: u64) -> Quadruplet {
        Quadruplet {
            cabinet: "c1".into(),
            seq,
            ts: format!("2026-11-21T10:00:{:02}.000Z", seq % 60),
            u: 230.0 + seq as f64,
            i: 1.0,
            pa: 200.0,
            pr: -6.0,
        }
    }

    #[test]
    fn every_n_samples_make_one_window_with_exactly_their_values() {
        let mut cutter = WindowCutter::new(3);
        let mut windows = Vec::new();
        for seq in 0..7 {
            if let Some(tasks) = cutter.push(quad(seq), windows.len() as u64) {
                windows.push(tasks);
            }
        }
        assert_eq!(windows.len(), 2);
        assert_eq!(cutter.buffered(), 1);
        let u = &windows[1][Quantity::U.index()];
        assert_eq!(u.quantity, Quantity::U);
        assert_eq!((u.window, u.first_seq), (1, 3));
        assert_eq!(u.values, vec![233.0, 234.0, 235.0]);
        assert_eq!(
            (u.from.as_str(), u.to.as_str()),
            ("2026-11-21T10:00:03.000Z", "2026-11-21T10:00:05.000Z")
        );
        for t in windows.iter().flatten() {
            t.validate().unwrap();
        }
    }
}
