//! Where the main chain lives: `chain.jsonl` ([`FileLog`]), or memory for the simulation
//! ([`MemLog`]). Both only append whole blocks and cut the tail, so a crash at any instant
//! leaves a prefix of a valid main chain (plus, for a file, at most a torn last line, cut away
//! on open).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::StoreError;
use crate::ledger::block::Block;
use crate::ledger::rules::Violation;

/// The main chain's durable form: one block per position, appended or cut at the tail.
pub trait ChainLog: Send {
    /// Blocks held.
    fn len(&self) -> u64;
    /// Whether no block is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends blocks after the last one (durable after [`ChainLog::sync`]).
    fn append(&mut self, blocks: &[Block]) -> Result<(), StoreError>;
    /// Makes every append durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Keeps only the first `len` blocks, durably, before returning.
    fn truncate(&mut self, len: u64) -> Result<(), StoreError>;
    /// Reads block `index` back.
    fn read(&self, index: u64) -> Result<Block, StoreError>;
}

/// What opening the chain file found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist (or was empty) and the genesis block was written.
    pub created: bool,
    /// Valid blocks found.
    pub blocks: u64,
    /// A torn last line (crash during a write) that was cut off: (line, bytes).
    pub truncated: Option<(u64, u64)>,
    /// The last block was complete but lacked its newline, which was added.
    pub newline_added: bool,
}

impl OpenReport {
    /// Human-readable warnings about repairs made, empty when the file was clean.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((line, bytes)) = self.truncated {
            out.push(format!(
                "truncated a torn last line (line {line}, {bytes} bytes): a write was interrupted"
            ));
        }
        if self.newline_added {
            out.push("added the missing newline after the last block".to_owned());
        }
        out
    }
}

/// `chain.jsonl`: one JSON block per line, fsynced per batch of appends.
#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    file: File,
    /// Byte offset of every block's line, and the end of the last one.
    offsets: Vec<u64>,
    /// A write or fsync failed and could not be undone: the content is unknown.
    poisoned: bool,
    unsynced: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        cause: source,
    }
}

impl FileLog {
    /// Opens (creating if missing) `path`, handing every complete block to `accept` in order.
    /// A torn last line is cut away; a refused block fails the open, naming its line.
    pub fn open(
        path: &Path,
        mut accept: impl FnMut(Block) -> Result<(), Violation>,
    ) -> Result<(FileLog, OpenReport), StoreError> {
        let mut report = OpenReport::default();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        if !existed {
            // Make the new directory entry durable too.
            if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(dir))?;
            }
        }
        let mut offsets = vec![0u64];
        let mut reader = BufReader::new(&mut file);
        let mut buf = Vec::new();
        let mut line = 0u64;
        let mut missing_newline = false;
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf).map_err(io(path))?;
            if read == 0 {
                break;
            }
            line += 1;
            let terminated = buf.last() == Some(&b'\n');
            let text = &buf[..buf.len() - usize::from(terminated)];
            let parsed = std::str::from_utf8(text)
                .map_err(|e| e.to_string())
                .and_then(|t| Block::from_json(t).map_err(|e| e.to_string()));
            let block = match parsed {
                Ok(block) => block,
                Err(_) if !terminated => {
                    report.truncated = Some((line, read as u64));
                    break;
                }
                Err(why) => {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        line,
                        reason: Violation::Unparseable(why),
                    })
                }
            };
            accept(block).map_err(|reason| StoreError::Corrupt {
                path: path.to_path_buf(),
                line,
                reason,
            })?;
            let end = offsets.last().copied().unwrap_or(0) + read as u64;
            offsets.push(end);
            missing_newline = !terminated;
        }
        drop(reader);
        let end = offsets.last().copied().unwrap_or(0);
        if report.truncated.is_some() {
            warn!(path = %path.display(), "chain file ends in a torn line; truncating it");
            file.set_len(end).map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
        }
        if missing_newline {
            warn!(path = %path.display(), "last block lacks its newline; adding it");
            file.write_all(b"\n").map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
            report.newline_added = true;
            if let Some(last) = offsets.last_mut() {
                *last += 1;
            }
        }
        report.blocks = line - u64::from(report.truncated.is_some());
        let log = FileLog {
            path: path.to_path_buf(),
            file,
            offsets,
            poisoned: false,
            unsynced: false,
        };
        Ok((log, report))
    }

    /// Path of the chain file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ChainLog for FileLog {
    fn len(&self) -> u64 {
        self.offsets.len() as u64 - 1
    }

    fn append(&mut self, blocks: &[Block]) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let mut text = String::new();
        let mut ends = Vec::with_capacity(blocks.len());
        let start = self.offsets.last().copied().unwrap_or(0);
        for block in blocks {
            text.push_str(&block.to_json());
            text.push('\n');
            ends.push(start + text.len() as u64);
        }
        if let Err(source) = self.file.write_all(text.as_bytes()) {
            warn!(path = %self.path.display(), cause = %source, "append failed; cutting the partial lines");
            if self.file.set_len(start).is_err() {
                self.poisoned = true;
            }
            return Err(io(&self.path)(source));
        }
        self.offsets.extend(ends);
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if !self.unsynced {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the page cache state is unknown: refuse further writes.
            self.poisoned = true;
            return Err(io(&self.path)(source));
        }
        self.unsynced = false;
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        let Some(&end) = self.offsets.get(len as usize) else {
            return Ok(());
        };
        self.sync()?;
        if let Err(source) = self.file.set_len(end).and_then(|()| self.file.sync_data()) {
            self.poisoned = true;
            return Err(io(&self.path)(source));
        }
        self.offsets.truncate(len as usize + 1);
        Ok(())
    }

    fn read(&self, index: u64) -> Result<Block, StoreError> {
        use std::os::unix::fs::FileExt;
        let i = index as usize;
        let (Some(&start), Some(&end)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return Err(StoreError::NoSuchBlock {
                index,
                len: self.len(),
            });
        };
        let mut buf = vec![0u8; (end - start) as usize];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(io(&self.path))?;
        let text = std::str::from_utf8(&buf).unwrap_or_default().trim_end();
        Block::from_json(text).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            line: index + 1,
            reason: Violation::Unparseable(e.to_string()),
        })
    }
}

/// A main chain in memory, for the simulation: "the disk" a crashed node keeps or loses.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    /// The blocks, index order.
    pub blocks: Vec<Block>,
}

impl ChainLog for MemLog {
    fn len(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn append(&mut self, blocks: &[Block]) -> Result<(), StoreError> {
        self.blocks.extend_from_slice(blocks);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<(), StoreError> {
        self.blocks.truncate(len as usize);
        Ok(())
    }

    fn read(&self, index: u64) -> Result<Block, StoreError> {
        self.blocks
            .get(index as usize)
            .cloned()
            .ok_or(StoreError::NoSuchBlock {
                index,
                len: self.len(),
            })
    }
}

/// Reads main-chain blocks `from..from + limit` of a chain file another task (or process) is
/// writing: the narrow read handle for readers such as the web service. Every complete line is a
/// valid block at every instant after an fsync; a last line still being written is skipped.
pub fn read_blocks(path: &Path, from: u64, limit: u64) -> Result<Vec<Block>, StoreError> {
    let file = File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    while (out.len() as u64) < limit {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io(path))? == 0 || buf.last() != Some(&b'\n')
        {
            break;
        }
        line += 1;
        if line <= from {
            continue;
        }
        let text = std::str::from_utf8(&buf[..buf.len() - 1]).unwrap_or_default();
        let block = Block::from_json(text).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            line,
            reason: Violation::Unparseable(e.to_string()),
        })?;
        out.push(block);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_complete_blocks_and_skips_a_line_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = crate::ledger::GenesisSpec::pow(0);
        spec.created = crate::ledger::Timestamp::from_millis(0).unwrap();
        let g = crate::ledger::Genesis::new(spec).unwrap();
        let key = crate::ledger::NodeKey::from_seed([1; 32]);
        let b1 = g
            .template(
                &g.header(),
                vec![],
                crate::ledger::Timestamp::from_millis(5).unwrap(),
                key.public(),
            )
            .finish(0, &key, &g.id());
        let path = dir.path().join("chain.jsonl");
        std::fs::write(
            &path,
            format!("{}\n{}\n{{\"index\":2,", g.block().to_json(), b1.to_json()),
        )
        .unwrap();
        let all = read_blocks(&path, 0, 10).unwrap();
        assert_eq!(all.iter().map(|b| b.index).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(read_blocks(&path, 1, 10).unwrap(), vec![b1]);
        assert!(read_blocks(&path, 0, 1).unwrap().len() == 1);
    }
}
