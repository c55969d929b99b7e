//! Where the publisher sends a block: once on `ledger/block` for watchers, and once on the
//! commit topic of each cabinet whose windows it commits, so a cabinet receives only the
//! blocks that concern it (with 50 cabinets, every cabinet used to receive every block).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use wattchain::bus::{Bus, Incoming, MemoryPeer, Outgoing};
use wattchain::ledger::Block;
use wattchain::messages::{encode, Average};
use wattchain::publisher::{self, PublisherConfig};
use wattchain::topics::{Route, Topics};

/// Delivers the four averages of `window` of `cabinet` to the publisher.
async fn deliver_window(peer: &MemoryPeer, cabinet: &str, window: u64) {
    for task in support::window_tasks(cabinet, window) {
        let average = Average::of(&task, "a1");
        let msg = Incoming {
            topic: Topics::default().average(cabinet, average.quantity),
            payload: encode(&average).into(),
            retain: false,
        };
        peer.deliver.send(msg).await.expect("publisher reads");
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
            let Outgoing { topic, payload, .. } =
                peer.published.recv().await.expect("publisher alive");
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
    let mut config = PublisherConfig::new("publisher", dir.path().to_path_buf());
    config.difficulty = 0;
    config.threads = 1;
    let (bus, mut peer) = Bus::memory(64);
    let stop = CancellationToken::new();
    let agent = tokio::spawn(publisher::run(config, bus, stop.clone(), None));

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
    let again = collect(&mut peer, |s| !s.is_empty()).await;
    let (route, block) = &again[0];
    assert_eq!(
        route,
        &Route::Commit {
            cabinet: "c2".into()
        }
    );
    assert_eq!(block.index, c2_block);

    stop.cancel();
    let stats = agent.await.unwrap().unwrap();
    assert_eq!(
        stats.reacks, 1,
        "one re-publication for the four re-issued averages"
    );
    assert!(
        peer.published
            .try_recv()
            .iter()
            .all(|o| Topics::default().parse(&o.topic) != Some(Route::Block)),
        "a re-issue does not disturb watchers of ledger/block"
    );
}
