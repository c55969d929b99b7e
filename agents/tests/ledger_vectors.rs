//! The reference vectors of topics.md ("Ledger encoding"), computed by this code and pinned:
//! a reimplementation (scripts/verify_chain.py is one) checks itself against the same numbers.

use wattchain::ledger::encoding::{data_hash, records_hash, sign_bytes};
use wattchain::ledger::{
    keys, Averages, BlockTemplate, Digests, Genesis, Hash32, NodeKey, Record, Timestamp,
};

/// The genesis document of the spec's example.
pub const GENESIS: &str = r#"{
  "format": 1,
  "name": "wattchain",
  "created": "2026-12-01T21:40:00.000Z",
  "consensus": {"mode": "pow", "difficulty": 16},
  "finality_depth": 6,
  "max_records_per_block": 256
}"#;

fn record() -> Record {
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

fn seed() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

struct Vectors {
    canonical: String,
    chain_id: String,
    genesis_hash: String,
    public: String,
    records_hash: String,
    records_hash_empty: String,
    data_hash: String,
    hash: String,
    sign_bytes: String,
    signature: String,
}

fn compute() -> Vectors {
    let g = Genesis::parse(GENESIS).unwrap();
    let key = NodeKey::from_seed(seed());
    let mut previous = [0u8; 32];
    for (i, b) in previous.iter_mut().enumerate() {
        *b = i as u8;
    }
    let block = BlockTemplate {
        index: 7,
        previous_hash: Hash32(previous),
        timestamp: Timestamp::parse("2026-11-21T01:31:35.123Z").unwrap(),
        difficulty: 4,
        records: vec![record()],
        producer: key.public(),
        consensus: None,
        seal: vec![],
    }
    .finish(0x0102_0304_0506_0708, &key, &g.id());
    let rh = records_hash(block.records());
    Vectors {
        canonical: g.canonical(),
        chain_id: g.id().to_hex(),
        genesis_hash: g.block().hash.to_hex(),
        public: key.public().to_hex(),
        records_hash: rh.to_hex(),
        records_hash_empty: records_hash(&[]).to_hex(),
        data_hash: data_hash(&key.public(), &[], &rh).to_hex(),
        hash: block.hash.to_hex(),
        sign_bytes: sign_bytes(&g.id(), &block.hash)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        signature: block.signature.to_hex(),
    }
}

#[test]
#[ignore = "prints the vectors for topics.md"]
fn print_vectors() {
    let v = compute();
    println!("canonical   {}", v.canonical);
    println!("chain_id    {}", v.chain_id);
    println!("genesis     {}", v.genesis_hash);
    println!("public      {}", v.public);
    println!("records     {}", v.records_hash);
    println!("records0    {}", v.records_hash_empty);
    println!("data        {}", v.data_hash);
    println!("hash        {}", v.hash);
    println!("sign_bytes  {}", v.sign_bytes);
    println!("signature   {}", v.signature);
}

#[test]
fn the_reference_vectors_of_topics_md_hold() {
    let v = compute();
    let topics =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../topics.md")).unwrap();
    for (what, value) in [
        ("canonical genesis", &v.canonical),
        ("chain id", &v.chain_id),
        ("genesis block hash", &v.genesis_hash),
        ("public key", &v.public),
        ("records_hash", &v.records_hash),
        ("records_hash of no records", &v.records_hash_empty),
        ("data_hash", &v.data_hash),
        ("hash", &v.hash),
        ("sign_bytes", &v.sign_bytes),
        ("signature", &v.signature),
    ] {
        assert!(
            topics.contains(value.as_str()),
            "topics.md lacks the {what} {value}"
        );
    }
    // And the signature verifies by the strict rule.
    let g = Genesis::parse(GENESIS).unwrap();
    let key = NodeKey::from_seed(seed());
    assert!(keys::verify_block(
        &g.id(),
        &Hash32::from_hex(&v.hash).unwrap(),
        &key.public(),
        &wattchain::ledger::SignatureBytes::from_hex(&v.signature).unwrap()
    ));
}
