//! The chain file end to end: a real store and miner build chains, both verifiers (Rust and
//! the independent Python script) accept them, and reject tampered copies at the right block.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use wattchain::ledger::{
    digest_values, verify_file, Averages, Block, BlockTemplate, ChainStore, Digests, Hash32,
    LedgerError, Miner, Record, Timestamp, Violation,
};

const DIFFICULTY: u32 = 8;
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

/// Genesis plus `blocks` blocks; block k holds windows 2k-2 and 2k-1 of cabinets a and b.
fn build_chain(path: &Path, blocks: u64) -> ChainStore {
    let (miner, cancel) = (Miner::new(2), AtomicBool::new(false));
    let (mut store, report) = ChainStore::open(path).expect("open");
    assert!(report.created);
    store
        .ensure_genesis(DIFFICULTY, &miner, &cancel)
        .expect("genesis");
    for k in 1..=blocks {
        let records = vec![
            record("cab-a", 2 * k - 2),
            record("cab-a", 2 * k - 1),
            record("cab-b", k),
        ];
        let template = store
            .next_template(records, DIFFICULTY, ts(BASE_MS + k * 20_000))
            .expect("template");
        let block = template.mine(&miner, &cancel).expect("mined");
        store.append(block).expect("append");
    }
    store
}

fn python_verify(path: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_chain.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read chain")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write chain");
}

/// A chain of 6 blocks in a temp dir, and a path for a tampered copy.
fn valid_chain() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data/chain.jsonl");
    drop(build_chain(&path, 5));
    let tampered = dir.path().join("tampered.jsonl");
    (dir, path, tampered)
}

/// Both verifiers and the store must reject `path` at `index` for `reason_text`.
fn assert_rejected_at(path: &Path, index: u64, reason_text: &str) {
    let err = verify_file(path).expect_err("rust verifier rejects");
    assert_eq!(err.index, index, "{err}");
    assert_eq!(err.line, index + 1, "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("block {index} (line {})", index + 1)),
        "{shown}"
    );
    assert!(shown.contains(reason_text), "{shown}");

    let (ok, text) = python_verify(path);
    assert!(!ok, "python accepted a bad chain: {text}");
    assert!(
        text.starts_with(&format!("block {index} (line {}): ", index + 1)),
        "{text}"
    );
    assert!(text.contains(reason_text), "{text}");
}

#[test]
fn a_mined_chain_passes_both_verifiers_with_matching_summaries() {
    let (_dir, path, _) = valid_chain();
    let summary = verify_file(&path).expect("valid");
    assert_eq!(summary.blocks, 6);
    assert_eq!(summary.records, 15);
    assert_eq!(summary.cabinets.len(), 2);
    assert_eq!(
        (summary.cabinets[0].count, summary.cabinets[0].max),
        (10, 9)
    );
    assert_eq!(
        (summary.min_difficulty, summary.max_difficulty),
        (DIFFICULTY, DIFFICULTY)
    );
    let shown = summary.to_string();
    assert!(
        shown.starts_with("valid chain: 6 blocks, 15 records, 2 cabinets"),
        "{shown}"
    );

    let (ok, text) = python_verify(&path);
    assert!(ok, "{text}");
    // Same facts, same wording: the two implementations agree line for line.
    assert_eq!(text.lines().next(), shown.lines().next());
    assert!(
        text.contains("cabinet   cab-a: 10 windows, ids 0..=9"),
        "{text}"
    );
    assert!(text.contains(&summary.head_hash.to_hex()), "{text}");
}

#[test]
fn reopening_restores_head_and_committed_windows() {
    let (_dir, path, _) = valid_chain();
    let (store, report) = ChainStore::open(&path).expect("reopen");
    assert!(!report.created && report.warnings().is_empty());
    assert_eq!(store.len(), 6);
    assert_eq!(store.head().map(|h| h.index), Some(5));
    assert_eq!(store.committed_in("cab-a", 0), Some(1));
    assert_eq!(store.committed_in("cab-a", 9), Some(5));
    assert_eq!(store.committed_in("cab-b", 3), Some(3));
    assert_eq!(store.committed_in("cab-b", 6), None);
    assert_eq!(store.committed_in("cab-c", 1), None);
    let block = store.read_block(3).expect("read");
    assert_eq!(block.index, 3);
    assert_eq!(block.computed_hash(), block.hash);
    assert!(matches!(
        store.read_block(6),
        Err(LedgerError::NoSuchBlock { index: 6, len: 6 })
    ));
}

#[test]
fn append_refuses_blocks_that_do_not_extend_the_chain() {
    let (_dir, path, _) = valid_chain();
    let (mut store, _) = ChainStore::open(&path).expect("open");
    let (miner, cancel) = (Miner::new(2), AtomicBool::new(false));
    let head = store.head().cloned().expect("head");

    // A window already on the chain.
    let again = BlockTemplate::after(&head, vec![record("cab-b", 2)], 0, head.timestamp)
        .expect("template")
        .mine(&miner, &cancel)
        .expect("mined");
    assert!(matches!(
        store.append(again),
        Err(LedgerError::Rejected(Violation::DuplicateWindow {
            first_block: 2,
            ..
        }))
    ));

    // Not enough work for the stated difficulty.
    let template = BlockTemplate::after(&head, vec![record("cab-b", 50)], 20, head.timestamp)
        .expect("template");
    let prefix = template.prefix();
    let weak_nonce = (0..)
        .find(|&n| prefix.hash(n).leading_zero_bits() < 20)
        .expect("some");
    assert!(matches!(
        store.append(template.seal(weak_nonce)),
        Err(LedgerError::Rejected(Violation::InsufficientWork {
            difficulty: 20,
            ..
        }))
    ));

    // Built on an older block.
    let older = store.read_block(4).expect("read");
    let stale = BlockTemplate::after(&older, vec![record("cab-b", 51)], 0, head.timestamp)
        .expect("template")
        .seal(0);
    assert!(matches!(
        store.append(stale),
        Err(LedgerError::Rejected(Violation::IndexOutOfSequence {
            expected: 6,
            found: 5
        }))
    ));

    // None of the refusals reached the file.
    assert_eq!(verify_file(&path).expect("still valid").blocks, 6);
    let good = BlockTemplate::after(&head, vec![record("cab-b", 50)], 0, head.timestamp)
        .expect("template")
        .seal(0);
    store.append(good).expect("a valid block is accepted");
    assert_eq!(store.committed_in("cab-b", 50), Some(6));
    assert_eq!(verify_file(&path).expect("valid").blocks, 7);
}

#[test]
fn one_changed_digit_in_an_average_is_a_hash_mismatch_at_that_block() {
    let (_dir, path, tampered) = valid_chain();
    let mut all = lines(&path);
    let at = all[3].find(r#""U":"#).expect("has U") + 4;
    let digit = all[3].as_bytes()[at];
    let other = if digit == b'9' { "8" } else { "9" };
    all[3].replace_range(at..at + 1, other);
    write_lines(&tampered, &all);
    assert_rejected_at(&tampered, 3, "hash mismatch");
    match ChainStore::open(&tampered) {
        Err(LedgerError::Corrupt { error, .. }) => assert_eq!(error.index, 3),
        other => panic!("store must refuse a corrupt chain, got {other:?}"),
    }
}

#[test]
fn a_removed_block_is_reported_at_its_position() {
    let (_dir, path, tampered) = valid_chain();
    let mut all = lines(&path);
    all.remove(2);
    write_lines(&tampered, &all);
    assert_rejected_at(&tampered, 2, "index out of sequence: expected 2, found 3");
}

#[test]
fn two_swapped_blocks_are_reported_at_the_first() {
    let (_dir, path, tampered) = valid_chain();
    let mut all = lines(&path);
    all.swap(3, 4);
    write_lines(&tampered, &all);
    assert_rejected_at(&tampered, 3, "index out of sequence: expected 3, found 4");
}

#[test]
fn a_torn_last_line_fails_verification_and_is_cut_by_the_store() {
    let (_dir, path, _) = valid_chain();
    let mut content = std::fs::read_to_string(&path).expect("read");
    let intact = content.clone();
    // A crash halfway through writing a seventh line.
    let half = lines(&path)[5].len() / 2;
    content.push_str(&lines(&path)[5][..half]);
    std::fs::write(&path, &content).expect("write");
    assert_rejected_at(&path, 6, "torn last line");

    let (store, report) = ChainStore::open(&path).expect("store recovers");
    assert_eq!(report.truncated.map(|t| t.line), Some(7));
    assert_eq!(report.warnings().len(), 1);
    assert_eq!(store.len(), 6);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), intact);
    assert!(verify_file(&path).is_ok());
    assert!(python_verify(&path).0);
}

#[test]
fn a_complete_last_block_missing_its_newline_is_kept() {
    let (_dir, path, _) = valid_chain();
    let content = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, content.trim_end()).expect("write");
    assert_eq!(verify_file(&path).expect("valid").blocks, 6);
    assert!(python_verify(&path).0);
    let (store, report) = ChainStore::open(&path).expect("open");
    assert!(report.newline_added && report.truncated.is_none());
    assert_eq!(store.len(), 6);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), content);
}

#[test]
fn a_window_committed_in_two_blocks_is_rejected_at_the_second() {
    // Mined and linked correctly, so only the uniqueness rule can catch it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dup.jsonl");
    let (miner, cancel) = (Miner::new(2), AtomicBool::new(false));
    let mut head = BlockTemplate::genesis(DIFFICULTY, ts(BASE_MS))
        .expect("genesis")
        .mine(&miner, &cancel)
        .expect("mined");
    let mut chain = vec![head.to_json()];
    for (k, windows) in [vec![0, 1], vec![2], vec![3, 1], vec![4]]
        .into_iter()
        .enumerate()
    {
        let records = windows.into_iter().map(|w| record("cab-a", w)).collect();
        let at = ts(BASE_MS + (k as u64 + 1) * 20_000);
        head = BlockTemplate::after(&head, records, DIFFICULTY, at)
            .expect("template")
            .mine(&miner, &cancel)
            .expect("mined");
        chain.push(head.to_json());
    }
    write_lines(&path, &chain);
    assert_rejected_at(
        &path,
        3,
        "duplicate window: cabinet cab-a window 1 already in block 1",
    );
    assert!(matches!(
        ChainStore::open(&path),
        Err(LedgerError::Corrupt { ref error, .. }) if error.index == 3
    ));
}

#[test]
fn an_empty_or_garbage_file_is_not_a_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    assert_rejected_at(&empty, 0, "empty chain");

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{\"index\":0}\n").expect("write");
    assert_rejected_at(&garbage, 0, "not a block");
}

#[test]
fn long_chains_keep_one_window_run_per_cabinet_and_read_back_any_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.jsonl");
    let (mut store, _) = ChainStore::open(&path).expect("open");
    store
        .ensure_genesis(0, &Miner::new(1), &AtomicBool::new(false))
        .expect("genesis");
    let start = store.head().expect("genesis").timestamp.millis();
    for w in 0..600u64 {
        let records = vec![record("cab-a", w), record("cab-b", w)];
        let block = store
            .next_template(records, 0, ts(start + w))
            .expect("template")
            .seal(w);
        store.append(block).expect("append");
    }
    assert_eq!(store.windows().runs(), 2);
    assert_eq!(store.committed_in("cab-b", 599), Some(600));
    for index in [0, 255, 256, 257, 511, 512, 600] {
        let block: Block = store.read_block(index).expect("read");
        assert_eq!(block.index, index);
    }
    let (reopened, _) = ChainStore::open(&path).expect("reopen");
    assert_eq!(reopened.read_block(513).expect("read").index, 513);
    assert_eq!(reopened.windows().runs(), 2);
}

/// The first bad block according to the Python script, `None` if it accepts the file.
fn python_first_bad_block(path: &Path) -> Option<u64> {
    let (ok, text) = python_verify(path);
    if ok {
        return None;
    }
    let index = text
        .strip_prefix("block ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    Some(index.unwrap_or_else(|| panic!("python output names no block: {text}")))
}

#[test]
fn both_verifiers_agree_on_every_random_single_character_edit() {
    use rand::{Rng, SeedableRng};
    let (_dir, path, tampered) = valid_chain();
    let original = std::fs::read(&path).expect("read");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x1ed9e7);
    let mut rejected = 0;
    for _ in 0..60 {
        let mut bytes = original.clone();
        let at = loop {
            let at = rng.random_range(0..bytes.len());
            if bytes[at] != b'\n' {
                break at;
            }
        };
        // Printable ASCII, so the edit stays UTF-8 and can hit digits, hex, quotes or braces.
        bytes[at] = rng.random_range(b' '..=b'~');
        std::fs::write(&tampered, &bytes).expect("write");
        let rust = verify_file(&tampered).err().map(|e| e.index);
        let python = python_first_bad_block(&tampered);
        assert_eq!(rust, python, "edit at byte {at}: {:?}", bytes[at] as char);
        rejected += usize::from(rust.is_some());
    }
    // Most edits must break something; a few (a space, the same character) are harmless.
    assert!(rejected > 45, "only {rejected} of 60 edits were detected");
}
