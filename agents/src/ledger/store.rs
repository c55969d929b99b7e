//! The durable chain file: one JSON block per line, verified on open, fsynced per append.
//!
//! The store is synchronous (std::fs) and single-writer; async callers wrap it in
//! `spawn_blocking`. Memory holds the head block, the run-length window index, and one byte
//! offset per 256 blocks (`CHECKPOINT_EVERY`), so a long-running chain stays small in RAM.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use tracing::{info, warn};

use super::block::{Block, BlockTemplate};
use super::check::{ChainChecker, Violation};
use super::pow::Miner;
use super::record::Record;
use super::timestamp::Timestamp;
use super::verify::{scan, TornTail, VerifyError, CHECKPOINT_EVERY};
use super::windows::WindowIndex;
use super::LedgerError;

/// What opening the chain file found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist and was created empty.
    pub created: bool,
    /// Valid blocks found.
    pub blocks: u64,
    /// A torn last line (crash during a write) that was cut off the file.
    pub truncated: Option<TornTail>,
    /// The last block was complete but lacked its newline, which was added.
    pub newline_added: bool,
}

impl OpenReport {
    /// Human-readable warnings about repairs made, empty when the file was clean.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(torn) = &self.truncated {
            out.push(format!(
                "truncated a torn last line (line {}, {} bytes at offset {}): \
                 a write was interrupted",
                torn.line, torn.bytes, torn.offset
            ));
        }
        if self.newline_added {
            out.push("added the missing newline after the last block".to_owned());
        }
        out
    }
}

/// The open chain file and what is known about its content.
#[derive(Debug)]
pub struct ChainStore {
    path: PathBuf,
    file: File,
    /// Bytes of valid content; a failed write is cut back to this.
    len_bytes: u64,
    checker: ChainChecker,
    checkpoints: Vec<u64>,
    /// A write or fsync failed and could not be undone: the file content is unknown.
    poisoned: bool,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ChainStore {
    /// Opens (creating if missing) and fully verifies the chain file at `path`.
    ///
    /// A torn last line is truncated away and reported; any other invalid block makes the
    /// open fail, naming it, so a corrupt chain is never extended.
    pub fn open(path: &Path) -> Result<(ChainStore, OpenReport), LedgerError> {
        let mut report = OpenReport::default();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        report.created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error(path))?;
        let scanned =
            scan(BufReader::new(&mut file), true).map_err(|error| LedgerError::Corrupt {
                path: path.to_path_buf(),
                error,
            })?;
        if let Some(torn) = scanned.torn {
            warn!(path = %path.display(), line = torn.line, bytes = torn.bytes,
                "chain file ends in a torn line; truncating it");
            file.set_len(torn.offset).map_err(io_error(path))?;
            file.sync_data().map_err(io_error(path))?;
            report.truncated = Some(torn);
        }
        if scanned.missing_newline {
            warn!(path = %path.display(), "last block lacks its newline; adding it");
            file.write_all(b"\n").map_err(io_error(path))?;
            file.sync_data().map_err(io_error(path))?;
            report.newline_added = true;
        }
        if report.created {
            // Make the new directory entry durable too.
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(dir))?;
            }
        }
        report.blocks = scanned.checker.next_index();
        let len_bytes = scanned.valid_len + u64::from(report.newline_added);
        info!(path = %path.display(), blocks = report.blocks, "chain file open");
        let store = ChainStore {
            path: path.to_path_buf(),
            file,
            len_bytes,
            checker: scanned.checker,
            checkpoints: scanned.checkpoints,
            poisoned: false,
        };
        Ok((store, report))
    }

    /// Path of the chain file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last block, `None` while the chain is empty.
    pub fn head(&self) -> Option<&Block> {
        self.checker.head()
    }

    /// Number of blocks, genesis included.
    pub fn len(&self) -> u64 {
        self.checker.next_index()
    }

    /// True before the genesis block is written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the block that committed `window` of `cabinet`, if any (O(log runs)).
    pub fn committed_in(&self, cabinet: &str, window: u64) -> Option<u64> {
        self.checker.windows().get(cabinet, window)
    }

    /// The window index (for summaries and memory checks).
    pub fn windows(&self) -> &WindowIndex {
        self.checker.windows()
    }

    /// Checks `block` as the next block without writing it.
    pub fn check(&self, block: &Block) -> Result<(), Violation> {
        self.checker.check(block)
    }

    /// Appends a valid next block: one line, fsynced before returning.
    ///
    /// Checks index, link, hash, proof of work, timestamps, records, and that no record is
    /// already committed. A failed write is cut back so the file never keeps half a line.
    pub fn append(&mut self, block: Block) -> Result<(), LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        self.checker.check(&block).map_err(LedgerError::Rejected)?;
        let mut line = block.to_json();
        line.push('\n');
        if let Err(source) = self.file.write_all(line.as_bytes()) {
            warn!(path = %self.path.display(), index = block.index, cause = %source,
                "append failed; cutting the partial line");
            if self.file.set_len(self.len_bytes).is_err() {
                self.poisoned = true;
            }
            return Err(io_error(&self.path)(source));
        }
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the page cache state is unknown: refuse further appends.
            self.poisoned = true;
            return Err(io_error(&self.path)(source));
        }
        if block.index.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoints.push(self.len_bytes);
        }
        self.len_bytes += line.len() as u64;
        self.checker.accept(block);
        Ok(())
    }

    /// Writes a genesis block if the chain is empty (mining it at `difficulty`), and returns
    /// the head either way. `Cancelled` if `cancel` stops the miner.
    pub fn ensure_genesis(
        &mut self,
        difficulty: u32,
        miner: &Miner,
        cancel: &AtomicBool,
    ) -> Result<&Block, LedgerError> {
        if self.is_empty() {
            let block = BlockTemplate::genesis(difficulty, Timestamp::now())?
                .mine(miner, cancel)
                .ok_or(LedgerError::Cancelled)?;
            info!(path = %self.path.display(), hash = %block.hash, "genesis block written");
            self.append(block)?;
        }
        self.head().ok_or(LedgerError::NoGenesis)
    }

    /// The template for the next block on top of the head.
    pub fn next_template(
        &self,
        records: Vec<Record>,
        difficulty: u32,
        timestamp: Timestamp,
    ) -> Result<BlockTemplate, LedgerError> {
        let head = self.head().ok_or(LedgerError::NoGenesis)?;
        BlockTemplate::after(head, records, difficulty, timestamp)
    }

    /// Reads block `index` back from the file (seeks to the nearest checkpoint).
    pub fn read_block(&self, index: u64) -> Result<Block, LedgerError> {
        let len = self.len();
        if index >= len {
            return Err(LedgerError::NoSuchBlock { index, len });
        }
        let checkpoint = index / CHECKPOINT_EVERY;
        let offset = usize::try_from(checkpoint)
            .ok()
            .and_then(|c| self.checkpoints.get(c))
            .copied()
            .ok_or(LedgerError::NoSuchBlock { index, len })?;
        let mut file = File::open(&self.path).map_err(io_error(&self.path))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(&self.path))?;
        let mut lines = BufReader::new(file).lines();
        let skip = index - checkpoint * CHECKPOINT_EVERY;
        let corrupt = |reason| LedgerError::Corrupt {
            path: self.path.clone(),
            error: VerifyError {
                index,
                line: index + 1,
                reason,
            },
        };
        let text = lines
            .nth(skip as usize)
            .ok_or_else(|| corrupt(Violation::Unparseable("file shrank".into())))?
            .map_err(io_error(&self.path))?;
        let block =
            Block::from_json(&text).map_err(|e| corrupt(Violation::Unparseable(e.to_string())))?;
        if block.index != index {
            return Err(corrupt(Violation::IndexOutOfSequence {
                expected: index,
                found: block.index,
            }));
        }
        Ok(block)
    }
}
