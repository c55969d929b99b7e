//! The block tree and its main chain: every valid block a node knows, fork choice by the
//! consensus mode's weight (most cumulative weight, first seen on ties), and the main chain kept
//! durable in a [`ChainLog`] (`chain.jsonl`).
//!
//! Only the main chain is on disk. A block on a lighter branch ("side") and a block whose parent
//! is unknown ("orphan") live in memory, bounded in count and bytes ([`Limits`]); a crash loses
//! them, and sync fetches them again. A reorg moves the main chain: the log is cut back to the
//! fork point (durably), then the new branch is appended (durably). A crash between the two
//! leaves a shorter valid chain, so `chain.jsonl` verifies at every instant after an fsync.
//!
//! - [`log`]: the main chain's durable form, a file or (for the simulation) memory.

pub mod log;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use tracing::info;

use super::block::{Block, Header};
use super::consensus::Work;
use super::encoding::Hash32;
use super::genesis::Genesis;
use super::rules::{
    check_block, check_block_with, check_detached_with, check_genesis_block, check_header_with,
    Verified, Violation,
};
use super::windows::WindowIndex;
pub use log::{read_blocks, ChainLog, FileLog, MemLog, OpenReport};

/// Name of the main chain file inside a data directory.
pub const CHAIN_FILE: &str = "chain.jsonl";

/// Errors of the store (a refused block is not one: see [`Status::Invalid`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the chain file failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error (in the message, not a separate source: it is shown once).
        cause: std::io::Error,
    },
    /// The chain file holds an invalid block; the store refuses to open it.
    #[error("chain file {} is invalid: block {} (line {line}): {reason}", path.display(), line - 1)]
    Corrupt {
        /// The chain file.
        path: PathBuf,
        /// 1-based line of the bad block.
        line: u64,
        /// The rule it breaks.
        reason: Violation,
    },
    /// A block asked for is past the head.
    #[error("block {index} does not exist (the main chain has {len} blocks)")]
    NoSuchBlock {
        /// Requested index.
        index: u64,
        /// Blocks on the main chain.
        len: u64,
    },
    /// An earlier write could not be undone; reopen the store to re-verify the file.
    #[error(
        "an earlier write failed and could not be undone; restart to re-verify the chain file"
    )]
    Poisoned,
}

/// Bounds on what the store keeps in memory besides the main chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most blocks on lighter branches.
    pub max_side_blocks: usize,
    /// Most bytes (JSON size) of blocks on lighter branches.
    pub max_side_bytes: usize,
    /// Most blocks whose parent is unknown.
    pub max_orphans: usize,
    /// Most bytes of blocks whose parent is unknown.
    pub max_orphan_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_side_blocks: 2048,
            max_side_bytes: 64 << 20,
            max_orphans: 256,
            max_orphan_bytes: 16 << 20,
        }
    }
}

/// What became of an inserted block.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// It extends the main chain.
    Extended,
    /// Its branch now has the most weight: the main chain moved to it.
    Reorged,
    /// Valid, on a branch with less weight (kept, bounded).
    Side,
    /// Its parent is unknown (kept, bounded, until the parent arrives).
    Orphan,
    /// Already known.
    Known,
    /// It breaks a rule; nothing was kept.
    Invalid(Violation),
}

/// A move of the main chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A block appended on top of the head.
    Extended(Box<Block>),
    /// The main chain left `removed` (old branch above `fork`) for `added` (new branch).
    Reorg {
        /// Index of the last common block.
        fork: u64,
        /// Blocks that left the main chain, lowest first.
        removed: Vec<Block>,
        /// Blocks that joined it, lowest first.
        added: Vec<Block>,
    },
}

/// The result of [`ChainStore::insert`]: the block's status and every main-chain move it
/// caused (orphans it connected included).
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// What became of the block itself.
    pub status: Status,
    /// Main-chain moves, in order.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Copy)]
struct MainEntry {
    hash: Hash32,
    work: Work,
}

#[derive(Debug)]
struct Side {
    block: Block,
    header: Header,
    work: Work,
    bytes: usize,
}

/// Builds the main chain's index from blocks read in order, checking each.
struct Loader<'a> {
    genesis: &'a Genesis,
    main: Vec<MainEntry>,
    windows: WindowIndex,
    head: Option<Header>,
}

impl Loader<'_> {
    fn accept(&mut self, block: Block) -> Result<(), Violation> {
        let header = match &self.head {
            None => {
                check_genesis_block(self.genesis, &block)?;
                block.header()
            }
            Some(parent) => {
                let windows = &self.windows;
                check_block(self.genesis, &block, parent, |c, w| windows.get(c, w))?;
                block.header()
            }
        };
        for r in block.records() {
            self.windows.insert(&r.cabinet, r.window, block.index);
        }
        let work = self.main.last().map_or(0, |m| m.work) + self.genesis.consensus.weight(&header);
        self.main.push(MainEntry {
            hash: block.hash,
            work,
        });
        self.head = Some(header);
        Ok(())
    }
}

/// The block tree of one node over its durable main chain.
pub struct ChainStore<L: ChainLog> {
    genesis: Genesis,
    log: L,
    main: Vec<MainEntry>,
    on_main: HashMap<Hash32, u64>,
    head: Header,
    windows: WindowIndex,
    side: HashMap<Hash32, Side>,
    side_bytes: usize,
    orphans: VecDeque<Block>,
    orphan_bytes: usize,
    limits: Limits,
    verified: Verified,
}

impl ChainStore<FileLog> {
    /// Opens (creating if missing) `path` under `genesis`, verifying every block; writes the
    /// genesis block into an empty file. A torn last line is cut away and reported.
    pub fn open(
        genesis: &Genesis,
        path: &Path,
        limits: Limits,
    ) -> Result<(ChainStore<FileLog>, OpenReport), StoreError> {
        let mut loader = Loader {
            genesis,
            main: Vec::new(),
            windows: WindowIndex::default(),
            head: None,
        };
        let (log, mut report) = FileLog::open(path, |b| loader.accept(b))?;
        let Loader {
            main,
            windows,
            head,
            ..
        } = loader;
        report.created = head.is_none();
        let store = ChainStore::assemble(genesis, log, main, windows, head, limits)?;
        info!(path = %path.display(), blocks = store.len(), head = %store.head.hash.short(), "chain open");
        Ok((store, report))
    }
}

impl ChainStore<MemLog> {
    /// A store over a simulated disk (kept across a simulated crash, or empty when wiped).
    pub fn open_memory(genesis: &Genesis, log: MemLog, limits: Limits) -> Result<Self, Violation> {
        let mut loader = Loader {
            genesis,
            main: Vec::new(),
            windows: WindowIndex::default(),
            head: None,
        };
        for block in log.blocks.iter().cloned() {
            loader.accept(block)?;
        }
        let Loader {
            main,
            windows,
            head,
            ..
        } = loader;
        ChainStore::assemble(genesis, log, main, windows, head, limits)
            .map_err(|e| Violation::Unparseable(e.to_string()))
    }

    /// The simulated disk, for a restart.
    pub fn into_log(self) -> MemLog {
        self.log
    }
}

impl<L: ChainLog> ChainStore<L> {
    fn assemble(
        genesis: &Genesis,
        mut log: L,
        mut main: Vec<MainEntry>,
        windows: WindowIndex,
        head: Option<Header>,
        limits: Limits,
    ) -> Result<ChainStore<L>, StoreError> {
        let head = match head {
            Some(h) => h,
            None => {
                let block = genesis.block();
                log.append(std::slice::from_ref(&block))?;
                log.sync()?;
                main.push(MainEntry {
                    hash: block.hash,
                    work: 0,
                });
                block.header()
            }
        };
        let on_main = main
            .iter()
            .enumerate()
            .map(|(i, m)| (m.hash, i as u64))
            .collect();
        Ok(ChainStore {
            genesis: genesis.clone(),
            log,
            main,
            on_main,
            head,
            windows,
            side: HashMap::new(),
            side_bytes: 0,
            orphans: VecDeque::new(),
            orphan_bytes: 0,
            limits,
            verified: Verified::default(),
        })
    }

    /// The rules this chain follows.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The best block's header.
    pub fn head(&self) -> &Header {
        &self.head
    }

    /// Cumulative weight of the main chain.
    pub fn work(&self) -> Work {
        self.main.last().map_or(0, |m| m.work)
    }

    /// Blocks on the main chain, genesis included.
    pub fn len(&self) -> u64 {
        self.main.len() as u64
    }

    /// Always false: a store holds at least its genesis block.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }

    /// Height of `hash` on the main chain, if it is there.
    pub fn main_height(&self, hash: &Hash32) -> Option<u64> {
        self.on_main.get(hash).copied()
    }

    /// Hash of the main-chain block at `index`.
    pub fn main_hash(&self, index: u64) -> Option<Hash32> {
        self.main.get(index as usize).map(|m| m.hash)
    }

    /// Cumulative weight of the main chain up to `index`.
    pub fn main_work(&self, index: u64) -> Option<Work> {
        self.main.get(index as usize).map(|m| m.work)
    }

    /// Whether the block is known (main, side or orphan).
    pub fn knows(&self, hash: &Hash32) -> bool {
        self.on_main.contains_key(hash)
            || self.side.contains_key(hash)
            || self.orphans.iter().any(|b| b.hash == *hash)
    }

    /// Cumulative weight of a known block's branch up to it (main or side).
    pub fn work_of(&self, hash: &Hash32) -> Option<Work> {
        match self.on_main.get(hash) {
            Some(&h) => self.main_work(h),
            None => self.side.get(hash).map(|s| s.work),
        }
    }

    /// Index of the main-chain block that committed `window` of `cabinet`.
    pub fn committed_in(&self, cabinet: &str, window: u64) -> Option<u64> {
        self.windows.get(cabinet, window)
    }

    /// The main chain's window index.
    pub fn windows(&self) -> &WindowIndex {
        &self.windows
    }

    /// Reads main-chain block `index`.
    pub fn read(&self, index: u64) -> Result<Block, StoreError> {
        self.log.read(index)
    }

    /// A known block by hash (main or side).
    pub fn block(&self, hash: &Hash32) -> Result<Option<Block>, StoreError> {
        match self.on_main.get(hash) {
            Some(&h) => self.log.read(h).map(Some),
            None => Ok(self.side.get(hash).map(|s| s.block.clone())),
        }
    }

    /// Blocks on lighter branches and blocks waiting for their parent (what the limits bound).
    pub fn held(&self) -> (usize, usize, usize, usize) {
        (
            self.side.len(),
            self.side_bytes,
            self.orphans.len(),
            self.orphan_bytes,
        )
    }

    /// The highest main-chain height among `locator` hashes (0, genesis, if none is on it).
    pub fn locate(&self, locator: &[Hash32]) -> u64 {
        locator
            .iter()
            .filter_map(|h| self.on_main.get(h))
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Hashes of the main chain at exponentially spaced heights below the head, head first,
    /// genesis last: what a sync request names so that any peer finds the fork point.
    pub fn locator(&self) -> Vec<Hash32> {
        let mut out = Vec::new();
        let mut height = self.len() - 1;
        let mut step = 1u64;
        loop {
            out.push(self.main[height as usize].hash);
            if height == 0 {
                break;
            }
            if out.len() >= 10 {
                step *= 2;
            }
            height = height.saturating_sub(step);
        }
        out
    }

    /// Validates `block` and adds it to the tree; the main chain follows the most weight.
    /// Durable (fsynced) when it returns.
    pub fn insert(&mut self, block: Block) -> Result<Insert, StoreError> {
        let insert = self.insert_deferred(block)?;
        self.log.sync()?;
        Ok(insert)
    }

    /// [`insert`](Self::insert) without the fsync of appended blocks (a reorg's cut is still
    /// durable before its appends): for a batch from sync, made durable by [`flush`](Self::flush).
    pub fn insert_deferred(&mut self, block: Block) -> Result<Insert, StoreError> {
        let hash = block.hash;
        let mut changes = Vec::new();
        let status = self.insert_one(block, &mut changes)?;
        if matches!(status, Status::Extended | Status::Reorged | Status::Side) {
            self.connect_orphans(hash, &mut changes)?;
        }
        Ok(Insert { status, changes })
    }

    /// Makes every deferred append durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.log.sync()
    }

    fn connect_orphans(
        &mut self,
        parent: Hash32,
        changes: &mut Vec<Change>,
    ) -> Result<(), StoreError> {
        let mut frontier = vec![parent];
        while let Some(parent) = frontier.pop() {
            while let Some(pos) = self.orphans.iter().position(|b| b.previous_hash == parent) {
                let Some(orphan) = self.orphans.remove(pos) else {
                    break;
                };
                self.orphan_bytes -= block_bytes(&orphan);
                let hash = orphan.hash;
                let status = self.insert_one(orphan, changes)?;
                if matches!(status, Status::Extended | Status::Reorged | Status::Side) {
                    frontier.push(hash);
                }
            }
        }
        Ok(())
    }

    fn insert_one(
        &mut self,
        block: Block,
        changes: &mut Vec<Change>,
    ) -> Result<Status, StoreError> {
        if self.on_main.contains_key(&block.hash) || self.side.contains_key(&block.hash) {
            return Ok(Status::Known);
        }
        if block.index == 0 {
            // Another genesis block is never a valid block of this chain.
            return Ok(Status::Invalid(
                check_genesis_block(&self.genesis, &block).err().unwrap_or(
                    Violation::IndexOutOfSequence {
                        expected: 1,
                        found: 0,
                    },
                ),
            ));
        }
        let parent = block.previous_hash;
        if parent == self.head.hash {
            let windows = &self.windows;
            if let Err(v) = check_block_with(
                &self.genesis,
                &block,
                &self.head,
                |c, w| windows.get(c, w),
                &mut self.verified,
            ) {
                return Ok(Status::Invalid(v));
            }
            self.log.append(std::slice::from_ref(&block))?;
            self.push_main(&block);
            changes.push(Change::Extended(Box::new(block)));
            return Ok(Status::Extended);
        }
        let (parent_header, parent_work, fork, branch) = if let Some(&p) = self.on_main.get(&parent)
        {
            (
                self.log.read(p)?.header(),
                self.main[p as usize].work,
                p,
                Vec::new(),
            )
        } else if let Some(side) = self.side.get(&parent) {
            let (fork, branch) = self.branch_of(parent);
            (side.header.clone(), side.work, fork, branch)
        } else {
            if self.orphans.iter().any(|b| b.hash == block.hash) {
                return Ok(Status::Known);
            }
            // Only what can be checked without the parent, but that much: a block of another
            // genesis or without its work is refused here, not kept.
            if let Err(v) = check_detached_with(&self.genesis, &block.header(), &mut self.verified)
            {
                return Ok(Status::Invalid(v));
            }
            self.keep_orphan(block);
            return Ok(Status::Orphan);
        };
        let mut on_branch: HashMap<(&str, u64), u64> = HashMap::new();
        for h in &branch {
            let s = &self.side[h];
            for r in s.block.records() {
                on_branch.insert((r.cabinet.as_str(), r.window), s.block.index);
            }
        }
        let windows = &self.windows;
        let committed = |c: &str, w: u64| {
            windows
                .get(c, w)
                .filter(|b| *b <= fork)
                .or_else(|| on_branch.get(&(c, w)).copied())
        };
        if let Err(v) = check_block_with(
            &self.genesis,
            &block,
            &parent_header,
            committed,
            &mut self.verified,
        ) {
            return Ok(Status::Invalid(v));
        }
        drop(on_branch);
        let header = block.header();
        let work = parent_work + self.genesis.consensus.weight(&header);
        let hash = block.hash;
        let bytes = block_bytes(&block);
        self.side_bytes += bytes;
        self.side.insert(
            hash,
            Side {
                block,
                header,
                work,
                bytes,
            },
        );
        if work > self.work() {
            self.reorg(hash, changes)?;
            return Ok(Status::Reorged);
        }
        self.enforce_side_limits();
        Ok(Status::Side)
    }

    /// The side blocks from the fork point up to `tip` (lowest first), and the fork height.
    fn branch_of(&self, tip: Hash32) -> (u64, Vec<Hash32>) {
        let mut branch = Vec::new();
        let mut at = tip;
        while let Some(s) = self.side.get(&at) {
            branch.push(at);
            at = s.block.previous_hash;
        }
        branch.reverse();
        // Side blocks always descend from the main chain (leaves are evicted first).
        (self.on_main.get(&at).copied().unwrap_or(0), branch)
    }

    fn push_main(&mut self, block: &Block) {
        let header = block.header();
        for r in block.records() {
            self.windows.insert(&r.cabinet, r.window, block.index);
        }
        let work = self.work() + self.genesis.consensus.weight(&header);
        self.on_main.insert(block.hash, block.index);
        self.main.push(MainEntry {
            hash: block.hash,
            work,
        });
        self.head = header;
    }

    fn reorg(&mut self, tip: Hash32, changes: &mut Vec<Change>) -> Result<(), StoreError> {
        let (fork, branch) = self.branch_of(tip);
        let mut removed = Vec::new();
        for index in fork + 1..self.len() {
            removed.push(self.log.read(index)?);
        }
        let added: Vec<Block> = branch
            .iter()
            .filter_map(|h| self.side.remove(h))
            .map(|s| {
                self.side_bytes -= s.bytes;
                s.block
            })
            .collect();
        // Cut back to the fork point durably, then append the new branch: a crash in between
        // leaves a shorter valid chain.
        self.log.truncate(fork + 1)?;
        self.log.append(&added)?;
        self.log.sync()?;
        for b in &removed {
            self.on_main.remove(&b.hash);
        }
        self.main.truncate(fork as usize + 1);
        self.windows.truncate_above(fork);
        self.head = self.log.read(fork)?.header();
        for b in &added {
            self.push_main(b);
        }
        // The old branch stays known, as a lighter branch.
        let mut work = self.main[fork as usize].work;
        for b in &removed {
            let header = b.header();
            work += self.genesis.consensus.weight(&header);
            let bytes = block_bytes(b);
            self.side_bytes += bytes;
            self.side.insert(
                b.hash,
                Side {
                    block: b.clone(),
                    header,
                    work,
                    bytes,
                },
            );
        }
        self.enforce_side_limits();
        info!(fork, removed = removed.len(), added = added.len(), head = %self.head.hash.short(), "reorg");
        changes.push(Change::Reorg {
            fork,
            removed,
            added,
        });
        Ok(())
    }

    /// Evicts the lightest leaves of the side branches until within the limits.
    fn enforce_side_limits(&mut self) {
        while self.side.len() > self.limits.max_side_blocks
            || self.side_bytes > self.limits.max_side_bytes
        {
            let parents: std::collections::HashSet<Hash32> =
                self.side.values().map(|s| s.block.previous_hash).collect();
            let Some(leaf) = self
                .side
                .iter()
                .filter(|(h, _)| !parents.contains(*h))
                .min_by_key(|(_, s)| s.work)
                .map(|(h, _)| *h)
            else {
                break;
            };
            if let Some(s) = self.side.remove(&leaf) {
                self.side_bytes -= s.bytes;
            }
        }
    }

    fn keep_orphan(&mut self, block: Block) {
        let bytes = block_bytes(&block);
        if bytes > self.limits.max_orphan_bytes || self.limits.max_orphans == 0 {
            return;
        }
        self.orphan_bytes += bytes;
        self.orphans.push_back(block);
        while self.orphans.len() > self.limits.max_orphans
            || self.orphan_bytes > self.limits.max_orphan_bytes
        {
            match self.orphans.pop_front() {
                Some(old) => self.orphan_bytes -= block_bytes(&old),
                None => break,
            }
        }
    }

    /// Checks `header` on `parent` by the rules (for sync), sharing the store's cache of
    /// verified signatures so the block that follows is not verified again.
    pub fn check_header(&mut self, header: &Header, parent: &Header) -> Result<(), Violation> {
        check_header_with(&self.genesis, header, parent, &mut self.verified)
    }

    /// The main-chain headers from `from` on, at most `count`.
    pub fn headers(&self, from: u64, count: u64) -> Result<Vec<Header>, StoreError> {
        let end = self.len().min(from.saturating_add(count));
        (from..end)
            .map(|i| self.log.read(i).map(|b| b.header()))
            .collect()
    }
}

/// The size a block counts for against the limits: its JSON length, estimated from its shape
/// (a record is under 480 bytes, the rest under 800) so that no block is serialised to count it.
pub(crate) fn block_bytes(block: &Block) -> usize {
    800 + 480 * block.records().len()
}
