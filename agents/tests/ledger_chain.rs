//! The chain file end to end under ledger v2: a real store builds signed chains bound to a
//! genesis, both verifiers (Rust and the independent Python script) accept them and reject
//! tampered copies at the same block; the store refuses what the rules refuse, follows the most
//! work through a reorg, and reopens after a crash at any byte.

mod support;

#[path = "support/verifiers.rs"]
mod verifiers;
use verifiers::python_verify;

use std::path::{Path, PathBuf};

use wattchain::ledger::{
    digest_values, verify_file, Averages, Block, ChainStore, Digests, Genesis, Hash32, Limits,
    NodeKey, Record, Status, Timestamp, VerifyFileError, Violation, GENESIS_FILE,
};

const BASE_MS: u64 = 1_795_224_695_123;

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms).expect("test times are in range")
}

/// A well-formed record for `window` of `cabinet`, with digests over made-up samples.
fn record(cabinet: &str, window: u64) -> Record {
    let from = BASE_MS + window * 10_000;
    let samples: Vec<f64> = (0..10).map(|k| 230.0 + (window + k) as f64 / 8.0).collect();
    let digest = |scale: f64| {
        let values: Vec<f64> = samples.iter().map(|v| v * scale).collect();
        Hash32(digest_values(&values))
    };
    Record {
        cabinet: cabinet.to_owned(),
        window,
        from: ts(from).to_string(),
        to: ts(from + 9_000).to_string(),
        n: 10,
        averages: Averages {
            u: 231.25 + window as f64 / 4.0,
            i: 1.5,
            pa: 345.375,
            pr: -12.5,
        },
        digests: Digests {
            u: digest(1.0),
            i: digest(0.01),
            pa: digest(1.5),
            pr: digest(-0.1),
        },
    }
}

fn genesis() -> Genesis {
    support::genesis_at(8)
}

fn key(n: u8) -> NodeKey {
    NodeKey::from_seed([n; 32])
}

/// Genesis plus `blocks` blocks; block k holds windows 2k-2 and 2k-1 of cab-a and k of cab-b.
fn build_chain(
    dir: &Path,
    blocks: u64,
) -> (PathBuf, ChainStore<wattchain::ledger::store::FileLog>) {
    let g = genesis();
    g.write_new(&dir.join(GENESIS_FILE)).unwrap();
    let path = dir.join("chain.jsonl");
    let (mut store, report) = ChainStore::open(&g, &path, Limits::default()).expect("open");
    assert!(report.created);
    let lists = (1..=blocks)
        .map(|k| {
            vec![
                record("cab-a", 2 * k - 2),
                record("cab-a", 2 * k - 1),
                record("cab-b", k),
            ]
        })
        .collect();
    for b in support::mine_blocks(&g, store.head(), &key(1), lists) {
        assert_eq!(store.insert(b).unwrap().status, Status::Extended);
    }
    (path, store)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Both verifiers must reject `path` at `index` with a reason containing `reason_text`.
fn assert_rejected_at(path: &Path, index: u64, reason_text: &str) {
    let err = match verify_file(&genesis(), path) {
        Err(VerifyFileError::Invalid(e)) => e,
        other => panic!("rust verifier: {other:?}"),
    };
    assert_eq!((err.index, err.line), (index, index + 1), "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("block {index} (line {})", index + 1)),
        "{shown}"
    );
    assert!(shown.contains(reason_text), "{shown}");
    let (code, text) = python_verify(path);
    assert_eq!(code, 1, "python: {text}");
    assert!(
        text.starts_with(&format!("block {index} (line {}): ", index + 1)),
        "{text}"
    );
    assert!(text.contains(reason_text), "{text}");
}

#[test]
fn a_signed_chain_passes_both_verifiers_with_matching_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = build_chain(dir.path(), 5);
    let summary = verify_file(&genesis(), &path).expect("valid");
    assert_eq!(
        (summary.blocks, summary.records, summary.cabinets.len()),
        (6, 15, 2)
    );
    assert_eq!(
        (summary.cabinets[0].count, summary.cabinets[0].max),
        (10, 9)
    );
    assert_eq!(summary.producers, 1);
    assert!(summary.gaps.is_empty());
    assert_eq!(summary.chain_id, genesis().id());
    let (code, text) = python_verify(&path);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn reopening_restores_head_and_committed_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = build_chain(dir.path(), 4);
    let head = store.head().clone();
    drop(store);
    let (store, report) = ChainStore::open(&genesis(), &path, Limits::default()).unwrap();
    assert!(!report.created && report.blocks == 5);
    assert_eq!(store.head(), &head);
    assert_eq!(store.committed_in("cab-a", 5), Some(3));
    assert_eq!(store.committed_in("cab-b", 4), Some(4));
    assert_eq!(store.read(2).unwrap().index, 2);
}

#[test]
fn the_store_refuses_what_the_rules_refuse_and_keeps_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = build_chain(dir.path(), 2);
    let g = genesis();
    let head = store.head().clone();
    let next = |records| support::mine_blocks(&g, &head, &key(2), vec![records]).remove(0);
    let mut cases: Vec<(Block, &str)> = Vec::new();
    let mut b = next(vec![]);
    b.signature.0[0] ^= 1;
    cases.push((b, "bad signature"));
    let b = next(vec![record("cab-a", 0)]);
    cases.push((b, "duplicate window"));
    let mut b = next(vec![]);
    b.difficulty = 0;
    cases.push((b, "hash mismatch"));
    // Another genesis: the same shape, a signature over another chain id.
    let other = {
        let mut spec = wattchain::ledger::GenesisSpec::pow(8);
        spec.name = "another-chain".into();
        spec.created = g.created;
        Genesis::new(spec).unwrap()
    };
    // Valid work on our head, signed for the other chain id: only the signature can tell.
    let b = g
        .template(&head, vec![], head.timestamp, key(2).public())
        .mine(
            &wattchain::ledger::Miner::new(1),
            &Default::default(),
            &key(2),
            &other.id(),
        )
        .unwrap();
    cases.push((b, "bad signature"));
    // Too little work: a nonce that misses the genesis difficulty.
    let mut t = g.template(&head, vec![], ts(BASE_MS), key(2).public());
    t.difficulty = 8;
    let mut lazy = t.clone().finish(0, &key(2), &g.id());
    while lazy.hash.leading_zero_bits() >= 8 {
        lazy = t.clone().finish(lazy.nonce + 1, &key(2), &g.id());
    }
    cases.push((lazy, "insufficient work"));
    for (block, why) in cases {
        match store.insert(block).unwrap().status {
            Status::Invalid(v) => assert!(v.to_string().contains(why), "{v} (wanted {why})"),
            other => panic!("{why}: accepted as {other:?}"),
        }
    }
    assert_eq!(store.len(), 3);
    assert_eq!(store.held(), (0, 0, 0, 0));
    drop(store);
    verify_file(&g, &path).expect("the file is untouched");
}

#[test]
fn a_heavier_branch_moves_the_main_chain_and_the_file_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut store) = build_chain(dir.path(), 3);
    let g = genesis();
    let fork = store.read(1).unwrap().header();
    // A branch from block 1 with the windows of blocks 2 and 3 and one block more.
    let lists = vec![
        vec![record("cab-a", 2), record("cab-a", 3), record("cab-b", 2)],
        vec![record("cab-a", 4), record("cab-a", 5)],
        vec![record("cab-b", 3)],
    ];
    let branch = support::mine_blocks(&g, &fork, &key(3), lists);
    assert_eq!(
        store.insert(branch[0].clone()).unwrap().status,
        Status::Side
    );
    assert_eq!(
        store.insert(branch[1].clone()).unwrap().status,
        Status::Side,
        "a tie keeps the first seen"
    );
    let insert = store.insert(branch[2].clone()).unwrap();
    assert_eq!(insert.status, Status::Reorged);
    assert_eq!(store.head().hash, branch[2].hash);
    assert_eq!(store.committed_in("cab-b", 3), Some(4));
    drop(store);
    let summary = verify_file(&g, &path).expect("the moved main chain verifies");
    assert_eq!(summary.blocks, 5);
    assert_eq!(python_verify(&path).0, 0);
}

#[test]
fn a_crash_at_any_byte_of_an_append_leaves_a_chain_that_reopens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = build_chain(dir.path(), 3);
    drop(store);
    let full = std::fs::read(&path).unwrap();
    let last_start = full[..full.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    for cut in last_start..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (store, _) = ChainStore::open(&genesis(), &path, Limits::default())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let expected = if cut + 1 == full.len() { 4 } else { 3 };
        assert_eq!(store.len(), expected, "cut at {cut}");
        drop(store);
        verify_file(&genesis(), &path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
    }
}

#[test]
fn one_changed_digit_in_an_average_is_a_hash_mismatch_at_that_block() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = build_chain(dir.path(), 5);
    let mut l = lines(&path);
    assert!(l[3].contains("\"PA\":345.375"));
    l[3] = l[3].replacen("\"PA\":345.375", "\"PA\":345.376", 1);
    write_lines(&path, &l);
    assert_rejected_at(&path, 3, "hash mismatch");
}

#[test]
fn removed_and_swapped_blocks_are_reported_at_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = build_chain(dir.path(), 5);
    let l = lines(&path);
    let mut removed = l.clone();
    removed.remove(2);
    write_lines(&path, &removed);
    assert_rejected_at(&path, 2, "index out of sequence");
    let mut swapped = l;
    swapped.swap(2, 3);
    write_lines(&path, &swapped);
    assert_rejected_at(&path, 2, "index out of sequence");
}

#[test]
fn a_chain_of_another_genesis_is_refused_at_block_0() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = build_chain(dir.path(), 1);
    let other = support::genesis_at(9);
    let mut l = lines(&path);
    l[0] = other.block().to_json();
    write_lines(&path, &l);
    assert_rejected_at(&path, 0, "genesis");
}

#[test]
fn a_torn_last_line_fails_verification_and_is_cut_by_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (path, store) = build_chain(dir.path(), 3);
    drop(store);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"index\":4,\"timest");
    std::fs::write(&path, &text).unwrap();
    assert_rejected_at(&path, 4, "torn");
    let (store, report) = ChainStore::open(&genesis(), &path, Limits::default()).unwrap();
    assert!(report.truncated.is_some());
    assert_eq!(store.len(), 4);
    drop(store);
    verify_file(&genesis(), &path).expect("valid after the cut");
}

#[test]
fn gaps_in_a_cabinets_windows_are_warned_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis();
    g.write_new(&dir.path().join(GENESIS_FILE)).unwrap();
    let path = dir.path().join("chain.jsonl");
    let (mut store, _) = ChainStore::open(&g, &path, Limits::default()).unwrap();
    let lists = vec![
        vec![record("c1", 120)],
        vec![record("c1", 125)],
        vec![record("c1", 126)],
    ];
    for b in support::mine_blocks(&g, store.head(), &key(1), lists) {
        store.insert(b).unwrap();
    }
    drop(store);
    let summary = verify_file(&g, &path).expect("gaps are not invalid");
    assert_eq!(
        summary.gap_warnings(),
        vec!["c1: 121..=124 missing".to_string()]
    );
    let (code, text) = python_verify(&path);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("121..=124"), "python warns too: {text}");
}

#[test]
fn an_empty_or_missing_file_is_not_a_chain_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.jsonl");
    std::fs::write(&path, "").unwrap();
    match verify_file(&genesis(), &path) {
        Err(VerifyFileError::Invalid(e)) => assert_eq!(e.reason, Violation::Empty),
        other => panic!("{other:?}"),
    }
    match verify_file(&genesis(), &dir.path().join("nonexistent")) {
        Err(e @ VerifyFileError::Io { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with("cannot read chain file"), "{text}");
            assert!(
                !text.contains("block 0"),
                "an I/O error is not a bad block: {text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn both_verifiers_agree_on_random_single_character_edits() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = build_chain(dir.path(), 4);
    let original = std::fs::read(&path).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0xed17);
    let alphabet = b"0123456789abcdef\",:{}[]xZ.-";
    for _ in 0..40 {
        let mut edited = original.clone();
        let at = rng.random_range(0..edited.len() - 1);
        edited[at] = alphabet[rng.random_range(0..alphabet.len())];
        std::fs::write(&path, &edited).unwrap();
        let rust = match verify_file(&genesis(), &path) {
            Ok(_) => None,
            Err(VerifyFileError::Invalid(e)) => Some(e.index),
            Err(e) => panic!("{e}"),
        };
        let (code, text) = python_verify(&path);
        let python = (code == 1).then(|| {
            text.strip_prefix("block ")
                .and_then(|t| t.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("python: {text}"))
        });
        assert_eq!(rust, python, "edit at byte {at}: python said {text}");
    }
}
