//! A cabinet releases a window only at finality it checks itself, never on one node's word: a
//! lying node feeds it a forged block, a block for another genesis, and a block with valid work
//! on a branch with less work than one it knows — each buried under k headers — and no window
//! leaves the outbox; then an honest, final block releases it. The real cabinet agent, its real
//! outbox, on the in-memory bus.

mod support;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wattchain::bus::{Bus, Incoming, MemoryPeer};
use wattchain::cabinet::{self, CabinetConfig, SourceConfig, SyntheticConfig};
use wattchain::ledger::{Block, Genesis, GenesisSpec, NodeKey, Record};
use wattchain::messages::{CabinetStatus, WindowTask};
use wattchain::node::wire::{HeadMessage, HeaderMessage};
use wattchain::topics::{Route, Topics};

fn header_msg(g: &Genesis, b: &Block) -> Incoming {
    Incoming {
        topic: Topics::default().header(),
        payload: serde_json::to_vec(&HeaderMessage {
            chain: g.id(),
            header: b.header(),
        })
        .unwrap()
        .into(),
        retain: false,
    }
}

fn commit_msg(b: &Block) -> Incoming {
    Incoming {
        topic: Topics::default().commit("c1"),
        payload: b.to_json().into(),
        retain: false,
    }
}

/// The window's block, then k empty blocks on top, as the cabinet would see them.
fn buried(
    g: &Genesis,
    parent: &wattchain::ledger::Header,
    key: &NodeKey,
    record: Record,
) -> Vec<Block> {
    let mut lists = vec![vec![record]];
    lists.extend((0..g.finality_depth).map(|_| vec![]));
    support::mine_blocks(g, parent, key, lists)
}

async fn send_all(peer: &MemoryPeer, msgs: Vec<Incoming>) {
    for m in msgs {
        peer.deliver.send(m).await.unwrap();
    }
}

/// Waits for the cabinet's status with `outbox` windows held and `rejected` refusals so far.
async fn status_until(
    peer: &mut MemoryPeer,
    what: &str,
    done: impl Fn(&CabinetStatus) -> bool,
) -> CabinetStatus {
    tokio::time::timeout(support::WAIT, async {
        loop {
            let out = peer.published.recv().await.expect("cabinet alive");
            if let Some(Route::CabinetStatus { .. }) = Topics::default().parse(&out.topic) {
                let s: CabinetStatus = serde_json::from_slice(&out.payload).unwrap();
                if done(&s) {
                    return s;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"))
}

#[tokio::test]
async fn a_lying_node_releases_no_window_and_an_honest_final_block_does() {
    let dir = tempfile::tempdir().unwrap();
    let g = support::genesis();
    let config = CabinetConfig {
        period: Duration::from_millis(20),
        window: 4,
        commit_deadline: Duration::from_secs(600),
        // Four readings: exactly one window.
        source: SourceConfig::Synthetic(SyntheticConfig::new(200.0, Some(4))),
        genesis: Some(g.clone()),
        ..CabinetConfig::new("c1", "127.0.0.1:9".parse().unwrap(), dir.path().into())
    };
    let (bus, mut cab) = Bus::memory(256);
    let (status_bus, mut status) = Bus::memory(256);
    let stop = CancellationToken::new();
    let agent = tokio::spawn(cabinet::run(config, bus, status_bus, stop.clone()));

    // The window's four tasks, as published.
    let mut tasks: Vec<WindowTask> = Vec::new();
    while tasks.len() < 4 {
        let out = cab.published.recv().await.expect("cabinet publishes");
        if let Some(Route::Window { .. }) = Topics::default().parse(&out.topic) {
            tasks.push(serde_json::from_slice(&out.payload).unwrap());
        }
    }
    let record = support::record_of(&tasks);
    let liar = NodeKey::from_seed([0x66; 32]);
    let honest = NodeKey::from_seed([0x11; 32]);

    // 1. A forged block: the record is ours, but the signature is not the producer's.
    let mut forged = buried(&g, &g.header(), &liar, record.clone());
    forged[0].signature.0[0] ^= 0x40;
    let mut msgs = vec![commit_msg(&forged[0])];
    msgs.extend(forged.iter().map(|b| header_msg(&g, b)));
    send_all(&cab, msgs).await;

    // 2. The same, perfectly valid, for another genesis.
    let other = {
        let mut spec = GenesisSpec::pow(support::TEST_DIFFICULTY);
        spec.name = "another".into();
        spec.finality_depth = g.finality_depth;
        spec.created = g.created;
        Genesis::new(spec).unwrap()
    };
    let foreign = buried(&other, &other.header(), &liar, record.clone());
    let mut msgs = vec![commit_msg(&foreign[0])];
    msgs.extend(foreign.iter().map(|b| header_msg(&other, b)));
    send_all(&cab, msgs).await;

    // 3. A heavier honest branch without the window, then a lighter one (valid work, valid
    //    signature, k blocks on top) that holds it.
    let k = g.finality_depth as usize;
    let heavy = support::mine_blocks(&g, &g.header(), &honest, vec![vec![]; k + 3]);
    send_all(&cab, heavy.iter().map(|b| header_msg(&g, b)).collect()).await;
    let light = buried(&g, &g.header(), &liar, record.clone());
    assert!(light.len() < heavy.len());
    let mut msgs = vec![commit_msg(&light[0])];
    msgs.extend(light.iter().map(|b| header_msg(&g, b)));
    send_all(&cab, msgs).await;

    // Give the cabinet every chance to (wrongly) release: a head claiming the light branch.
    let head = HeadMessage {
        chain: g.id(),
        node: "liar".into(),
        header: light.last().unwrap().header(),
        work: u128::MAX / 4,
        state: None,
        peers: vec![],
        instance: None,
        ts: "2026-11-21T10:00:00.000Z".into(),
    };
    send_all(
        &cab,
        vec![Incoming {
            topic: Topics::default().head(),
            payload: serde_json::to_vec(&head).unwrap().into(),
            retain: false,
        }],
    )
    .await;
    // A marker the cabinet refuses: once its dead letter is out, every lie before it was handled.
    send_all(
        &cab,
        vec![Incoming {
            topic: Topics::default().header(),
            payload: b"end of the lies".to_vec().into(),
            retain: false,
        }],
    )
    .await;
    let mut refused = Vec::new();
    tokio::time::timeout(support::WAIT, async {
        loop {
            let out = cab.published.recv().await.expect("cabinet alive");
            if let Some(Route::Deadletter { .. }) = Topics::default().parse(&out.topic) {
                let letter: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
                let reason = letter["reason"].as_str().unwrap_or_default().to_string();
                let done = letter["payload_head"] == "end of the lies";
                refused.push(reason);
                if done {
                    break;
                }
            }
        }
    })
    .await
    .expect("the marker is dead-lettered");
    assert!(
        refused.iter().any(|r| r.contains("bad signature")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.contains("another chain") || r.contains("bad signature")),
        "{refused:?}"
    );
    while let Ok(out) = status.published.try_recv() {
        if let Some(Route::CabinetStatus { .. }) = Topics::default().parse(&out.topic) {
            let s: CabinetStatus = serde_json::from_slice(&out.payload).unwrap();
            // Once the window is cut (next_window 1), it stays held through every lie.
            if s.next_window == 1 {
                assert_eq!(s.outbox, 1, "a lie released the window");
            }
        }
    }

    // 4. The honest chain commits it and buries it: released.
    let tip = heavy.last().unwrap().header();
    let good = buried(&g, &tip, &honest, record);
    let mut msgs = vec![commit_msg(&good[0])];
    msgs.extend(good.iter().map(|b| header_msg(&g, b)));
    send_all(&cab, msgs).await;
    status_until(&mut status, "the window released once final", |s| {
        s.outbox == 0
    })
    .await;

    stop.cancel();
    let stats = agent.await.unwrap().unwrap();
    assert_eq!(stats.committed, 1);
    // The forged block and the foreign chain's block and headers at least.
    assert!(stats.rejected >= 2, "{stats:?}");
}
