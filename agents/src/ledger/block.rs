//! Blocks: the JSON shape, the light header a cabinet checks, and templates that miners turn
//! into signed blocks.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::encoding::{data_hash, records_hash, Hash32, HeaderPrefix, PublicKey, SignatureBytes};
use super::keys::NodeKey;
use super::pow::Miner;
use super::record::Record;
use super::timestamp::Timestamp;

/// Most records any genesis allows in one block (keeps a block well inside one MQTT payload).
pub const MAX_RECORDS_PER_BLOCK: usize = 256;

/// The block body: the records it commits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockData {
    /// Committed windows, in the order they were hashed.
    pub records: Vec<Record>,
}

/// An optional object key that, when present, must be an object (`null` is not "absent").
fn present_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    Map::deserialize(d).map(Some)
}

/// One block, as stored in `chain.jsonl` and published on `ledger/block`.
///
/// Unknown JSON fields are refused: the hash covers only the fields below (and the signature
/// covers the hash), so anything else would be unauthenticated text riding along in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Position in the chain; the genesis block is 0.
    pub index: u64,
    /// When the block was assembled, millisecond UTC.
    pub timestamp: Timestamp,
    /// Hash of the block before (the chain id for the genesis block).
    pub previous_hash: Hash32,
    /// The committed records.
    pub data: BlockData,
    /// Required leading zero bits of `hash`, as the genesis rules fix it for this height.
    pub difficulty: u32,
    /// The value that makes `hash` meet `difficulty`.
    pub nonce: u64,
    /// Mode-specific data covered by the hash through the seal (absent under pow).
    #[serde(
        default,
        deserialize_with = "present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub consensus: Option<Map<String, Value>>,
    /// Public key of the node that produced (and signed) the block.
    pub producer: PublicKey,
    /// The producer's Ed25519 signature over `sign_bytes(chain id, hash)`.
    pub signature: SignatureBytes,
    /// SHA-256 of the 96-byte header.
    pub hash: Hash32,
    /// Mode-specific proof not covered by the hash, e.g. a commit certificate (absent under pow).
    #[serde(
        default,
        deserialize_with = "present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<Map<String, Value>>,
}

impl Block {
    /// The committed records.
    pub fn records(&self) -> &[Record] {
        &self.data.records
    }

    /// The light header of this block (records replaced by their hash).
    pub fn header(&self) -> Header {
        Header {
            index: self.index,
            timestamp: self.timestamp,
            previous_hash: self.previous_hash,
            records_hash: records_hash(&self.data.records),
            difficulty: self.difficulty,
            nonce: self.nonce,
            consensus: self.consensus.clone(),
            producer: self.producer,
            signature: self.signature,
            hash: self.hash,
            certificate: self.certificate.clone(),
        }
    }

    /// One JSON line without the trailing newline (the chain file and MQTT form).
    pub fn to_json(&self) -> String {
        // Every field serialises infallibly except non-finite floats, which serde_json writes
        // as null rather than failing; validation keeps those out of stored blocks.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one JSON block (no semantic checks; see `ledger::rules`).
    pub fn from_json(text: &str) -> Result<Block, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// A block without its records: what a light client (a cabinet) follows and verifies.
///
/// With `records_hash`, `producer` and the seal from `consensus`, the block hash can be
/// recomputed, so a header proves its work and its signature without the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Position in the chain.
    pub index: u64,
    /// Block time.
    pub timestamp: Timestamp,
    /// Hash of the parent block.
    pub previous_hash: Hash32,
    /// `records_hash` of the block's records.
    pub records_hash: Hash32,
    /// Required leading zero bits.
    pub difficulty: u32,
    /// Proof-of-work nonce.
    pub nonce: u64,
    /// Mode-specific data covered by the hash (absent under pow).
    #[serde(
        default,
        deserialize_with = "present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub consensus: Option<Map<String, Value>>,
    /// The producer's public key.
    pub producer: PublicKey,
    /// The producer's signature.
    pub signature: SignatureBytes,
    /// The block hash.
    pub hash: Hash32,
    /// Mode-specific proof not covered by the hash (absent under pow).
    #[serde(
        default,
        deserialize_with = "present_object",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate: Option<Map<String, Value>>,
}

impl Header {
    /// The 88 header bytes before the nonce, for `seal` (the mode's bytes of `consensus`).
    pub fn prefix(&self, seal: &[u8]) -> HeaderPrefix {
        HeaderPrefix::new(
            self.index,
            self.difficulty,
            &self.previous_hash,
            &data_hash(&self.producer, seal, &self.records_hash),
            self.timestamp.millis(),
        )
    }

    /// The hash these fields actually produce with `seal` (compare with `hash`).
    pub fn computed_hash(&self, seal: &[u8]) -> Hash32 {
        self.prefix(seal).hash(self.nonce)
    }

    /// One JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Everything a block needs except its nonce, hash and signature.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockTemplate {
    /// Position the block will take.
    pub index: u64,
    /// Hash of the parent.
    pub previous_hash: Hash32,
    /// Block time (never before the parent's).
    pub timestamp: Timestamp,
    /// Leading zero bits the rules require at this height.
    pub difficulty: u32,
    /// Records to commit.
    pub records: Vec<Record>,
    /// Who will sign it.
    pub producer: PublicKey,
    /// Mode-specific object (absent under pow).
    pub consensus: Option<Map<String, Value>>,
    /// The mode's seal bytes of `consensus`.
    pub seal: Vec<u8>,
}

impl BlockTemplate {
    /// The fixed 88 header bytes a miner works on.
    pub fn prefix(&self) -> HeaderPrefix {
        HeaderPrefix::new(
            self.index,
            self.difficulty,
            &self.previous_hash,
            &data_hash(&self.producer, &self.seal, &records_hash(&self.records)),
            self.timestamp.millis(),
        )
    }

    /// Mines and signs the block; `None` if `cancel` fired first. Blocks the caller.
    pub fn mine(
        self,
        miner: &Miner,
        cancel: &CancellationToken,
        key: &NodeKey,
        chain_id: &Hash32,
    ) -> Option<Block> {
        self.mine_counted(miner, cancel, key, chain_id).0
    }

    /// [`mine`](Self::mine), also saying how many hashes the search computed (cancelled or not).
    pub fn mine_counted(
        self,
        miner: &Miner,
        cancel: &CancellationToken,
        key: &NodeKey,
        chain_id: &Hash32,
    ) -> (Option<Block>, u64) {
        let search = miner.search(&self.prefix(), self.difficulty, cancel);
        let block = search
            .found
            .map(|mined| self.finish(mined.nonce, key, chain_id));
        (block, search.trials)
    }

    /// The block with `nonce`, hashed and signed by `key` (whether or not it meets the work).
    pub fn finish(self, nonce: u64, key: &NodeKey, chain_id: &Hash32) -> Block {
        let hash = self.prefix().hash(nonce);
        Block {
            index: self.index,
            timestamp: self.timestamp,
            previous_hash: self.previous_hash,
            data: BlockData {
                records: self.records,
            },
            difficulty: self.difficulty,
            nonce,
            consensus: self.consensus,
            producer: key.public(),
            signature: key.sign_block(chain_id, &hash),
            hash,
            certificate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> BlockTemplate {
        BlockTemplate {
            index: 1,
            previous_hash: Hash32([3; 32]),
            timestamp: Timestamp::from_millis(5).expect("valid"),
            difficulty: 0,
            records: vec![],
            producer: NodeKey::from_seed([1; 32]).public(),
            consensus: None,
            seal: vec![],
        }
    }

    #[test]
    fn block_json_round_trips_and_its_header_recomputes_the_hash() {
        let key = NodeKey::from_seed([1; 32]);
        let block = template().finish(9, &key, &Hash32([4; 32]));
        let json = block.to_json();
        assert!(json.starts_with(r#"{"index":1,"timestamp":"1970-01-01T00:00:00.005Z","#));
        assert!(!json.contains("consensus") && !json.contains("certificate"));
        let back = Block::from_json(&json).expect("parses");
        assert_eq!(back, block);
        assert_eq!(back.header().computed_hash(&[]), block.hash);
    }

    #[test]
    fn unknown_fields_and_null_optional_objects_are_refused() {
        let key = NodeKey::from_seed([1; 32]);
        let json = template().finish(0, &key, &Hash32::ZERO).to_json();
        assert!(Block::from_json(&json.replacen('{', r#"{"note":"x","#, 1)).is_err());
        assert!(Block::from_json(&json.replacen('{', r#"{"consensus":null,"#, 1)).is_err());
        let with = Block::from_json(&json.replacen('{', r#"{"consensus":{"round":1},"#, 1));
        assert!(with.expect("an object parses").consensus.is_some());
        let twice = json.replacen('{', r#"{"nonce":1,"#, 1);
        assert!(Block::from_json(&twice).is_err(), "duplicate keys");
    }
}
