//! A real PBFT chain through both verifiers: `wattchain chain verify`'s code and
//! `scripts/verify_chain.py` accept blocks by the primaries with 2f+1 commit signatures, and
//! both refuse, at the same block, a certificate with 2f signatures, a duplicated signer, a
//! non-validator's signature, signatures for another height, a producer that is not the
//! primary, or no certificate. Also pins the PBFT reference vectors of topics.md
//! (`scripts/test_mode_pbft.py` reproduces them from the specification).

#[path = "support/verifiers.rs"]
mod verifiers;
use verifiers::{assert_both_refuse, python_verify, write_chain};

use serde_json::{Map, Value};
use wattchain::ledger::consensus::pbft::certificate::certificate_value;
use wattchain::ledger::consensus::pbft::messages::{sign_bytes, vote_body, Phase, Vote};
use wattchain::ledger::consensus::{new_params, ModeOptions, Validator};
use wattchain::ledger::{
    verify_file, Block, BlockTemplate, Genesis, GenesisSpec, Header, NodeKey, Timestamp,
};

/// Validators' keys, sorted by public key (the genesis order: primary of view v = keys[v % 4]).
fn keys() -> Vec<NodeKey> {
    let mut k: Vec<NodeKey> = (1u8..=4).map(|i| NodeKey::from_seed([i; 32])).collect();
    k.sort_by_key(|k| k.public());
    k
}

fn genesis() -> Genesis {
    let validators = keys()
        .iter()
        .enumerate()
        .map(|(i, k)| Validator {
            name: format!("v{i}"),
            key: k.public(),
            stake: 1,
        })
        .collect();
    let mut spec = GenesisSpec::pow(0);
    spec.created = Timestamp::from_millis(1_800_000_000_000).unwrap();
    spec.consensus = new_params(
        "pbft",
        &ModeOptions {
            validators,
            ..ModeOptions::default()
        },
    )
    .unwrap();
    Genesis::new(spec).unwrap()
}

/// The block on `parent` proposed in `view` by `key` (the primary's unless a test says).
fn proposal(g: &Genesis, parent: &Header, view: u64, key: Option<&NodeKey>) -> Block {
    let ks = keys();
    let key = key.unwrap_or(&ks[(view % 4) as usize]);
    let mut consensus = Map::new();
    consensus.insert("view".into(), view.into());
    BlockTemplate {
        index: parent.index + 1,
        previous_hash: parent.hash,
        timestamp: Timestamp::from_millis(parent.timestamp.millis() + 100).unwrap(),
        difficulty: 0,
        records: vec![],
        producer: key.public(),
        seal: view.to_be_bytes().to_vec(),
        consensus: Some(consensus),
    }
    .finish(0, key, &g.id())
}

/// COMMIT signatures of `signers` for (`view`, `height`, the block's hash).
fn commits(g: &Genesis, block: &Block, view: u64, height: u64, signers: &[&NodeKey]) -> Vec<Vote> {
    let bytes = sign_bytes(
        &g.id(),
        &vote_body(Phase::Commit, view, height, &block.hash),
    );
    signers
        .iter()
        .map(|k| Vote {
            key: k.public(),
            sig: k.sign(&bytes),
        })
        .collect()
}

fn certify(g: &Genesis, mut block: Block, view: u64) -> Block {
    let ks = keys();
    let votes = commits(g, &block, view, block.index, &[&ks[0], &ks[1], &ks[3]]);
    block.certificate = Some(certificate_value(view, &votes));
    block
}

/// Six certified blocks: views 0, 0, then a view change (view 1 from block 3 on, its
/// certificate in view 2 for block 4: committed after another view change).
fn chain(g: &Genesis) -> Vec<Block> {
    let mut blocks = vec![g.block()];
    for (i, (view, cert)) in [(0, 0), (0, 0), (1, 1), (1, 2), (1, 1), (1, 1)]
        .into_iter()
        .enumerate()
    {
        let parent = blocks[i].header();
        blocks.push(certify(g, proposal(g, &parent, view, None), cert));
    }
    blocks
}

#[test]
fn both_verifiers_accept_a_certified_pbft_chain() {
    let g = genesis();
    let dir = tempfile::tempdir().unwrap();
    let path = write_chain(dir.path(), &g, &chain(&g));
    let summary = verify_file(&g, &path).expect("rust accepts");
    assert_eq!(summary.blocks, 7);
    let (code, text) = python_verify(&path);
    assert_eq!(code, 0, "python: {text}");
    assert!(text.contains("pbft, 4 validators, f = 1"), "{text}");
}

#[test]
fn both_verifiers_refuse_a_bad_certificate_or_producer_at_that_block() {
    let g = genesis();
    let ks = keys();
    let outsider = NodeKey::from_seed([9; 32]);
    let good = chain(&g);
    let at = 5usize;
    let block = good[at].clone();
    let cert = |votes: Vec<Vote>| certificate_value(1, &votes);
    let two_f = cert(commits(&g, &block, 1, 5, &[&ks[0], &ks[1]]));
    let mut twice = commits(&g, &block, 1, 5, &[&ks[0], &ks[1]]);
    twice.push(twice[0].clone());
    let twice = {
        let mut m = Map::new();
        m.insert("view".into(), 1.into());
        m.insert(
            "commits".into(),
            Value::Array(twice.iter().map(Vote::to_value).collect()),
        );
        m
    };
    let foreign = cert(commits(&g, &block, 1, 5, &[&ks[0], &ks[1], &outsider]));
    let other_height = cert(commits(&g, &block, 1, 4, &[&ks[0], &ks[1], &ks[2]]));
    let not_primary = certify(&g, proposal(&g, &good[at - 1].header(), 1, Some(&ks[2])), 1);
    let cases: Vec<(&str, Block, &str, &str)> = vec![
        (
            "2f signatures",
            with(&block, Some(two_f)),
            "2 commit signatures, 3 needed",
            "2 commit signatures, 3 needed",
        ),
        (
            "a signer twice",
            with(&block, Some(twice)),
            "signed twice",
            "signed twice",
        ),
        (
            "a non-validator",
            with(&block, Some(foreign)),
            "is not a validator",
            "is not a validator",
        ),
        (
            "another height",
            with(&block, Some(other_height)),
            "does not verify",
            "does not verify",
        ),
        (
            "no certificate",
            with(&block, None),
            "no commit certificate",
            "no commit certificate",
        ),
        (
            "not the primary",
            not_primary,
            "is not the primary of view 1",
            "is not the primary of view 1",
        ),
    ];
    for (what, bad, needle_rust, needle_py) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut blocks = good.clone();
        blocks[at] = bad;
        let path = write_chain(dir.path(), &g, &blocks);
        assert_both_refuse(&g, &path, 5, what, needle_rust, needle_py);
    }
}

fn with(block: &Block, certificate: Option<Map<String, Value>>) -> Block {
    let mut b = block.clone();
    b.certificate = certificate;
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn vectors() -> Vec<(&'static str, String)> {
    let g = genesis();
    let blocks = chain(&g);
    let b1 = &blocks[1];
    let bytes = sign_bytes(&g.id(), &vote_body(Phase::Commit, 0, 1, &b1.hash));
    vec![
        ("genesis", g.canonical()),
        ("chain id", g.id().to_hex()),
        ("block 1 hash", b1.hash.to_hex()),
        ("commit sign-bytes (view 0, height 1)", hex(&bytes)),
        (
            "block 1 certificate",
            serde_json::to_string(b1.certificate.as_ref().unwrap()).unwrap(),
        ),
    ]
}

#[test]
#[ignore = "prints the vectors for topics.md"]
fn print_vectors() {
    for (k, v) in vectors() {
        println!("{k} = {v}");
    }
}

const CHAIN_ID: &str = "13a8c60c15fa68498c3f5f649b1b27a2a90cc96432548b9b250f0122442389a3";
const BLOCK_1_HASH: &str = "932cc32566292a490337d7f287d8951a593ac8f6b2fe560cb4b54f35972d75d4";
const COMMIT_SIGN_BYTES: &str = "5750423113a8c60c15fa68498c3f5f649b1b27a2a90cc96432548b9b250f0122442389a37b2268617368223a2239333263633332353636323932613439303333376437663238376438393531613539336163386636623266653536306362346235346633353937326437356434222c22686569676874223a312c2274797065223a22636f6d6d6974222c2276696577223a307d";
const BLOCK_1_CERTIFICATE: &str = r#"{"commits":[{"key":"8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394","sig":"d32fbc91da0c24fa86087f152b4574165179171045cfa3a3f1f686cca92ccb1b22e1c42e2a10434aea41fd4281441133c722d34c3bec7e44767355da9923cf0f"},{"key":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","sig":"2228d6227704f8229305455229cad3d19333a5ddd1bf5736b8ec7407b4bf45795de352a80a3864499b0dc1802eeadb6f45b12e02494b55e67f7ab4ac22f3fe0c"},{"key":"ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1","sig":"2100561732ffd05ae68a21c79c658b4f7ffdd4cd2829d57ca3abc982e1fbe94b603b7ac9ff301b28401ec0f4dc9879b0129cb78b68844f7177e0da12e9561906"}],"view":0}"#;

#[test]
fn the_pbft_reference_vectors_of_topics_md_hold() {
    let v: std::collections::BTreeMap<_, _> = vectors().into_iter().collect();
    assert_eq!(v["chain id"], CHAIN_ID);
    assert_eq!(v["block 1 hash"], BLOCK_1_HASH);
    assert_eq!(v["commit sign-bytes (view 0, height 1)"], COMMIT_SIGN_BYTES);
    assert_eq!(v["block 1 certificate"], BLOCK_1_CERTIFICATE);
    let topics = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../topics.md"))
        .expect("topics.md");
    for value in [CHAIN_ID, BLOCK_1_HASH, COMMIT_SIGN_BYTES] {
        assert!(topics.contains(value), "topics.md lacks {value}");
    }
}
