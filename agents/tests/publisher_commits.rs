//! Where a node sends a block it mined: once on `ledger/block` for watchers (and its header on
//! `ledger/header`), and once on the commit topic of each cabinet whose windows it commits, so a
//! cabinet receives only the blocks that concern it (with 50 cabinets, every cabinet used to
//! receive every block).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use wattchain::bus::{Bus, Incoming, MemoryPeer, Outgoing};
use wattchain::ledger::Block;
use wattchain::messages::{encode, Average};
use wattchain::node::{self, NodeConfig};
use wattchain::topics::{Route, Topics};

/// Delivers the four averages of `window` of `cabinet` to the node.
async fn deliver_window(peer: &MemoryPeer, cabinet: &str, window: u64) {
    for task in support::window_tasks(cabinet, window) {
        let average = Average::of(&task, "a1");
        let msg = Incoming {
            topic: Topics::default().average(cabinet, average.quantity),
            payload: encode(&average).into(),
            retain: false,
        };
        peer.deliver.send(msg).await.expect("node reads");
    }
}

/// Reads publications until `done` says the picture is complete (bounded).
async fn collect(
    peer: &mut MemoryPeer,
    mut done: impl FnMut(&[(Route, Block)]) -> bool,
) -> Vec<(Route, Block)> {
    let topics = Topics::default();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !done(&seen) {
            let Outgoing { topic, payload, .. } = peer.published.recv().await.expect("node alive");
            let route = topics.parse(&topic);
            if let Some(route @ (Route::Block | Route::Commit { .. })) = route {
                let block = Block::from_json(std::str::from_utf8(&payload).unwrap()).unwrap();
                seen.push((route, block));
            }
        }
    })
    .await
    .expect("the blocks are published in time");
    seen
}

/// Whether `windows` windows are on `ledger/block` and each block's commit deliveries
/// (one per cabinet it names) followed.
fn settled(seen: &[(Route, Block)], windows: usize) -> bool {
    let blocks = seen.iter().filter(|(r, _)| *r == Route::Block);
    let committed: usize = blocks.clone().map(|(_, b)| b.records().len()).sum();
    let owed: usize = blocks
        .map(|(_, b)| {
            let owners: BTreeSet<&str> = b.records().iter().map(|r| r.cabinet.as_str()).collect();
            owners.len()
        })
        .sum();
    let delivered = seen.iter().filter(|(r, _)| *r != Route::Block).count();
    committed >= windows && delivered >= owed
}

#[tokio::test]
async fn each_block_goes_to_the_cabinets_it_commits_and_a_reissue_only_to_its_cabinet() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        id: "publisher".into(),
        data_dir: dir.path().to_path_buf(),
        threads: 1,
        ..NodeConfig::default()
    };
    let (bus, mut peer) = Bus::memory(64);
    let stop = CancellationToken::new();
    let agent = tokio::spawn(node::run(
        config,
        Some(support::genesis()),
        bus,
        stop.clone(),
        None,
    ));

    let windows = [("c1", 0), ("c2", 0), ("c1", 1), ("c3", 7)];
    for (cabinet, window) in windows {
        deliver_window(&peer, cabinet, window).await;
    }
    let seen = collect(&mut peer, |s| settled(s, windows.len())).await;

    let mut blocks = BTreeMap::new();
    let mut sent_to: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (route, block) in &seen {
        match route {
            Route::Block => assert!(
                blocks.insert(block.index, block.clone()).is_none(),
                "block {} on ledger/block once",
                block.index
            ),
            Route::Commit { cabinet } => sent_to
                .entry(block.index)
                .or_default()
                .push(cabinet.clone()),
            _ => unreachable!(),
        }
    }
    let mut committed = BTreeSet::new();
    for (index, block) in &blocks {
        let mut owners: Vec<String> = block.records().iter().map(|r| r.cabinet.clone()).collect();
        owners.sort();
        owners.dedup();
        committed.extend(
            block
                .records()
                .iter()
                .map(|r| (r.cabinet.clone(), r.window)),
        );
        let mut got = sent_to.remove(index).unwrap_or_default();
        got.sort();
        assert_eq!(
            got, owners,
            "block {index} reaches exactly its cabinets, once each"
        );
    }
    assert!(
        sent_to.is_empty(),
        "no commit without its block: {sent_to:?}"
    );
    let expected: BTreeSet<_> = windows.iter().map(|(c, w)| (c.to_string(), *w)).collect();
    assert_eq!(committed, expected);

    // c2 missed its block and re-issues window 0: only c2 hears about it again.
    let c2_block = blocks
        .values()
        .find(|b| b.records().iter().any(|r| r.cabinet == "c2"))
        .unwrap()
        .index;
    deliver_window(&peer, "c2", 0).await;
    let c2 = Route::Commit {
        cabinet: "c2".into(),
    };
    let again = collect(&mut peer, |s| s.iter().any(|(r, _)| *r == c2)).await;
    for (route, block) in &again {
        match route {
            // Empty blocks burying the last windows may follow: they commit nothing.
            Route::Block => assert!(block.records().is_empty(), "{block:?}"),
            r => {
                assert_eq!(r, &c2, "only c2 hears about its window again");
                assert_eq!(block.index, c2_block);
            }
        }
    }

    stop.cancel();
    let stats = agent.await.unwrap().unwrap();
    assert_eq!(
        stats.reacks, 1,
        "one re-publication for the four re-issued averages"
    );
    // Everything else it published, to the end: the old block never again on ledger/block
    // (the node may still mine empty blocks to bury the last windows, each once).
    let mut on_block_topic: Vec<Block> = seen
        .iter()
        .chain(again.iter())
        .filter(|(r, _)| *r == Route::Block)
        .map(|(_, b)| b.clone())
        .collect();
    while let Ok(out) = peer.published.try_recv() {
        if Topics::default().parse(&out.topic) == Some(Route::Block) {
            on_block_topic
                .push(Block::from_json(std::str::from_utf8(&out.payload).unwrap()).unwrap());
        }
    }
    let mut hashes: Vec<_> = on_block_topic.iter().map(|b| b.hash).collect();
    let published = hashes.len();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), published, "each block on ledger/block once");
    assert!(
        published >= blocks.len(),
        "at least the blocks committing the windows"
    );
}
