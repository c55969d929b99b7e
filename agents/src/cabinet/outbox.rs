//! The cabinet's durable outbox: every published window until a block commits it.
//!
//! The broker keeps nothing, so the cabinet is the master of its windows. A window is written
//! to an append-only journal (`outbox.jsonl` in the data directory) and fsynced *before* its
//! tasks are published — one fsync per group of windows ([`Outbox::sync`]), since a fast
//! cabinet cuts many windows per tick and an fsync each would bound it to the disk's latency; it leaves the outbox when a block that commits it is seen. A window
//! whose commit has not arrived by its deadline is due again, and a restarted agent finds every
//! uncommitted window in the journal. The journal also carries the counters that keep window ids
//! and sample sequence numbers unique across restarts.
//!
//! The outbox is bounded: when it is full, the oldest uncommitted window is evicted and handed
//! back to the caller, which reports it loudly on the dead-letter topic.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::time::Instant;
use tracing::warn;

use crate::messages::WindowTask;

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "outbox.jsonl";

/// Sequence numbers reserved per journal write: a restart skips at most this many.
const SEQ_BLOCK: u64 = 10_000;

/// Errors of the outbox journal.
#[derive(Debug, Error)]
pub enum OutboxError {
    /// The journal or its directory could not be read or written.
    #[error("outbox journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A complete line of the journal is not a journal entry (not a torn write: a damaged file).
    #[error("outbox journal {path} line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    /// Counters, written first by a compaction.
    Meta { next_window: u64, seq_reserved: u64 },
    /// Sequence numbers below `reserved` may have been used.
    Seq { reserved: u64 },
    /// A window entered the outbox (its four tasks).
    Put { window: u64, tasks: Vec<WindowTask> },
    /// A window was committed by a block.
    Commit { window: u64 },
    /// A window was evicted because the outbox was full.
    Evict { window: u64 },
}

/// A window waiting for its commit.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its four tasks (U, I, PA, PR).
    pub tasks: Vec<WindowTask>,
    /// When it is due for re-publishing.
    pub due: Instant,
}

/// What a restart found in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Uncommitted windows, to re-publish now.
    pub pending: usize,
    /// The next window id.
    pub next_window: u64,
    /// The next sample sequence number.
    pub next_seq: u64,
    /// Whether a torn last line (a crash mid-write) was dropped.
    pub torn_tail: bool,
}

/// The durable outbox.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    file: File,
    pending: BTreeMap<u64, Pending>,
    capacity: usize,
    next_window: u64,
    next_seq: u64,
    seq_reserved: u64,
    lines: usize,
    /// Journal lines written since the last fsync.
    unsynced: bool,
}

impl Outbox {
    /// Opens (or creates) the journal in `dir`, replaying it. `capacity` bounds the windows held.
    pub fn open(dir: &Path, capacity: usize) -> Result<(Outbox, Recovered), OutboxError> {
        let path = dir.join(JOURNAL_FILE);
        let io = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut pending = BTreeMap::new();
        let (mut next_window, mut seq_reserved, mut lines, mut torn_tail) = (0u64, 0u64, 0, false);
        if path.exists() {
            let text = fs::read(&path).map_err(io)?;
            let complete = text.ends_with(b"\n");
            let reader = BufReader::new(&text[..]);
            let all: Vec<String> = reader.lines().collect::<Result<_, _>>().map_err(io)?;
            let now = Instant::now();
            for (i, line) in all.iter().enumerate() {
                let last = i + 1 == all.len();
                let entry: Entry = match serde_json::from_str(line) {
                    Ok(e) => e,
                    Err(_) if last && !complete => {
                        // A crash in the middle of a write: that window was never published.
                        warn!(path = %path.display(), line = i + 1, "dropping a torn last journal line");
                        torn_tail = true;
                        break;
                    }
                    Err(e) => {
                        return Err(OutboxError::Corrupt {
                            path,
                            line: i + 1,
                            reason: e.to_string(),
                        })
                    }
                };
                lines += 1;
                match entry {
                    Entry::Meta {
                        next_window: w,
                        seq_reserved: s,
                    } => {
                        next_window = next_window.max(w);
                        seq_reserved = seq_reserved.max(s);
                    }
                    Entry::Seq { reserved } => seq_reserved = seq_reserved.max(reserved),
                    Entry::Put { window, tasks } => {
                        next_window = next_window.max(window + 1);
                        pending.insert(window, Pending { tasks, due: now });
                    }
                    Entry::Commit { window } | Entry::Evict { window } => {
                        pending.remove(&window);
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut outbox = Outbox {
            path,
            file,
            pending,
            capacity: capacity.max(1),
            next_window,
            // Everything below the reservation may have been used before the restart.
            next_seq: seq_reserved,
            seq_reserved,
            lines,
            unsynced: false,
        };
        // Rewrite the journal compactly (this also removes a torn tail).
        outbox.compact()?;
        let recovered = Recovered {
            pending: outbox.pending.len(),
            next_window: outbox.next_window,
            next_seq: outbox.next_seq,
            torn_tail,
        };
        Ok((outbox, recovered))
    }

    /// Id the next window will get.
    pub fn next_window(&self) -> u64 {
        self.next_window
    }

    /// Windows waiting for their commit.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no window waits for a commit.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether `window` is waiting for its commit.
    pub fn contains(&self, window: u64) -> bool {
        self.pending.contains_key(&window)
    }

    /// The tasks held for `window`, if it is waiting for its commit.
    pub fn get(&self, window: u64) -> Option<&Pending> {
        self.pending.get(&window)
    }

    /// Allocates the next sample sequence number, durably reserving a block when needed.
    pub fn next_seq(&mut self) -> Result<u64, OutboxError> {
        if self.next_seq >= self.seq_reserved {
            let reserved = self.next_seq + SEQ_BLOCK;
            self.append(&Entry::Seq { reserved }, true)?;
            self.seq_reserved = reserved;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Records a new window in the journal; it is durable once [`Outbox::sync`] returns, which
    /// must happen before it is published. Its id must be [`Outbox::next_window`]. Returns the
    /// window evicted to make room, if the outbox was full.
    pub fn put(
        &mut self,
        tasks: Vec<WindowTask>,
        due: Instant,
    ) -> Result<Option<(u64, Pending)>, OutboxError> {
        let window = self.next_window;
        debug_assert!(tasks.iter().all(|t| t.window == window));
        let mut evicted = None;
        if self.pending.len() >= self.capacity {
            if let Some((&oldest, _)) = self.pending.iter().next() {
                self.append(&Entry::Evict { window: oldest }, false)?;
                evicted = self.pending.remove(&oldest).map(|p| (oldest, p));
            }
        }
        let entry = Entry::Put { window, tasks };
        self.append(&entry, false)?;
        self.unsynced = true;
        let Entry::Put { tasks, .. } = entry else {
            unreachable!("constructed just above")
        };
        self.pending.insert(window, Pending { tasks, due });
        self.next_window += 1;
        self.maybe_compact()?;
        Ok(evicted)
    }

    /// Makes every window put so far durable (one fsync for all of them); a no-op when they
    /// already are. The fsync runs on tokio's blocking pool: a slow disk then delays this
    /// agent only, not every task sharing its runtime (fifty cabinets in one bench process
    /// used to queue behind each other's fsync).
    pub async fn sync(&mut self) -> Result<(), OutboxError> {
        if !self.unsynced {
            return Ok(());
        }
        let io = |source| OutboxError::Io {
            path: self.path.clone(),
            source,
        };
        let file = self.file.try_clone().map_err(io)?;
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)
            .and_then(|synced| synced)
            .map_err(io)?;
        self.unsynced = false;
        Ok(())
    }

    /// Whether windows were put since the last [`Outbox::sync`].
    pub fn needs_sync(&self) -> bool {
        self.unsynced
    }

    /// Marks a window committed; false when it was not (or no longer) in the outbox.
    pub fn commit(&mut self, window: u64) -> Result<bool, OutboxError> {
        if self.pending.remove(&window).is_none() {
            return Ok(false);
        }
        // Not fsynced: losing a commit line only means one harmless re-publication.
        self.append(&Entry::Commit { window }, false)?;
        self.maybe_compact()?;
        Ok(true)
    }

    /// The windows due at `now`, in id order; each is rescheduled `deadline` later.
    pub fn take_due(&mut self, now: Instant, deadline: Duration) -> Vec<Vec<WindowTask>> {
        self.pending
            .values_mut()
            .filter(|p| p.due <= now)
            .map(|p| {
                p.due = now + deadline;
                p.tasks.clone()
            })
            .collect()
    }

    /// The earliest due time, if any window is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    fn append(&mut self, entry: &Entry, sync: bool) -> Result<(), OutboxError> {
        let mut line = serde_json::to_vec(entry).expect("journal entries always serialise");
        line.push(b'\n');
        let path = &self.path;
        let io = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        if sync {
            self.file.sync_data().map_err(io)?;
            self.unsynced = false;
        }
        self.lines += 1;
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), OutboxError> {
        if self.lines > 2 * self.pending.len() + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal as counters plus the pending windows, atomically (write, fsync,
    /// rename, fsync the directory).
    fn compact(&mut self) -> Result<(), OutboxError> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let io = |source| OutboxError::Io {
            path: tmp.clone(),
            source,
        };
        let mut out = Vec::new();
        let meta = Entry::Meta {
            next_window: self.next_window,
            seq_reserved: self.seq_reserved,
        };
        out.extend(serde_json::to_vec(&meta).expect("journal entries always serialise"));
        out.push(b'\n');
        for (&window, p) in &self.pending {
            let entry = Entry::Put {
                window,
                tasks: p.tasks.clone(),
            };
            out.extend(serde_json::to_vec(&entry).expect("journal entries always serialise"));
            out.push(b'\n');
        }
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&out).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            // Make the rename itself durable.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.lines = 1 + self.pending.len();
        // The rewritten journal holds every pending window and was synced whole.
        self.unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::digest_hex;
    use crate::topics::Quantity;

    fn tasks(window: u64) -> Vec<WindowTask> {
        Quantity::ALL
            .iter()
            .map(|&quantity| WindowTask {
                cabinet: "c1".into(),
                window,
                quantity,
                first_seq: window * 2,
                values: vec![1.0, 2.0],
                from: "2026-11-21T10:00:00.000Z".into(),
                to: "2026-11-21T10:00:01.000Z".into(),
                digest: digest_hex(&[1.0, 2.0]),
            })
            .collect()
    }

    #[tokio::test]
    async fn uncommitted_windows_and_counters_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let (mut outbox, rec) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!((rec.next_window, rec.next_seq, rec.pending), (0, 0, 0));
        let seqs: Vec<u64> = (0..5).map(|_| outbox.next_seq().unwrap()).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        for w in 0..3 {
            outbox.put(tasks(w), now).unwrap();
        }
        assert!(outbox.commit(1).unwrap());
        assert!(!outbox.commit(1).unwrap(), "a second commit is a no-op");
        drop(outbox);

        let (outbox, rec) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(rec.pending, 2);
        assert_eq!(rec.next_window, 3, "window ids continue");
        assert!(rec.next_seq > 4, "sequence numbers are never reused");
        assert!(outbox.contains(0) && !outbox.contains(1) && outbox.contains(2));
    }

    #[tokio::test]
    async fn a_group_of_windows_is_made_durable_by_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path(), 100).unwrap();
        assert!(!outbox.needs_sync());
        for w in 0..3 {
            outbox.put(tasks(w), Instant::now()).unwrap();
        }
        assert!(outbox.needs_sync(), "puts wait for the group's sync");
        outbox.sync().await.unwrap();
        assert!(!outbox.needs_sync());
        drop(outbox);
        let (_, rec) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!((rec.pending, rec.next_window), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn windows_fall_due_again_after_the_deadline_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let deadline = Duration::from_secs(30);
        let (mut outbox, _) = Outbox::open(dir.path(), 100).unwrap();
        let start = Instant::now();
        outbox.put(tasks(0), start + deadline).unwrap();
        outbox.put(tasks(1), start + deadline).unwrap();
        assert!(outbox.take_due(start, deadline).is_empty());
        outbox.commit(0).unwrap();
        tokio::time::advance(deadline).await;
        let due = outbox.take_due(Instant::now(), deadline);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0][0].window, 1);
        assert!(
            outbox.take_due(Instant::now(), deadline).is_empty(),
            "rescheduled"
        );
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_the_oldest_window() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path(), 2).unwrap();
        let now = Instant::now();
        assert!(outbox.put(tasks(0), now).unwrap().is_none());
        assert!(outbox.put(tasks(1), now).unwrap().is_none());
        let (evicted, p) = outbox.put(tasks(2), now).unwrap().unwrap();
        assert_eq!((evicted, p.tasks.len()), (0, 4));
        drop(outbox);
        let (outbox, rec) = Outbox::open(dir.path(), 2).unwrap();
        assert_eq!(rec.pending, 2);
        assert!(!outbox.contains(0));
    }

    #[tokio::test]
    async fn a_torn_last_line_is_dropped_and_a_corrupt_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path(), 10).unwrap();
        outbox.put(tasks(0), Instant::now()).unwrap();
        drop(outbox);
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"put":{"window":1,"tas"#).unwrap();
        drop(f);
        let (_, rec) = Outbox::open(dir.path(), 10).unwrap();
        assert!(rec.torn_tail);
        assert_eq!((rec.pending, rec.next_window), (1, 1));

        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"not json\n{\"commit\":{\"window\":0}}\n")
            .unwrap();
        drop(f);
        let err = Outbox::open(dir.path(), 10).unwrap_err();
        assert!(matches!(err, OutboxError::Corrupt { line: 3, .. }), "{err}");
    }

    #[tokio::test]
    async fn the_journal_stays_small_under_steady_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path(), 10).unwrap();
        for w in 0..1500 {
            outbox.put(tasks(w), Instant::now()).unwrap();
            outbox.commit(w).unwrap();
        }
        let lines = fs::read_to_string(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * 10 + 1024 + 2, "{lines} lines");
        let (_, rec) = Outbox::open(dir.path(), 10).unwrap();
        assert_eq!((rec.pending, rec.next_window), (0, 1500));
    }
}
