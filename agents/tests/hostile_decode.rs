//! Hostile payloads driven straight into the decoding functions of every agent, ≥ 10 000 seeded
//! mutations per target (the stand-in for `cargo fuzz`): window tasks (averager), averages
//! (a node, through its real run loop on an in-memory bus), blocks (the cabinet's light client) and
//! chain files (`verify_file`). Each target must refuse what breaks the contract, accept only
//! what meets it, and keep serving genuine input afterwards.

mod support;

use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use support::mutate::{Mutator, Tally};
use wattchain::averager::{self, AveragerConfig};
use wattchain::bus::{Bus, Incoming};
use wattchain::cabinet::finality::{BlockRefusal, Finality};
use wattchain::ledger::{
    digest_hex, verify_file, Averages, Block, Digests, Genesis, Hash32, NodeKey, Record,
    VerifyFileError,
};
use wattchain::messages::{encode, Average, DeadLetter, WindowTask, MAX_WINDOW_VALUES};
use wattchain::node::{self, NodeConfig};
use wattchain::topics::{Quantity, Topics};

const CASES: usize = 10_000;
const FROM: &str = support::TASK_FROM;
const TO: &str = support::TASK_TO;

fn tasks(cabinet: &str, window: u64) -> Vec<WindowTask> {
    support::window_tasks(cabinet, window)
}

fn record_of(tasks: &[WindowTask]) -> Record {
    let avg = |q: Quantity| Average::of(tasks.iter().find(|t| t.quantity == q).unwrap(), "a");
    let dig = |q: Quantity| Hash32::from_hex(&avg(q).digest).unwrap();
    Record {
        cabinet: tasks[0].cabinet.clone(),
        window: tasks[0].window,
        from: FROM.into(),
        to: TO.into(),
        n: tasks[0].values.len() as u32,
        averages: Averages {
            u: avg(Quantity::U).mean,
            i: avg(Quantity::I).mean,
            pa: avg(Quantity::PA).mean,
            pr: avg(Quantity::PR).mean,
        },
        digests: Digests {
            u: dig(Quantity::U),
            i: dig(Quantity::I),
            pa: dig(Quantity::PA),
            pr: dig(Quantity::PR),
        },
    }
}

/// A chain of `len` blocks (genesis included) at difficulty 0, one window of `c1` per block.
fn chain(len: u64) -> (Genesis, Vec<Block>) {
    let g = support::genesis_at(0);
    let lists = (1..len).map(|w| vec![record_of(&tasks("c1", w))]).collect();
    let mut blocks = vec![g.block()];
    blocks.extend(support::mine_blocks(
        &g,
        &g.header(),
        &NodeKey::from_seed([3; 32]),
        lists,
    ));
    (g, blocks)
}

/// The window-task contract, checked independently of `Validate`.
fn meets_task_contract(t: &WindowTask) -> bool {
    let id_ok = (1..=64).contains(&t.cabinet.len())
        && t.cabinet
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let times = (
        humantime::parse_rfc3339(&t.from),
        humantime::parse_rfc3339(&t.to),
    );
    id_ok
        && (1..=MAX_WINDOW_VALUES).contains(&t.values.len())
        && t.values.iter().all(|v| v.is_finite())
        && t.digest == digest_hex(&t.values)
        && matches!(times, (Ok(f), Ok(to)) if f <= to)
}

#[test]
fn mutated_window_tasks_get_an_average_only_when_they_meet_the_contract() {
    let topics = Topics::default();
    let config = AveragerConfig::new("a1", topics.clone());
    let originals = tasks("c1", 7);
    let mut m = Mutator::new(0x5eed_0001, config.max_payload);
    let mut tally = Tally::default();
    for case in 0..CASES {
        let original = &originals[case % 4];
        let (kind, payload) = m.mutate(&serde_json::to_value(original).unwrap());
        // One case in ten also arrives on a topic that does not match its payload.
        let topic = if m.rng().random_bool(0.1) {
            topics.window("c2", Quantity::ALL[m.rng().random_range(0..4)])
        } else {
            topics.window("c1", original.quantity)
        };
        match averager::answer(&config, &topic, &payload) {
            Ok(avg) => {
                let task: WindowTask = serde_json::from_slice(&payload).unwrap();
                assert!(
                    meets_task_contract(&task),
                    "case {case} ({kind}) accepted: {task:?}"
                );
                assert_eq!(
                    topic,
                    topics.window(&avg.cabinet, avg.quantity),
                    "case {case}"
                );
                assert!(
                    avg.min <= avg.mean && avg.mean <= avg.max,
                    "case {case}: {avg:?}"
                );
                assert_eq!(avg.n as usize, task.values.len());
                tally.count(kind, false);
            }
            Err(reason) => {
                assert!(
                    !reason.is_empty(),
                    "case {case} ({kind}) refused without a reason"
                );
                tally.count(kind, true);
            }
        }
    }
    eprintln!("window tasks: {tally:?}");
    assert_eq!(tally.cases(), CASES as u64);
    assert!(tally.refused() > CASES as u64 / 2, "{tally:?}");
    let genuine = encode(&originals[0]);
    assert!(averager::answer(&config, &topics.window("c1", Quantity::U), &genuine).is_ok());
}

#[tokio::test]
async fn mutated_averages_are_dead_lettered_and_a_node_still_commits_a_genuine_window() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::default();
    let config = NodeConfig {
        id: "publisher".into(),
        data_dir: dir.path().to_path_buf(),
        threads: 1,
        ..NodeConfig::default()
    };
    let (bus, mut peer) = Bus::memory(64);
    let stop = CancellationToken::new();
    let agent = tokio::spawn(node::run(
        config.clone(),
        Some(support::genesis()),
        bus,
        stop.clone(),
        None,
    ));

    let averages: Vec<Average> = tasks("c1", 7)
        .iter()
        .map(|t| Average::of(t, "a1"))
        .collect();
    let mut m = Mutator::new(0x5eed_0002, config.max_average);
    let mut kinds = Vec::with_capacity(CASES);
    for case in 0..CASES {
        let original = &averages[case % 4];
        let (kind, payload) = m.mutate(&serde_json::to_value(original).unwrap());
        kinds.push(kind);
        let topic = topics.average("c1", original.quantity);
        let msg = Incoming {
            topic,
            payload: payload.into(),
            retain: false,
        };
        tokio::time::timeout(Duration::from_secs(30), peer.deliver.send(msg))
            .await
            .expect("the node keeps reading")
            .unwrap();
    }
    // A genuine window, complete, under an id no mutation produced.
    for a in tasks("c1", 1_000_000_007)
        .iter()
        .map(|t| Average::of(t, "a1"))
    {
        let msg = Incoming {
            topic: topics.average("c1", a.quantity),
            payload: encode(&a).into(),
            retain: false,
        };
        peer.deliver.send(msg).await.unwrap();
    }
    let mut letters = 0u64;
    let block = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let out = peer.published.recv().await.expect("node alive");
            if out.topic == topics.deadletter(node::ROLE) {
                let letter: DeadLetter = serde_json::from_slice(&out.payload).unwrap();
                assert!(!letter.reason.is_empty());
                letters += 1;
            } else if out.topic == topics.block() {
                let b = Block::from_json(std::str::from_utf8(&out.payload).unwrap()).unwrap();
                if b.records().iter().any(|r| r.window == 1_000_000_007) {
                    break b;
                }
            }
        }
    })
    .await
    .expect("the genuine window is committed despite 10 000 hostile averages");
    assert_eq!(block.records()[0].cabinet, "c1");
    stop.cancel();
    let stats = agent.await.unwrap().unwrap();
    // Dead letters published after the genuine block are still in the queue.
    while let Ok(out) = peer.published.try_recv() {
        letters += (out.topic == topics.deadletter(node::ROLE)) as u64;
    }
    eprintln!("averages: {CASES} cases, {letters} dead letters, stats {stats:?}");
    assert_eq!(
        stats.rejected, letters,
        "every rejection is counted and dead-lettered"
    );
    assert!(letters > CASES as u64 / 2, "{letters} of {CASES} refused");
    let summary =
        verify_file(&support::genesis(), &config.chain_path()).expect("the chain stays verifiable");
    assert!(summary.blocks >= 2);
}

/// Whether the cabinet's light client takes `payload` (on its commit topic) as a candidate.
fn light_accepts(ours: &[WindowTask], payload: &[u8]) -> Result<Block, BlockRefusal> {
    let mut held = std::collections::BTreeMap::new();
    held.insert(ours[0].window, ours.to_vec());
    let mut light = Finality::new("c1", "cabinet-c1", support::genesis());
    let block = std::str::from_utf8(payload)
        .map_err(|e| BlockRefusal::Malformed(e.to_string()))
        .and_then(|t| Block::from_json(t).map_err(|e| BlockRefusal::Malformed(e.to_string())))?;
    light.on_block(block.clone(), &held, 0).map(|_| block)
}

#[test]
fn mutated_blocks_never_commit_a_window_they_do_not_match() {
    let ours = tasks("c1", 0);
    let g = support::genesis();
    let key = NodeKey::from_seed([4; 32]);
    let genuine =
        support::mine_blocks(&g, &g.header(), &key, vec![vec![record_of(&ours)]]).remove(0);
    assert_eq!(
        light_accepts(&ours, genuine.to_json().as_bytes()),
        Ok(genuine.clone())
    );

    let mut m = Mutator::new(0x5eed_0003, 1 << 20);
    let mut tally = Tally::default();
    let value = serde_json::to_value(&genuine).unwrap();
    for case in 0..CASES {
        let (kind, payload) = m.mutate(&value);
        match light_accepts(&ours, &payload) {
            // Every field is hashed or signed: an accepted variant can only be the same block.
            Ok(b) => {
                assert_eq!(
                    b, genuine,
                    "case {case} ({kind}) accepted a different block"
                );
                tally.count(kind, false);
            }
            Err(_) => tally.count(kind, true),
        }
    }
    eprintln!("blocks: {tally:?}");
    assert!(tally.refused() > CASES as u64 * 9 / 10, "{tally:?}");

    // Forgeries with valid work and a valid signature (by the forger's own key) whose record
    // lies about our samples.
    let mut forged_refused = 0;
    for case in 0..200u64 {
        let mut r = record_of(&ours);
        match case % 4 {
            0 => r.digests.u = Hash32::from_hex(&format!("{case:064x}")).unwrap(),
            1 => r.n += 1 + case as u32,
            2 => r.digests.pr = r.digests.i,
            _ => r.averages.pa += case as f64, // right digests: indistinguishable without ACLs
        }
        let lie = support::mine_blocks(&g, &g.header(), &key, vec![vec![r]]).remove(0);
        match light_accepts(&ours, lie.to_json().as_bytes()) {
            Ok(_) => assert_eq!(
                case % 4,
                3,
                "case {case}: a record with foreign digests passed"
            ),
            Err(refusal) => {
                assert_eq!(refusal, BlockRefusal::NotOurSamples { window: 0 });
                forged_refused += 1;
            }
        }
    }
    assert_eq!(forged_refused, 150);
}

fn mutate_lines(m: &mut Mutator, lines: &[String]) -> (&'static str, Vec<u8>) {
    let mut lines = lines.to_vec();
    let i = m.rng().random_range(0..lines.len());
    let kind = match m.rng().random_range(0..4) {
        0 => {
            let (kind, bytes) = m.mutate(&serde_json::from_str::<Value>(&lines[i]).unwrap());
            lines[i] = String::from_utf8_lossy(&bytes).into_owned();
            kind
        }
        1 => {
            let j = m.rng().random_range(0..lines.len());
            lines.swap(i, j);
            "swap-lines"
        }
        2 => {
            let dup = lines[i].clone();
            lines.insert(i, dup);
            "duplicate-line"
        }
        _ => {
            lines.remove(i);
            "drop-line"
        }
    };
    let mut text = lines.join("\n");
    text.push('\n');
    (kind, text.into_bytes())
}

#[test]
fn mutated_chain_files_verify_only_when_they_are_a_prefix_of_the_genuine_chain() {
    let (g, blocks) = chain(3);
    let lines: Vec<String> = blocks.iter().map(Block::to_json).collect();
    // 10 000 rewrites of one small file: keep them off the disk where a RAM disk exists.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("chain.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert_eq!(verify_file(&g, &path).unwrap().blocks, 3);

    let mut m = Mutator::new(0x5eed_0004, 1 << 20);
    let mut tally = Tally::default();
    for case in 0..CASES {
        let (kind, bytes) = mutate_lines(&mut m, &lines);
        std::fs::write(&path, &bytes).unwrap();
        match verify_file(&g, &path) {
            Ok(s) => {
                let n = s.blocks as usize;
                assert!(n <= blocks.len(), "case {case} ({kind}) grew the chain");
                assert_eq!(s.head_hash, blocks[n - 1].hash, "case {case} ({kind})");
                tally.count(kind, false);
            }
            Err(VerifyFileError::Invalid(e)) => {
                assert!(e.index < blocks.len() as u64 + 1, "case {case}: {e}");
                tally.count(kind, true);
            }
            Err(e) => panic!("case {case}: {e}"),
        }
    }
    eprintln!("chain files: {tally:?}");
    // Dropping the last line or swapping a line with itself leaves a genuine prefix; a
    // duplicated line never does.
    let (dups, dups_refused) = tally.by_kind["duplicate-line"];
    assert_eq!(dups, dups_refused, "a duplicated block verified");
    assert!(tally.refused() > CASES as u64 * 3 / 4, "{tally:?}");
}
