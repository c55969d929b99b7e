//! What the bench sees on `ledger/block`: each block counted once, each planned
//! `(cabinet, window)` against the block that committed it first, and how long it took; and
//! what a node's final chain file holds (with several nodes, a block seen on the bus may have
//! lost a fork: the file is the judge of lost and duplicated windows).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::warn;

use crate::ledger::Block;
use crate::messages::parse_ts;

/// What the bench saw on `ledger/block`.
pub(super) struct ChainTally {
    /// Windows expected per cabinet: ids `0..per_cabinet`.
    per_cabinet: u64,
    cabinets: HashSet<String>,
    pub(super) blocks: HashSet<crate::ledger::Hash32>,
    /// Each committed window and when the first block holding it was seen.
    pub(super) first_seen: HashMap<(String, u64), Instant>,
    pub(super) duplicated: u64,
    pub(super) quads: u64,
    pub(super) latencies: Vec<Duration>,
    pub(super) last_commit: Option<Instant>,
}

impl ChainTally {
    pub(super) fn new(cabinets: impl Iterator<Item = String>, per_cabinet: u64) -> Self {
        ChainTally {
            per_cabinet,
            cabinets: cabinets.collect(),
            blocks: HashSet::new(),
            first_seen: HashMap::new(),
            duplicated: 0,
            quads: 0,
            latencies: Vec::new(),
            last_commit: None,
        }
    }

    pub(super) fn expected(&self) -> u64 {
        self.per_cabinet * self.cabinets.len() as u64
    }

    pub(super) fn committed(&self) -> u64 {
        self.first_seen.len() as u64
    }

    pub(super) fn complete(&self) -> bool {
        self.committed() >= self.expected()
    }

    /// Windows of the plan committed in a chain file, and how many appear more than once.
    pub(super) fn in_chain_file(&self, path: &std::path::Path) -> (u64, u64) {
        let mut seen = HashSet::new();
        let mut duplicated = 0;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let Ok(block) = Block::from_json(line) else {
                continue;
            };
            for r in block.records() {
                if self.cabinets.contains(&r.cabinet)
                    && r.window < self.per_cabinet
                    && !seen.insert((r.cabinet.clone(), r.window))
                {
                    duplicated += 1;
                }
            }
        }
        (seen.len() as u64, duplicated)
    }

    /// Counts a block publication; a re-publication of a known block changes nothing.
    pub(super) fn on_block(&mut self, payload: &[u8], start: Instant) {
        let (now, arrived) = (Instant::now(), SystemTime::now());
        let Some(block) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| Block::from_json(s).ok())
        else {
            warn!("bench: ignoring a malformed block");
            return;
        };
        if !self.blocks.insert(block.hash) {
            return;
        }
        for r in block.records() {
            if !self.cabinets.contains(&r.cabinet) || r.window >= self.per_cabinet {
                continue;
            }
            match self.first_seen.entry((r.cabinet.clone(), r.window)) {
                Entry::Occupied(_) => self.duplicated += 1,
                Entry::Vacant(v) => {
                    v.insert(now);
                    self.quads += u64::from(r.n);
                    if let Ok(to) = parse_ts("to", &r.to) {
                        self.latencies
                            .push(arrived.duration_since(to).unwrap_or_default());
                    }
                    self.last_commit = Some(now.max(start));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_after(head: &Block, windows: &[(&str, u64)]) -> Block {
        use crate::ledger::{digest_values, Averages, Digests, Hash32, Record, Timestamp};
        let d = Hash32(digest_values(&[1.0]));
        let records = windows
            .iter()
            .map(|&(cabinet, window)| Record {
                cabinet: cabinet.into(),
                window,
                from: "2026-11-21T10:00:00.000Z".into(),
                to: "2026-11-21T10:00:01.000Z".into(),
                n: 10,
                averages: Averages {
                    u: 230.0,
                    i: 1.0,
                    pa: 200.0,
                    pr: 5.0,
                },
                digests: Digests {
                    u: d,
                    i: d,
                    pa: d,
                    pr: d,
                },
            })
            .collect();
        let key = crate::ledger::NodeKey::from_seed([5; 32]);
        genesis()
            .template(&head.header(), records, Timestamp::now(), key.public())
            .finish(0, &key, &genesis().id())
    }

    fn genesis() -> crate::ledger::Genesis {
        let mut spec = crate::ledger::GenesisSpec::pow(0);
        spec.created = crate::ledger::Timestamp::from_millis(0).unwrap();
        crate::ledger::Genesis::new(spec).unwrap()
    }

    #[test]
    fn a_block_seen_twice_counts_once_and_a_window_in_two_blocks_is_a_duplicate() {
        let genesis = genesis().block();
        let b1 = block_after(&genesis, &[("c1", 0), ("c2", 0), ("other", 0), ("c1", 7)]);
        let b2 = block_after(&b1, &[("c1", 1), ("c1", 0)]);
        let mut tally = ChainTally::new(["c1".to_string(), "c2".to_string()].into_iter(), 2);
        let start = Instant::now();
        for b in [&genesis, &b1, &b1, &b2, &b2] {
            tally.on_block(b.to_json().as_bytes(), start);
        }
        tally.on_block(b"not a block", start);
        assert_eq!(tally.blocks.len(), 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.jsonl");
        let lines: Vec<String> = [&genesis, &b1, &b2].iter().map(|b| b.to_json()).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(tally.in_chain_file(&path), (3, 1), "c1#0 twice in the file");
        assert_eq!(
            tally.committed(),
            3,
            "c1#0, c2#0, c1#1; foreign and unplanned windows ignored"
        );
        assert_eq!(tally.duplicated, 1, "c1#0 again in block 2");
        assert_eq!(tally.quads, 30);
        assert!(!tally.complete(), "c2#1 is missing");
        assert_eq!(tally.latencies.len(), 3);
    }
}
