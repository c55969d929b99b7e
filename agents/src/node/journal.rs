//! The vote journal: every consensus message a node sends under a mode that
//! [`journals`](crate::ledger::consensus::Consensus::journals) (PBFT) is appended here and
//! fsynced **before** it is published, and read back at start, so a restarted replica knows
//! what it voted and never votes two ways for one (view, height).
//!
//! One JSON line per message (the `ModeMessage` as published). A torn last line (a crash in
//! the middle of a write) is dropped: that message was never published. At open the file is
//! compacted to the messages about heights above the chain head (older ones cannot matter).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::wire::ModeMessage;

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "votes.jsonl";

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
}

/// The `height` a message body names (0 if none).
fn height(msg: &ModeMessage) -> u64 {
    msg.body
        .get("height")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

impl Journal {
    /// Opens (or creates) `path`, returns the messages about heights ≥ `from_height`, and
    /// rewrites the file with only those (atomically: a temporary file renamed over it).
    pub fn open(path: &Path, from_height: u64) -> std::io::Result<(Journal, Vec<ModeMessage>)> {
        let mut kept = Vec::new();
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    // A line that does not parse is the torn tail of a crash: never sent.
                    if let Ok(msg) = serde_json::from_str::<ModeMessage>(&line) {
                        if height(&msg) >= from_height {
                            kept.push(msg);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut out = File::create(&tmp)?;
            for msg in &kept {
                writeln!(out, "{}", serde_json::to_string(msg).unwrap_or_default())?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            kept,
        ))
    }

    /// Appends `msg` and waits until it is on disk.
    pub fn append(&mut self, msg: &ModeMessage) -> std::io::Result<()> {
        let mut line = serde_json::to_string(msg).unwrap_or_default();
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Hash32, NodeKey};

    fn msg(key: &NodeKey, height: u64) -> ModeMessage {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), "prepare".into());
        body.insert("height".into(), height.into());
        ModeMessage::sign(key, *b"WPB1", Hash32([1; 32]), body)
    }

    #[test]
    fn appended_votes_survive_a_reopen_a_torn_tail_is_dropped_old_heights_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL_FILE);
        let key = NodeKey::from_seed([3; 32]);
        let (mut journal, old) = Journal::open(&path, 0).expect("opens");
        assert!(old.is_empty());
        for h in 1..=3 {
            journal.append(&msg(&key, h)).expect("appends");
        }
        drop(journal);
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"chain\":\"01").expect("write");
        drop(f);
        let (_, back) = Journal::open(&path, 2).expect("reopens");
        assert_eq!(back, vec![msg(&key, 2), msg(&key, 3)]);
        let (_, again) = Journal::open(&path, 0).expect("reopens");
        assert_eq!(again.len(), 2, "compacted to the heights that still matter");
    }
}
