//! Blocks: the JSON shape, the header they hash, and templates that miners turn into blocks.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::encoding::{data_hash, Hash32, HeaderPrefix};
use super::pow::Miner;
use super::record::Record;
use super::timestamp::Timestamp;
use super::LedgerError;

/// Most records one block may hold (keeps a block well inside one MQTT payload).
pub const MAX_RECORDS_PER_BLOCK: usize = 256;
/// Highest meaningful difficulty: a SHA-256 hash has 256 bits.
pub const MAX_DIFFICULTY: u32 = 256;

/// The block body: the records it commits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockData {
    /// Committed windows, in the order they were hashed.
    pub records: Vec<Record>,
}

/// One block, as stored in `chain.jsonl` and published on `ledger/block`.
///
/// Unknown JSON fields are refused: the hash covers only the fields below, so anything else
/// would be unauthenticated text riding along in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Position in the chain; the genesis block is 0.
    pub index: u64,
    /// When the block was assembled, millisecond UTC.
    pub timestamp: Timestamp,
    /// Hash of the block before (all zeros for genesis).
    pub previous_hash: Hash32,
    /// The committed records.
    pub data: BlockData,
    /// Required leading zero bits of `hash`.
    pub difficulty: u32,
    /// The value that makes `hash` meet `difficulty`.
    pub nonce: u64,
    /// SHA-256 of the 96-byte header.
    pub hash: Hash32,
}

impl Block {
    /// The 88 header bytes before the nonce, recomputed from this block's fields.
    pub fn header_prefix(&self) -> HeaderPrefix {
        HeaderPrefix::new(
            self.index,
            self.difficulty,
            &self.previous_hash,
            &data_hash(&self.data.records),
            self.timestamp.millis(),
        )
    }

    /// The hash this block's fields actually produce (compare with `hash`).
    pub fn computed_hash(&self) -> Hash32 {
        self.header_prefix().hash(self.nonce)
    }

    /// The committed records.
    pub fn records(&self) -> &[Record] {
        &self.data.records
    }

    /// One JSON line without the trailing newline (the chain file and MQTT form).
    pub fn to_json(&self) -> String {
        // Every field serialises infallibly except non-finite floats, which serde_json writes
        // as null rather than failing; validation keeps those out of stored blocks.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one JSON block (no semantic checks; see `ChainChecker`).
    pub fn from_json(text: &str) -> Result<Block, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Everything a block needs except its nonce and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockTemplate {
    /// Position the block will take.
    pub index: u64,
    /// Hash of the current head (zeros for genesis).
    pub previous_hash: Hash32,
    /// Block time.
    pub timestamp: Timestamp,
    /// Required leading zero bits.
    pub difficulty: u32,
    /// Records to commit.
    pub records: Vec<Record>,
}

impl BlockTemplate {
    /// The genesis template: index 0, zero previous hash, no records.
    pub fn genesis(difficulty: u32, timestamp: Timestamp) -> Result<BlockTemplate, LedgerError> {
        check_difficulty(difficulty)?;
        Ok(BlockTemplate {
            index: 0,
            previous_hash: Hash32::ZERO,
            timestamp,
            difficulty,
            records: Vec::new(),
        })
    }

    /// The template for the block after `head`, with `records` checked before any work is
    /// spent: 1..=[`MAX_RECORDS_PER_BLOCK`], each well formed, no window twice.
    ///
    /// A `timestamp` earlier than the head's is raised to it, because block times may not
    /// go backwards and a publisher's clock may step back (NTP) between two blocks.
    pub fn after(
        head: &Block,
        records: Vec<Record>,
        difficulty: u32,
        timestamp: Timestamp,
    ) -> Result<BlockTemplate, LedgerError> {
        check_difficulty(difficulty)?;
        if records.is_empty() || records.len() > MAX_RECORDS_PER_BLOCK {
            return Err(LedgerError::RecordCount {
                count: records.len(),
                max: MAX_RECORDS_PER_BLOCK,
            });
        }
        let mut seen = HashSet::with_capacity(records.len());
        for (position, record) in records.iter().enumerate() {
            record
                .validate()
                .map_err(|problem| LedgerError::BadRecord {
                    position,
                    cabinet: record.cabinet.clone(),
                    window: record.window,
                    problem,
                })?;
            if !seen.insert((record.cabinet.as_str(), record.window)) {
                return Err(LedgerError::DuplicateInBlock {
                    cabinet: record.cabinet.clone(),
                    window: record.window,
                });
            }
        }
        let index = head.index.checked_add(1).ok_or(LedgerError::ChainFull)?;
        Ok(BlockTemplate {
            index,
            previous_hash: head.hash,
            timestamp: timestamp.max(head.timestamp),
            difficulty,
            records,
        })
    }

    /// The fixed 88 header bytes a miner works on.
    pub fn prefix(&self) -> HeaderPrefix {
        HeaderPrefix::new(
            self.index,
            self.difficulty,
            &self.previous_hash,
            &data_hash(&self.records),
            self.timestamp.millis(),
        )
    }

    /// Mines the block with `miner`; `None` if `cancel` was set first. Blocks the caller.
    pub fn mine(self, miner: &Miner, cancel: &AtomicBool) -> Option<Block> {
        let mined = miner.mine(&self.prefix(), self.difficulty, cancel)?;
        Some(self.finish(mined.nonce, Hash32(mined.hash)))
    }

    /// The block with `nonce`, its hash computed (whether or not it meets the difficulty).
    pub fn seal(self, nonce: u64) -> Block {
        let hash = self.prefix().hash(nonce);
        self.finish(nonce, hash)
    }

    fn finish(self, nonce: u64, hash: Hash32) -> Block {
        Block {
            index: self.index,
            timestamp: self.timestamp,
            previous_hash: self.previous_hash,
            data: BlockData {
                records: self.records,
            },
            difficulty: self.difficulty,
            nonce,
            hash,
        }
    }
}

fn check_difficulty(difficulty: u32) -> Result<(), LedgerError> {
    if difficulty > MAX_DIFFICULTY {
        return Err(LedgerError::ImpossibleDifficulty(difficulty));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::record::{Averages, Digests};

    fn vector_record() -> Record {
        Record {
            cabinet: "cab-1".into(),
            window: 42,
            from: "2026-11-21T01:31:35.123Z".into(),
            to: "2026-11-21T01:31:44.923Z".into(),
            n: 50,
            averages: Averages {
                u: 230.25,
                i: 1.5,
                pa: 345.375,
                pr: -12.0,
            },
            digests: Digests {
                u: Hash32([0x11; 32]),
                i: Hash32([0x22; 32]),
                pa: Hash32([0x33; 32]),
                pr: Hash32([0x44; 32]),
            },
        }
    }

    /// Pinned with an independent Python hashlib/struct computation (see the "Ledger encoding" section of topics.md).
    #[test]
    fn encoding_matches_the_python_reference_vector() {
        let mut previous = [0u8; 32];
        for (i, b) in previous.iter_mut().enumerate() {
            *b = i as u8;
        }
        let block = BlockTemplate {
            index: 7,
            previous_hash: Hash32(previous),
            timestamp: Timestamp::parse("2026-11-21T01:31:35.123Z").expect("valid"),
            difficulty: 4,
            records: vec![vector_record()],
        }
        .seal(0x0102_0304_0506_0708);
        assert_eq!(
            data_hash(block.records()).to_hex(),
            "1061930b64b4d5e6671e4e83560637d4d4f466592d2eb65ddbc8a8edbd6b28bb"
        );
        assert_eq!(
            block.hash.to_hex(),
            "ef506879de12b71eb7b41906312d8804fb5090f53cdc3a2b4d32894aa7300bd9"
        );
        assert_eq!(
            data_hash(&[]).to_hex(),
            "cdbd5f1f3ac95a8ecb70260d218b7462a1cd6f9b3e6aa3530b1e77746ca40919"
        );
    }

    #[test]
    fn block_json_round_trips_and_keeps_the_hash() {
        let genesis = BlockTemplate::genesis(0, Timestamp::from_millis(0).expect("epoch"))
            .expect("valid")
            .seal(0);
        let block = BlockTemplate::after(
            &genesis,
            vec![vector_record()],
            0,
            Timestamp::from_millis(5).expect("valid"),
        )
        .expect("valid")
        .seal(9);
        let json = block.to_json();
        assert!(json.starts_with(r#"{"index":1,"timestamp":"1970-01-01T00:00:00.005Z","#));
        let back = Block::from_json(&json).expect("parses");
        assert_eq!(back, block);
        assert_eq!(back.computed_hash(), block.hash);
    }

    #[test]
    fn unknown_fields_are_refused_because_the_hash_would_not_cover_them() {
        let genesis = BlockTemplate::genesis(0, Timestamp::from_millis(0).expect("epoch"))
            .expect("valid")
            .seal(0);
        let json = genesis.to_json().replacen('{', r#"{"note":"x","#, 1);
        assert!(Block::from_json(&json).is_err());
    }

    #[test]
    fn templates_refuse_bad_offers_before_any_work_is_spent() {
        let genesis = BlockTemplate::genesis(0, Timestamp::from_millis(1000).expect("valid"))
            .expect("valid")
            .seal(0);
        let at = Timestamp::from_millis(2000).expect("valid");
        assert!(matches!(
            BlockTemplate::after(&genesis, vec![], 0, at),
            Err(LedgerError::RecordCount { count: 0, .. })
        ));
        assert!(matches!(
            BlockTemplate::after(&genesis, vec![vector_record(); 2], 0, at),
            Err(LedgerError::DuplicateInBlock { window: 42, .. })
        ));
        let mut bad = vector_record();
        bad.n = 0;
        assert!(matches!(
            BlockTemplate::after(&genesis, vec![vector_record(), bad], 0, at),
            Err(LedgerError::BadRecord { position: 1, .. })
        ));
        assert!(matches!(
            BlockTemplate::after(&genesis, vec![vector_record()], 257, at),
            Err(LedgerError::ImpossibleDifficulty(257))
        ));
        // A clock that stepped back is raised to the head's time.
        let earlier = Timestamp::from_millis(10).expect("valid");
        let t = BlockTemplate::after(&genesis, vec![vector_record()], 0, earlier).expect("valid");
        assert_eq!(t.timestamp, genesis.timestamp);
        assert_eq!(t.index, 1);
        assert_eq!(t.previous_hash, genesis.hash);
    }
}
