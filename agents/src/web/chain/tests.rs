//! Following a chain file: appends, partial lines, replacement, tampering.

use super::*;
use crate::ledger::{Averages, Digests, Genesis, GenesisSpec, NodeKey, Record, Timestamp};

fn record(window: u64) -> Record {
    Record {
        cabinet: "c1".into(),
        window,
        from: "2026-11-21T10:00:00.000Z".into(),
        to: "2026-11-21T10:00:03.000Z".into(),
        n: 4,
        averages: Averages {
            u: 230.0,
            i: 1.0,
            pa: 200.0,
            pr: 10.0,
        },
        digests: Digests {
            u: Hash32([1; 32]),
            i: Hash32([2; 32]),
            pa: Hash32([3; 32]),
            pr: Hash32([4; 32]),
        },
    }
}

fn genesis() -> Genesis {
    let mut spec = GenesisSpec::pow(0);
    spec.created = Timestamp::from_millis(1000).expect("valid");
    Genesis::new(spec).expect("valid")
}

/// A valid chain of `n` blocks (difficulty 0), one window each after genesis; the genesis is
/// written into `dir`, beside the chain file, where a node keeps it.
fn chain_in(dir: &Path, n: u64) -> Vec<Block> {
    let g = genesis();
    let gpath = dir.join(crate::ledger::GENESIS_FILE);
    if !gpath.exists() {
        g.write_new(&gpath).unwrap();
    }
    let key = NodeKey::from_seed([2; 32]);
    let mut blocks = vec![g.block()];
    for i in 1..n {
        let head = blocks.last().unwrap().header();
        let t = g.template(
            &head,
            vec![record(i)],
            Timestamp::from_millis(1000 + i).unwrap(),
            key.public(),
        );
        blocks.push(t.finish(0, &key, &g.id()));
    }
    blocks
}

fn lines(blocks: &[Block]) -> String {
    blocks.iter().map(|b| b.to_json() + "\n").collect()
}

#[test]
fn follows_appends_and_serves_every_block_by_index_hash_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.jsonl");
    let view = FileChain::new(&path);
    assert!(
        view.refresh().unwrap().is_empty(),
        "no file yet is an empty chain"
    );
    let blocks = chain_in(dir.path(), 300);
    std::fs::write(&path, lines(&blocks[..200])).unwrap();
    let fresh = view.refresh().unwrap();
    assert_eq!(
        fresh.len(),
        RECENT,
        "a big first read returns only the latest blocks"
    );
    assert_eq!(fresh.last().unwrap().index, 199);
    // A line still being written is left for later.
    let mut text = lines(&blocks);
    let partial = blocks[200].to_json();
    std::fs::write(&path, lines(&blocks[..200]) + &partial[..partial.len() / 2]).unwrap();
    assert!(view.refresh().unwrap().is_empty());
    std::fs::write(&path, &text).unwrap();
    assert_eq!(view.refresh().unwrap().len(), 100);
    let summary = view.summary();
    assert_eq!((summary.length, summary.records), (300, 299));
    assert_eq!(summary.head.as_ref().unwrap().hash, blocks[299].hash);
    for i in [0u64, 1, 63, 64, 65, 130, 171, 299] {
        let b = view.block(i).unwrap().expect("on the chain");
        assert_eq!(b.hash, blocks[i as usize].hash, "block {i}");
        assert_eq!(b.raw.get(), blocks[i as usize].to_json());
        let by_hash = view
            .block_by_hash(&blocks[i as usize].hash)
            .unwrap()
            .unwrap();
        assert_eq!(by_hash.index, i);
    }
    assert!(view.block(300).unwrap().is_none());
    assert!(view.block_by_hash(&Hash32([9; 32])).unwrap().is_none());
    let page = view.page(60, 10).unwrap();
    assert_eq!(
        page.iter().map(|b| b.index).collect::<Vec<_>>(),
        (60..70).collect::<Vec<_>>()
    );
    assert_eq!(view.page(295, 10).unwrap().len(), 5);
    assert_eq!(view.locate("c1", 42), Some(42));
    assert_eq!(view.locate("c1", 300), None);
    // Replaced by a shorter file: followed again from the start.
    text.truncate(lines(&blocks[..10]).len());
    std::fs::write(&path, &text).unwrap();
    view.refresh().unwrap();
    assert_eq!(view.summary().length, 10);
}

#[test]
fn a_tampered_block_is_named_and_nothing_after_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.jsonl");
    let blocks = chain_in(dir.path(), 10);
    let text = lines(&blocks).replacen("\"window\":5,", "\"window\":55,", 1);
    std::fs::write(&path, text).unwrap();
    let view = FileChain::new(&path);
    view.refresh().unwrap();
    let summary = view.summary();
    assert_eq!(summary.length, 5);
    let bad = summary.verification.first_bad.clone().expect("named");
    assert_eq!((bad.index, bad.line), (5, 6));
    assert!(bad.reason.contains("hash"), "{}", bad.reason);
    assert!(view.block(5).unwrap().is_none());
    assert_eq!(view.locate("c1", 4), Some(4));
}
