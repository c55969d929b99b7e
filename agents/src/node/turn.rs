//! Turns under proof of work: the nodes heard recently (this one and its peers, ordered by id)
//! take turns by height. The node whose turn it is for the next block mines at once; each of
//! the others waits [`handoff_ms`](super::EngineConfig::handoff_ms) times its distance in the
//! order without that block (the node may be down, cut off or slow) before mining on the same
//! head itself. Without it every node starts on the same records the moment they are ready,
//! and with blocks taking milliseconds to mine, as long as they take to propagate, a fifth of
//! the blocks were stale. Anyone may still mine any block: a turn is a courtesy, not a rule,
//! and nothing in validation or fork choice depends on it.

use super::engine::Engine;
use crate::ledger::store::ChainLog;
use crate::ledger::Header;

impl<L: ChainLog> Engine<L> {
    /// Whether this node may start mining on `head` now.
    pub(super) fn my_turn(&mut self, head: &Header) -> bool {
        // Other modes elect their producer themselves.
        if self.store.genesis().consensus.mode() != "pow" || self.peers.is_empty() {
            return true;
        }
        let nodes = self.peers.len() as u64 + 1;
        let turn = (head.index + 1) % nodes;
        let rank = self
            .peers
            .keys()
            .filter(|id| id.as_str() < self.id.as_str())
            .count() as u64;
        let distance = (rank + nodes - turn) % nodes;
        if distance == 0 {
            return true;
        }
        let since = match self.waiting {
            Some((hash, since)) if hash == head.hash => since,
            _ => {
                self.waiting = Some((head.hash, self.now_ms));
                self.now_ms
            }
        };
        self.now_ms >= since + distance * self.config.handoff_ms
    }
}
