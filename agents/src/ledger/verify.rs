//! Whole-file verification: every rule of the "Ledger encoding" section of `topics.md`, the first bad block named.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::block::Block;
use super::check::{ChainChecker, Violation};
use super::encoding::Hash32;
use super::timestamp::Timestamp;
use super::windows::CabinetWindows;

/// Blocks between two byte-offset checkpoints kept for `ChainStore::read_block`.
pub(crate) const CHECKPOINT_EVERY: u64 = 256;

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

/// What a valid chain file contains.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifySummary {
    /// Number of blocks, genesis included.
    pub blocks: u64,
    /// Records across all blocks (= windows committed).
    pub records: u64,
    /// Per cabinet: windows committed, smallest and largest id.
    pub cabinets: Vec<CabinetWindows>,
    /// Genesis time.
    pub first_timestamp: Timestamp,
    /// Head time.
    pub last_timestamp: Timestamp,
    /// Head hash.
    pub head_hash: Hash32,
    /// Lowest difficulty of any block.
    pub min_difficulty: u32,
    /// Highest difficulty of any block.
    pub max_difficulty: u32,
    /// Expected hashes needed to produce the chain: sum of 2^difficulty.
    pub total_work: f64,
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "valid chain: {} blocks, {} records, {} cabinets",
            self.blocks,
            self.records,
            self.cabinets.len()
        )?;
        writeln!(f, "  head      #{} {}", self.blocks - 1, self.head_hash)?;
        writeln!(
            f,
            "  time      {} .. {}",
            self.first_timestamp, self.last_timestamp
        )?;
        writeln!(
            f,
            "  work      difficulty {}..={} bits, total 2^{:.2} hashes",
            self.min_difficulty,
            self.max_difficulty,
            self.total_work.log2()
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

/// A line the scan could not accept because the file ends inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number of the torn line.
    pub line: u64,
    /// Byte offset where it starts (the valid prefix length).
    pub offset: u64,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Result of reading a chain file from the start.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub checker: ChainChecker,
    /// Bytes of the valid prefix (everything when nothing is torn).
    pub valid_len: u64,
    /// The torn last line, if tolerated.
    pub torn: Option<TornTail>,
    /// The last block is complete but lacks its newline.
    pub missing_newline: bool,
    /// Byte offset of every `CHECKPOINT_EVERY`-th block.
    pub checkpoints: Vec<u64>,
    pub records: u64,
    pub first_timestamp: Option<Timestamp>,
    pub min_difficulty: u32,
    pub max_difficulty: u32,
    pub total_work: f64,
}

/// Reads and checks every line; with `tolerate_torn`, an unparseable unterminated last line
/// is reported in `torn` instead of failing.
pub(crate) fn scan(reader: impl BufRead, tolerate_torn: bool) -> Result<Scan, VerifyError> {
    let mut reader = reader;
    let mut scan = Scan {
        min_difficulty: u32::MAX,
        ..Scan::default()
    };
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let index = scan.checker.next_index();
        let fail = |line: u64, reason| VerifyError {
            index,
            line,
            reason,
        };
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| fail(line + 1, Violation::Unparseable(format!("read error: {e}"))))?;
        if read == 0 {
            break;
        }
        line += 1;
        let terminated = buf.last() == Some(&b'\n');
        let text = if terminated {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        let parsed = std::str::from_utf8(text)
            .map_err(|e| e.to_string())
            .and_then(|t| Block::from_json(t).map_err(|e| e.to_string()));
        let block = match parsed {
            Ok(block) => block,
            Err(_) if !terminated && tolerate_torn => {
                scan.torn = Some(TornTail {
                    line,
                    offset: scan.valid_len,
                    bytes: read as u64,
                });
                break;
            }
            Err(_) if !terminated => return Err(fail(line, Violation::TornLine)),
            Err(why) => return Err(fail(line, Violation::Unparseable(why))),
        };
        scan.checker.check(&block).map_err(|v| fail(line, v))?;
        if block.index % CHECKPOINT_EVERY == 0 {
            scan.checkpoints.push(scan.valid_len);
        }
        scan.valid_len += read as u64;
        scan.missing_newline = !terminated;
        scan.records += block.records().len() as u64;
        scan.first_timestamp.get_or_insert(block.timestamp);
        scan.min_difficulty = scan.min_difficulty.min(block.difficulty);
        scan.max_difficulty = scan.max_difficulty.max(block.difficulty);
        scan.total_work += 2f64.powi(block.difficulty.min(1023) as i32);
        scan.checker.accept(block);
    }
    Ok(scan)
}

/// Verifies a whole chain file: parse, index sequence, genesis, links, hashes, proof of work,
/// timestamps, record fields, and that no window is committed twice.
pub fn verify_file(path: &Path) -> Result<VerifySummary, VerifyError> {
    let file = File::open(path).map_err(|e| VerifyError {
        index: 0,
        line: 1,
        reason: Violation::Unparseable(format!("cannot open {}: {e}", path.display())),
    })?;
    let scan = scan(BufReader::new(file), false)?;
    let head = scan.checker.head().ok_or(VerifyError {
        index: 0,
        line: 1,
        reason: Violation::Empty,
    })?;
    Ok(VerifySummary {
        blocks: head.index + 1,
        records: scan.records,
        cabinets: scan.checker.windows().cabinets(),
        first_timestamp: scan.first_timestamp.unwrap_or(head.timestamp),
        last_timestamp: head.timestamp,
        head_hash: head.hash,
        min_difficulty: scan.min_difficulty,
        max_difficulty: scan.max_difficulty,
        total_work: scan.total_work,
    })
}
