//! Whole-file verification against a genesis: every rule of the ledger spec, the first bad block
//! named, per-cabinet gaps reported as warnings.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::block::{Block, Header};
use super::consensus::Work;
use super::encoding::Hash32;
use super::genesis::Genesis;
use super::rules::{check_block, check_genesis_block, check_mode_keys, Violation};
use super::timestamp::Timestamp;
use super::windows::{CabinetWindows, WindowIndex};

/// The first invalid block of a chain file and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block {index} (line {line}): {reason}")]
pub struct VerifyError {
    /// Index the block at that position should have (its line number minus one).
    pub index: u64,
    /// 1-based line number in the file.
    pub line: u64,
    /// The rule broken.
    pub reason: Violation,
}

/// Why a chain file could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFileError {
    /// The file could not be read at all (exit status 2).
    #[error("cannot read chain file {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a separate source: it is shown once).
        cause: std::io::Error,
    },
    /// The file is not a valid chain (exit status 1).
    #[error(transparent)]
    Invalid(#[from] VerifyError),
}

/// What a valid chain file contains.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySummary {
    /// The chain id (genesis hash) it follows.
    pub chain_id: Hash32,
    /// Number of blocks, genesis included.
    pub blocks: u64,
    /// Records across all blocks (= windows committed).
    pub records: u64,
    /// Per cabinet: windows committed, smallest and largest id.
    pub cabinets: Vec<CabinetWindows>,
    /// Per cabinet, window ids missing between its first and last: `(cabinet, from, to)`.
    pub gaps: Vec<(String, u64, u64)>,
    /// Distinct producers of non-genesis blocks.
    pub producers: usize,
    /// Genesis time.
    pub first_timestamp: Timestamp,
    /// Head time.
    pub last_timestamp: Timestamp,
    /// Head hash.
    pub head_hash: Hash32,
    /// Cumulative weight by the consensus rules (pow: expected hashes).
    pub total_work: Work,
}

impl VerifySummary {
    /// The gap warnings, one line each (`c1: 121..=124 missing`).
    pub fn gap_warnings(&self) -> Vec<String> {
        self.gaps
            .iter()
            .map(|(c, from, to)| format!("{c}: {from}..={to} missing"))
            .collect()
    }
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "valid chain: {} blocks, {} records, {} cabinets, {} producers",
            self.blocks,
            self.records,
            self.cabinets.len(),
            self.producers
        )?;
        writeln!(f, "  chain id  {}", self.chain_id)?;
        writeln!(f, "  head      #{} {}", self.blocks - 1, self.head_hash)?;
        writeln!(
            f,
            "  time      {} .. {}",
            self.first_timestamp, self.last_timestamp
        )?;
        writeln!(
            f,
            "  work      2^{:.2} expected hashes",
            (self.total_work.max(1) as f64).log2()
        )?;
        for c in &self.cabinets {
            writeln!(
                f,
                "  cabinet   {}: {} windows, ids {}..={}",
                c.cabinet, c.count, c.min, c.max
            )?;
        }
        Ok(())
    }
}

/// Checks a chain block by block, in order: the incremental form of [`verify_file`], for readers
/// that follow a chain file as it grows (the web service). Without a genesis it refuses every
/// block.
#[derive(Debug, Default)]
pub struct ChainChecker {
    genesis: Option<Genesis>,
    head: Option<Header>,
    windows: WindowIndex,
    verified: super::rules::Verified,
}

impl ChainChecker {
    /// A checker of chains following `genesis`.
    pub fn new(genesis: Genesis) -> ChainChecker {
        ChainChecker {
            genesis: Some(genesis),
            ..ChainChecker::default()
        }
    }

    /// Whether it has a genesis to check against.
    pub fn has_genesis(&self) -> bool {
        self.genesis.is_some()
    }

    /// The genesis it checks against.
    pub fn genesis(&self) -> Option<&Genesis> {
        self.genesis.as_ref()
    }

    /// Index the next block must have.
    pub fn next_index(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.index + 1)
    }

    /// The last accepted block's header.
    pub fn head(&self) -> Option<&Header> {
        self.head.as_ref()
    }

    /// Which block committed each window.
    pub fn windows(&self) -> &WindowIndex {
        &self.windows
    }

    /// Checks `block` as the next block (every rule, in the spec's order), without accepting it.
    pub fn check(&mut self, block: &Block) -> Result<(), Violation> {
        let Some(genesis) = &self.genesis else {
            return Err(Violation::Unparseable("no genesis to check against".into()));
        };
        check_mode_keys(genesis, &block.header())?;
        let expected = self.next_index();
        if block.index != expected {
            return Err(Violation::IndexOutOfSequence {
                expected,
                found: block.index,
            });
        }
        match &self.head {
            None => check_genesis_block(genesis, block),
            Some(parent) => {
                let windows = &self.windows;
                super::rules::check_block_with(
                    genesis,
                    block,
                    parent,
                    |c, w| windows.get(c, w),
                    &mut self.verified,
                )
            }
        }
    }

    /// Accepts a block that [`check`](Self::check) passed.
    pub fn accept(&mut self, block: Block) {
        for r in block.records() {
            self.windows.insert(&r.cabinet, r.window, block.index);
        }
        self.head = Some(block.header());
    }
}

/// Verifies a whole chain file against `genesis`: the derived genesis block, links, hashes,
/// difficulty and work, signatures, mode rules, timestamps, records, no window twice.
pub fn verify_file(genesis: &Genesis, path: &Path) -> Result<VerifySummary, VerifyFileError> {
    let io = |source| VerifyFileError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    let file = File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut windows = WindowIndex::default();
    let mut head: Option<Header> = None;
    let (mut records, mut work, mut first) = (0u64, 0 as Work, None);
    let mut producers = std::collections::HashSet::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if read == 0 {
            break;
        }
        line += 1;
        let fail = |reason| VerifyError {
            index: line - 1,
            line,
            reason,
        };
        let terminated = buf.last() == Some(&b'\n');
        let text = &buf[..buf.len() - usize::from(terminated)];
        let parsed = std::str::from_utf8(text)
            .map_err(|e| e.to_string())
            .and_then(|t| Block::from_json(t).map_err(|e| e.to_string()));
        let block = match parsed {
            Ok(block) => block,
            Err(_) if !terminated => return Err(fail(Violation::TornLine).into()),
            Err(why) => return Err(fail(Violation::Unparseable(why)).into()),
        };
        let header = block.header();
        check_mode_keys(genesis, &header).map_err(fail)?;
        if block.index != line - 1 {
            return Err(fail(Violation::IndexOutOfSequence {
                expected: line - 1,
                found: block.index,
            })
            .into());
        }
        match &head {
            None => check_genesis_block(genesis, &block).map_err(fail)?,
            Some(parent) => {
                check_block(genesis, &block, parent, |c, w| windows.get(c, w)).map_err(fail)?;
                producers.insert(block.producer);
            }
        }
        work += genesis.consensus.weight(&header);
        first.get_or_insert(block.timestamp);
        records += block.records().len() as u64;
        for r in block.records() {
            windows.insert(&r.cabinet, r.window, block.index);
        }
        head = Some(header);
    }
    let head = head.ok_or(VerifyError {
        index: 0,
        line: 1,
        reason: Violation::Empty,
    })?;
    Ok(VerifySummary {
        chain_id: genesis.id(),
        blocks: head.index + 1,
        records,
        cabinets: windows.cabinets(),
        gaps: windows.gaps(),
        producers: producers.len(),
        first_timestamp: first.unwrap_or(head.timestamp),
        last_timestamp: head.timestamp,
        head_hash: head.hash,
        total_work: work,
    })
}
