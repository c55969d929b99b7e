//! The web service's narrow view of the chain: [`ChainView`], and [`FileChain`], which follows
//! a node's `chain.jsonl` read-only.
//!
//! Everything the API and dashboard know about the chain goes through this trait, so pointing
//! the web service at another store (the ledger's block tree) is a change to this file only.
//! Blocks travel as their stored JSON ([`StoredBlock::raw`]): fields the API does not know
//! (`producer`, `signature`, ...) reach clients untouched.
//!
//! [`FileChain`] never writes: it reads lines as the node appends them, checks each with the
//! ledger's own rules ([`ChainChecker`], under the `genesis.json` beside the chain file) and
//! stops at the first block that fails, which
//! [`Verification`] names. Memory: the window index, 8 bytes per block (a hash prefix for
//! look-ups by hash), one file offset per [`CHECKPOINT`] blocks and the last [`RECENT`] blocks.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::ledger::{Block, ChainChecker, Hash32, Header};

/// Blocks between two remembered file offsets: reading block `i` skips at most this many lines.
pub const CHECKPOINT: u64 = 64;
/// Latest blocks kept in memory (the dashboard's "latest blocks" never touch the disk).
pub const RECENT: usize = 128;

/// Why the chain could not be read.
#[derive(Debug, Error)]
pub enum ChainError {
    /// The chain file could not be read.
    #[error("chain file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A block that was valid when followed no longer reads back (the file was rewritten).
    #[error("chain file {}: block {index} no longer reads back: {reason}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// The block asked for.
        index: u64,
        /// What was found instead.
        reason: String,
    },
}

/// One block as stored: its position, its hash and its JSON exactly as written.
#[derive(Debug)]
pub struct StoredBlock {
    /// Position in the chain.
    pub index: u64,
    /// The block's hash.
    pub hash: Hash32,
    /// The block's JSON, verbatim.
    pub raw: Box<RawValue>,
}

/// The fields every block has, whatever else it carries.
#[derive(Deserialize)]
struct Ident {
    index: u64,
    hash: Hash32,
}

impl StoredBlock {
    /// Parses one stored line (only `index` and `hash` are interpreted).
    pub fn from_line(line: &str) -> Result<StoredBlock, String> {
        let ident: Ident = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let raw = RawValue::from_string(line.to_owned()).map_err(|e| e.to_string())?;
        Ok(StoredBlock {
            index: ident.index,
            hash: ident.hash,
            raw,
        })
    }
}

/// The first block that does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBlock {
    /// Its index (its position in the file).
    pub index: u64,
    /// Its 1-based line in the file.
    pub line: u64,
    /// The rule it breaks.
    pub reason: String,
}

/// What verifying the chain found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Blocks checked and valid.
    pub valid_blocks: u64,
    /// The first invalid block, if any: nothing after it is served.
    pub first_bad: Option<BadBlock>,
}

/// The chain as of the last refresh, cheap to clone and read.
#[derive(Debug, Default)]
pub struct ChainSummary {
    /// Valid blocks, genesis included.
    pub length: u64,
    /// Records (committed windows) in them.
    pub records: u64,
    /// The last valid block.
    pub head: Option<Arc<StoredBlock>>,
    /// The verification status.
    pub verification: Verification,
    /// Where the chain is read from (for display).
    pub source: String,
    /// The API's rendering of this summary's head, made on first use.
    pub head_body: OnceLock<Bytes>,
}

/// What the web service reads from the chain.
///
/// `summary` and `locate` answer from memory; the others may read the disk and belong on the
/// blocking pool.
pub trait ChainView: Send + Sync + 'static {
    /// Length, head and verification as of the last refresh.
    fn summary(&self) -> Arc<ChainSummary>;
    /// Block `index`, `None` past the head.
    fn block(&self, index: u64) -> Result<Option<Arc<StoredBlock>>, ChainError>;
    /// The block with this hash, if it is on the chain.
    fn block_by_hash(&self, hash: &Hash32) -> Result<Option<Arc<StoredBlock>>, ChainError>;
    /// Up to `limit` blocks from index `from`, in order.
    fn page(&self, from: u64, limit: usize) -> Result<Vec<Arc<StoredBlock>>, ChainError>;
    /// Index of the block that commits `window` of `cabinet`.
    fn locate(&self, cabinet: &str, window: u64) -> Option<u64>;
    /// Whether a block with this header and `confirmations` blocks on top is final by the
    /// genesis's consensus mode (what a cabinet waits for); false without a genesis.
    fn is_final(&self, header: &Header, confirmations: u64) -> bool;
    /// Takes in what was appended since the last call; returns the new blocks (the latest
    /// [`RECENT`] of them when many arrived at once).
    fn refresh(&self) -> Result<Vec<Arc<StoredBlock>>, ChainError>;
}

/// The chain the web service reads at `path`: today a [`FileChain`] following `chain.jsonl`.
/// Pointing the service at another store changes this function and this file only.
pub fn open(path: &Path) -> Arc<dyn ChainView> {
    Arc::new(FileChain::new(path))
}

/// Follows a `chain.jsonl` that another process appends to.
pub struct FileChain {
    path: PathBuf,
    follow: Mutex<Follow>,
    summary: RwLock<Arc<ChainSummary>>,
}

#[derive(Default)]
struct Follow {
    /// Bytes of complete, valid lines taken in.
    consumed: u64,
    /// Where the last line taken in starts, and its block's hash: a reorg that rewrote the
    /// file's tail is noticed when that line no longer reads back the same.
    last_line: Option<(u64, Hash32)>,
    checker: ChainChecker,
    records: u64,
    /// Offset of block `k * CHECKPOINT`.
    checkpoints: Vec<u64>,
    /// First 8 bytes of each block's hash, by index.
    prefixes: Vec<u64>,
    recent: VecDeque<Arc<StoredBlock>>,
    bad: Option<BadBlock>,
}

fn prefix(hash: &Hash32) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.0[..8]);
    u64::from_be_bytes(first)
}

impl FileChain {
    /// A follower of `path` (which may not exist yet); call [`ChainView::refresh`] to read it.
    pub fn new(path: &Path) -> FileChain {
        FileChain {
            path: path.to_path_buf(),
            follow: Mutex::new(Follow::default()),
            summary: RwLock::new(Arc::new(ChainSummary {
                source: path.display().to_string(),
                ..ChainSummary::default()
            })),
        }
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> ChainError + '_ {
        |source| ChainError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Follow> {
        // A panic mid-refresh leaves at worst a partly followed chain; the next refresh goes on.
        self.follow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads `count` blocks from index `from` off the disk.
    fn read(&self, follow: &Follow, from: u64, count: u64) -> Result<Vec<StoredBlock>, ChainError> {
        let checkpoint = from / CHECKPOINT;
        let Some(&offset) = follow.checkpoints.get(checkpoint as usize) else {
            return Ok(Vec::new());
        };
        let mut file = File::open(&self.path).map_err(self.io())?;
        file.seek(SeekFrom::Start(offset)).map_err(self.io())?;
        let mut lines = BufReader::new(file).lines();
        let skip = from - checkpoint * CHECKPOINT;
        let mut out = Vec::with_capacity(count as usize);
        for (k, line) in lines
            .by_ref()
            .skip(skip as usize)
            .take(count as usize)
            .enumerate()
        {
            let index = from + k as u64;
            let line = line.map_err(self.io())?;
            let changed = |reason: String| ChainError::Changed {
                path: self.path.clone(),
                index,
                reason,
            };
            let block = StoredBlock::from_line(&line).map_err(changed)?;
            if block.index != index
                || follow.prefixes.get(index as usize) != Some(&prefix(&block.hash))
            {
                return Err(changed(format!(
                    "found block {} {}",
                    block.index,
                    block.hash.short()
                )));
            }
            out.push(block);
        }
        Ok(out)
    }

    fn publish(&self, follow: &Follow) {
        let summary = ChainSummary {
            length: follow.checker.next_index(),
            records: follow.records,
            head: follow.recent.back().cloned(),
            verification: Verification {
                valid_blocks: follow.checker.next_index(),
                first_bad: follow.bad.clone(),
            },
            source: self.path.display().to_string(),
            head_body: OnceLock::new(),
        };
        *self.summary.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(summary);
    }
}

impl ChainView for FileChain {
    fn summary(&self) -> Arc<ChainSummary> {
        self.summary
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn block(&self, index: u64) -> Result<Option<Arc<StoredBlock>>, ChainError> {
        Ok(self.page(index, 1)?.pop())
    }

    fn block_by_hash(&self, hash: &Hash32) -> Result<Option<Arc<StoredBlock>>, ChainError> {
        let follow = self.lock();
        if let Some(b) = follow.recent.iter().find(|b| b.hash == *hash) {
            return Ok(Some(b.clone()));
        }
        let wanted = prefix(hash);
        let candidates: Vec<u64> = (0..)
            .zip(follow.prefixes.iter())
            .filter(|(_, p)| **p == wanted)
            .map(|(i, _)| i)
            .collect();
        for index in candidates {
            if let Some(b) = self.read(&follow, index, 1)?.pop() {
                if b.hash == *hash {
                    return Ok(Some(Arc::new(b)));
                }
            }
        }
        Ok(None)
    }

    fn page(&self, from: u64, limit: usize) -> Result<Vec<Arc<StoredBlock>>, ChainError> {
        let follow = self.lock();
        let length = follow.checker.next_index();
        let end = from.saturating_add(limit as u64).min(length);
        if from >= end {
            return Ok(Vec::new());
        }
        let cached_from = length - follow.recent.len() as u64;
        if from >= cached_from {
            let skip = (from - cached_from) as usize;
            let take = (end - from) as usize;
            return Ok(follow
                .recent
                .iter()
                .skip(skip)
                .take(take)
                .cloned()
                .collect());
        }
        Ok(self
            .read(&follow, from, end - from)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    fn locate(&self, cabinet: &str, window: u64) -> Option<u64> {
        self.lock().checker.windows().get(cabinet, window)
    }

    fn is_final(&self, header: &Header, confirmations: u64) -> bool {
        self.lock()
            .checker
            .genesis()
            .is_some_and(|g| g.consensus.is_final(header, confirmations))
    }

    fn refresh(&self) -> Result<Vec<Arc<StoredBlock>>, ChainError> {
        let mut follow = self.lock();
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io()(e)),
        };
        let len = file.metadata().map_err(self.io())?.len();
        let moved = match follow.last_line {
            Some((at, hash)) => {
                let mut line = String::new();
                let mut f = BufReader::new(File::open(&self.path).map_err(self.io())?);
                f.seek(SeekFrom::Start(at)).map_err(self.io())?;
                let _ = f.read_line(&mut line);
                StoredBlock::from_line(line.trim_end()).map_or(true, |b| b.hash != hash)
            }
            None => false,
        };
        if len < follow.consumed || moved {
            // Shorter than what was read, or its tail rewritten (a reorg of the node's main
            // chain): start over.
            *follow = Follow::default();
        }
        if !follow.checker.has_genesis() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            match crate::ledger::Genesis::load(&dir.join(crate::ledger::GENESIS_FILE)) {
                Ok(g) => follow.checker = ChainChecker::new(g),
                Err(e) => {
                    follow.bad = Some(BadBlock {
                        index: 0,
                        line: 1,
                        reason: format!("no usable genesis beside the chain file: {e}"),
                    });
                    self.publish(&follow);
                    return Ok(Vec::new());
                }
            }
        }
        if follow.bad.is_some() || len == follow.consumed {
            self.publish(&follow);
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(follow.consumed))
            .map_err(self.io())?;
        let mut reader = BufReader::new(file);
        let mut fresh = VecDeque::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf).map_err(self.io())?;
            if read == 0 || buf.last() != Some(&b'\n') {
                // End of file, or a line still being written: taken in on a later refresh.
                break;
            }
            let index = follow.checker.next_index();
            let text = String::from_utf8_lossy(&buf[..read - 1]);
            let checked = Block::from_json(&text)
                .map_err(|e| e.to_string())
                .and_then(|block| {
                    follow.checker.check(&block).map_err(|v| v.to_string())?;
                    Ok(block)
                })
                .and_then(|block| Ok((StoredBlock::from_line(&text)?, block)));
            let (stored, block) = match checked {
                Ok(pair) => pair,
                Err(reason) => {
                    follow.bad = Some(BadBlock {
                        index,
                        line: index + 1,
                        reason,
                    });
                    break;
                }
            };
            if index.is_multiple_of(CHECKPOINT) {
                let at = follow.consumed;
                follow.checkpoints.push(at);
            }
            follow.prefixes.push(prefix(&block.hash));
            follow.records += block.records().len() as u64;
            follow.last_line = Some((follow.consumed, block.hash));
            follow.consumed += read as u64;
            follow.checker.accept(block);
            let stored = Arc::new(stored);
            follow.recent.push_back(stored.clone());
            if follow.recent.len() > RECENT {
                follow.recent.pop_front();
            }
            fresh.push_back(stored);
            if fresh.len() > RECENT {
                fresh.pop_front();
            }
        }
        self.publish(&follow);
        Ok(fresh.into())
    }
}

#[cfg(test)]
mod tests;
