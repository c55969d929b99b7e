//! Three ledger nodes on one real broker keep one chain: they all see every average, race to
//! mine, resolve forks by work, and a node restarted with an empty data directory catches up by
//! sync. At the end every node is on the same head, every window the cabinet produced is in
//! exactly one block, the cabinet's outbox is empty (it saw each window final itself), and both
//! verifiers accept every node's chain file.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{
    fast_cabinet, start_averager, start_cabinet, start_node, Recorder, TestBroker, TestSim,
};
use wattchain::ledger::{verify_file, Block, CHAIN_FILE};
use wattchain::sim::Fault;
use wattchain::topics::Topics;

fn chain_of(dir: &Path) -> Vec<Block> {
    std::fs::read_to_string(dir.join(CHAIN_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| Block::from_json(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_one_chain_through_a_restart_with_an_empty_data_dir() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let sim = TestSim::start(true, 11).await;
    let rec = Recorder::start(&url, "recorder").await;
    let data = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (1..=3)
        .map(|n| data.path().join(format!("node-{n}")))
        .collect();
    let mut nodes = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        nodes.push(Some(
            start_node(&url, &format!("node-{}", n + 1), dir).await,
        ));
    }
    let averager = start_averager(&url, "averager-1").await;
    let mut config = fast_cabinet("c1", sim.addr, data.path().join("cabinet"));
    config.commit_deadline = Duration::from_secs(2);
    let cabinet = start_cabinet(&url, config).await;

    rec.wait_until("a few windows committed", |s| s.commits("c1").len() >= 4)
        .await;
    // node-3 dies; its disk is lost; it comes back empty and must catch up by sync.
    nodes[2].take().unwrap().stop().await.unwrap();
    std::fs::remove_dir_all(&dirs[2]).unwrap();
    rec.wait_until("more windows without node-3", |s| {
        s.commits("c1").len() >= 8
    })
    .await;
    nodes[2] = Some(start_node(&url, "node-3", &dirs[2]).await);
    rec.wait_until("windows after node-3 is back", |s| {
        s.windows("c1").len() >= 14
    })
    .await;

    // The PLC stops answering: no new windows; everything pending becomes final.
    sim.sim.set_fault(Fault::Exception(4));
    let status = Topics::default().cabinet_status("c1");
    rec.wait_until("the cabinet's outbox empty", |s| {
        let produced = s.windows("c1").len() as u64;
        s.last_status(&status)
            .is_some_and(|v| v["outbox"] == 0 && v["next_window"].as_u64() == Some(produced))
    })
    .await;
    let produced = rec.with(|s| s.windows("c1").len() as u64);
    // Every node ends on one head (bounded: they stop mining once everything is final).
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let heads = loop {
        let heads: Vec<_> = dirs
            .iter()
            .map(|d| chain_of(d).last().map(|b| b.hash))
            .collect();
        if heads.iter().all(|h| h.is_some() && *h == heads[0]) {
            break heads;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes on different heads: {heads:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(heads[0].is_some());

    cabinet.stop().await.unwrap();
    averager.stop().await;
    let mut mined = 0;
    for node in nodes.into_iter().flatten() {
        mined += node.stop().await.unwrap().mined;
    }
    assert!(mined > 0);
    let genesis = support::genesis();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_chain.py");
    for dir in &dirs {
        let chain = chain_of(dir);
        let mut windows: Vec<u64> = chain
            .iter()
            .flat_map(|b| {
                b.records()
                    .iter()
                    .filter(|r| r.cabinet == "c1")
                    .map(|r| r.window)
            })
            .collect();
        windows.sort();
        assert_eq!(
            windows,
            (0..produced).collect::<Vec<_>>(),
            "{}: every window exactly once",
            dir.display()
        );
        verify_file(&genesis, &dir.join(CHAIN_FILE)).expect("wattchain chain verify accepts it");
        let py = Command::new("python3")
            .arg(&script)
            .arg(dir.join(CHAIN_FILE))
            .output()
            .unwrap();
        assert!(
            py.status.success(),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
    }
    // Several nodes produced blocks of the final chain.
    let producers: std::collections::BTreeSet<_> = chain_of(&dirs[0])
        .iter()
        .skip(1)
        .map(|b| b.producer)
        .collect();
    eprintln!(
        "final chain: {} blocks by {} producers",
        chain_of(&dirs[0]).len(),
        producers.len()
    );
    broker.stop().await;
}
