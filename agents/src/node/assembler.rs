//! Assembling the four averages of a window into one ledger record.
//!
//! Pure logic, no I/O: the node engine feeds it every average it receives and takes the ready
//! records when it starts a block; records of a block that left the main chain come back. Duplicates (an averager's retry, a re-issued window) are
//! recognised and ignored; the number of windows in progress is bounded.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::ledger::{Averages, Digests, Hash32, Record};
use crate::messages::Average;
use crate::topics::Quantity;

/// A window is identified by its cabinet and id.
pub type WindowKey = (String, u64);

/// What became of an offered average.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// Stored; the window still misses some quantities.
    Stored,
    /// It completed its window, which is now ready for a block.
    Ready,
    /// This quantity of this window was already held, ready or being mined.
    Duplicate,
    /// It contradicts the window's other averages (sample count or time range).
    Conflict(String),
}

/// Collects averages per window until all four are present.
#[derive(Debug)]
pub struct Assembler {
    partial: HashMap<WindowKey, [Option<Average>; 4]>,
    /// Arrival order of partial windows, oldest first (for eviction).
    order: VecDeque<WindowKey>,
    ready: VecDeque<Record>,
    /// Windows ready or being mined: later averages for them are duplicates.
    claimed: HashSet<WindowKey>,
    max_pending: usize,
}

impl Assembler {
    /// An assembler holding at most `max_pending` windows in progress (partial or ready).
    pub fn new(max_pending: usize) -> Self {
        Assembler {
            partial: HashMap::new(),
            order: VecDeque::new(),
            ready: VecDeque::new(),
            claimed: HashSet::new(),
            max_pending: max_pending.max(1),
        }
    }

    /// Windows in progress (partial or ready, not being mined).
    pub fn pending(&self) -> usize {
        self.partial.len() + self.ready.len()
    }

    /// Windows ready for a block.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Offers one average. When the assembler is full, the oldest partial window is evicted and
    /// returned alongside (its averages are lost; the cabinet's deadline re-issues it).
    pub fn offer(&mut self, avg: Average) -> (Offer, Option<WindowKey>) {
        let key = (avg.cabinet.clone(), avg.window);
        if self.claimed.contains(&key) {
            return (Offer::Duplicate, None);
        }
        let mut evicted = None;
        if !self.partial.contains_key(&key) && self.pending() >= self.max_pending {
            evicted = self.evict_oldest();
        }
        let slots = self.partial.entry(key.clone()).or_insert_with(|| {
            self.order.push_back(key.clone());
            Default::default()
        });
        if let Some(other) = slots.iter().flatten().next() {
            if other.n != avg.n || other.from != avg.from || other.to != avg.to {
                return (
                    Offer::Conflict(format!(
                        "window {} of {}: {} says n={} {}..{}, {} says n={} {}..{}",
                        avg.window,
                        avg.cabinet,
                        other.quantity,
                        other.n,
                        other.from,
                        other.to,
                        avg.quantity,
                        avg.n,
                        avg.from,
                        avg.to
                    )),
                    evicted,
                );
            }
        }
        let slot = &mut slots[avg.quantity.index()];
        if slot.is_some() {
            return (Offer::Duplicate, evicted);
        }
        *slot = Some(avg);
        if slots.iter().all(Option::is_some) {
            let slots = self.partial.remove(&key).expect("entry exists");
            self.order.retain(|k| k != &key);
            self.ready.push_back(record_of(slots));
            self.claimed.insert(key);
            return (Offer::Ready, evicted);
        }
        (Offer::Stored, evicted)
    }

    /// Takes up to `max` ready records, oldest first, for the next block. They stay claimed
    /// until [`Assembler::release`].
    pub fn take_ready(&mut self, max: usize) -> Vec<Record> {
        let n = self.ready.len().min(max);
        self.ready.drain(..n).collect()
    }

    /// Forgets windows that left the publisher's hands (committed, or given up): later averages
    /// for them are no longer duplicates of anything held here.
    pub fn release<'a>(&mut self, keys: impl IntoIterator<Item = (&'a str, u64)>) {
        for (cabinet, window) in keys {
            self.claimed.remove(&(cabinet.to_string(), window));
        }
    }

    /// Puts records back in front of the ready queue, claimed again: a block that held them
    /// was not mined, went stale, or left the main chain in a reorg.
    pub fn restore(&mut self, records: Vec<Record>) {
        for record in records.into_iter().rev() {
            let key = (record.cabinet.clone(), record.window);
            self.partial.remove(&key);
            self.order.retain(|k| k != &key);
            let held = self
                .ready
                .iter()
                .any(|r| r.cabinet == record.cabinet && r.window == record.window);
            if !held {
                self.ready.push_front(record);
            }
            self.claimed.insert(key);
        }
    }

    /// Drops windows that a block on the main chain now commits, wherever they are held.
    pub fn committed<'a>(&mut self, keys: impl IntoIterator<Item = (&'a str, u64)>) {
        for (cabinet, window) in keys {
            let key = (cabinet.to_string(), window);
            if self.partial.remove(&key).is_some() {
                self.order.retain(|k| k != &key);
            }
            self.ready
                .retain(|r| !(r.cabinet == cabinet && r.window == window));
            self.claimed.remove(&key);
        }
    }

    fn evict_oldest(&mut self) -> Option<WindowKey> {
        let key = self.order.pop_front()?;
        self.partial.remove(&key);
        Some(key)
    }
}

fn record_of(slots: [Option<Average>; 4]) -> Record {
    let [u, i, pa, pr] = slots.map(|s| s.expect("all four present"));
    let digest = |a: &Average| Hash32::from_hex(&a.digest).unwrap_or(Hash32::ZERO);
    debug_assert_eq!(
        [u.quantity, i.quantity, pa.quantity, pr.quantity],
        Quantity::ALL
    );
    Record {
        cabinet: u.cabinet.clone(),
        window: u.window,
        from: u.from.clone(),
        to: u.to.clone(),
        n: u.n,
        averages: Averages {
            u: u.mean,
            i: i.mean,
            pa: pa.mean,
            pr: pr.mean,
        },
        digests: Digests {
            u: digest(&u),
            i: digest(&i),
            pa: digest(&pa),
            pr: digest(&pr),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avg(cabinet: &str, window: u64, quantity: Quantity, mean: f64) -> Average {
        Average {
            cabinet: cabinet.into(),
            window,
            quantity,
            mean,
            n: 4,
            min: mean,
            max: mean,
            from: "2026-11-21T10:00:00.000Z".into(),
            to: "2026-11-21T10:00:03.000Z".into(),
            digest: format!("{:064x}", quantity.index() + 1),
            agent: "a1".into(),
        }
    }

    #[test]
    fn a_window_is_ready_once_all_four_averages_arrived_in_any_order() {
        let mut a = Assembler::new(10);
        for (q, mean) in [
            (Quantity::PR, -6.0),
            (Quantity::U, 230.0),
            (Quantity::PA, 300.0),
        ] {
            assert_eq!(a.offer(avg("c1", 5, q, mean)).0, Offer::Stored);
        }
        assert_eq!(a.offer(avg("c1", 5, Quantity::I, 1.3)).0, Offer::Ready);
        let records = a.take_ready(10);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!((r.cabinet.as_str(), r.window, r.n), ("c1", 5, 4));
        assert_eq!(
            (r.averages.u, r.averages.i, r.averages.pa, r.averages.pr),
            (230.0, 1.3, 300.0, -6.0)
        );
        assert_eq!(r.digests.pr.to_hex(), format!("{:064x}", 4));
        r.validate().unwrap();
    }

    #[test]
    fn duplicates_are_ignored_before_during_and_until_release() {
        let mut a = Assembler::new(10);
        a.offer(avg("c1", 1, Quantity::U, 1.0));
        assert_eq!(a.offer(avg("c1", 1, Quantity::U, 1.0)).0, Offer::Duplicate);
        for q in [Quantity::I, Quantity::PA, Quantity::PR] {
            a.offer(avg("c1", 1, q, 1.0));
        }
        let taken = a.take_ready(10);
        assert_eq!(taken.len(), 1);
        // While being mined, a re-issued window's averages are duplicates.
        assert_eq!(a.offer(avg("c1", 1, Quantity::PA, 1.0)).0, Offer::Duplicate);
        a.release([("c1", 1)]);
        assert_eq!(a.offer(avg("c1", 1, Quantity::PA, 1.0)).0, Offer::Stored);
    }

    #[test]
    fn contradicting_averages_are_refused() {
        let mut a = Assembler::new(10);
        a.offer(avg("c1", 1, Quantity::U, 1.0));
        let mut other = avg("c1", 1, Quantity::I, 1.0);
        other.n = 5;
        assert!(matches!(a.offer(other).0, Offer::Conflict(_)));
    }

    #[test]
    fn the_oldest_partial_window_is_evicted_when_full() {
        let mut a = Assembler::new(2);
        a.offer(avg("c1", 1, Quantity::U, 1.0));
        a.offer(avg("c1", 2, Quantity::U, 1.0));
        let (offer, evicted) = a.offer(avg("c1", 3, Quantity::U, 1.0));
        assert_eq!(offer, Offer::Stored);
        assert_eq!(evicted, Some(("c1".to_string(), 1)));
        assert_eq!(a.pending(), 2);
    }

    #[test]
    fn ready_records_leave_in_arrival_order_at_most_max_per_block() {
        let mut a = Assembler::new(100);
        for w in 0..5 {
            for q in Quantity::ALL {
                a.offer(avg("c1", w, q, 1.0));
            }
        }
        let first: Vec<u64> = a.take_ready(3).iter().map(|r| r.window).collect();
        assert_eq!(first, vec![0, 1, 2]);
        assert_eq!(a.ready(), 2);
    }
}
