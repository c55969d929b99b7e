//! The pipelined sync between two engines, messages carried by hand: replies out of order and
//! twice, a reply that lies in the middle of the fetch.

use super::fetch::WINDOW;
use crate::ledger::store::{ChainStore, Limits, MemLog};
use crate::ledger::{Genesis, GenesisSpec, NodeKey, Timestamp};
use crate::node::engine::{Action, Engine, EngineConfig, Event, Publication};
use crate::node::wire::{SyncKind, SyncReply, SyncRequest};

const T0: u64 = 1_800_000_000_000;

fn genesis() -> Genesis {
    let mut spec = GenesisSpec::pow(0);
    spec.name = "sync-test".into();
    spec.created = Timestamp::from_millis(T0).expect("valid");
    Genesis::new(spec).expect("valid genesis")
}

/// A source engine holding `n` blocks above genesis, and an empty one that syncs from it.
fn pair(n: u64) -> (Engine<MemLog>, Engine<MemLog>) {
    let g = genesis();
    let key = NodeKey::from_seed([1; 32]);
    let mut store = ChainStore::open_memory(&g, MemLog::default(), Limits::default()).unwrap();
    for i in 0..n {
        let head = store.head().clone();
        let ts = Timestamp::from_millis(T0 + 1 + i).unwrap();
        let block = g
            .template(&head, vec![], ts, key.public())
            .finish(0, &key, &g.id());
        store.insert_deferred(block).unwrap();
    }
    let source = Engine::new("source", key, store, EngineConfig::default());
    let empty = ChainStore::open_memory(&g, MemLog::default(), Limits::default()).unwrap();
    let target = Engine::new(
        "target",
        NodeKey::from_seed([2; 32]),
        empty,
        EngineConfig::default(),
    );
    (source, target)
}

fn requests(actions: &[Action]) -> Vec<SyncRequest> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(Publication::SyncRequest(r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn dead_letters(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(Publication::DeadLetter { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Starts the target's sync: it hears the source's head.
fn start(source: &mut Engine<MemLog>, target: &mut Engine<MemLog>) -> Vec<SyncRequest> {
    let head = source
        .start(T0)
        .into_iter()
        .find_map(|a| match a {
            Action::Publish(Publication::NodeHead(h)) => Some(h),
            _ => None,
        })
        .expect("the source announces its head");
    target.start(T0);
    let actions = target
        .handle(T0, Event::Head { head, best: false })
        .unwrap();
    requests(&actions)
}

fn serve(source: &mut Engine<MemLog>, req: SyncRequest) -> SyncReply {
    source
        .handle(T0, Event::SyncRequest(req))
        .unwrap()
        .into_iter()
        .find_map(|a| match a {
            Action::Publish(Publication::SyncReply { reply, .. }) => Some(reply),
            _ => None,
        })
        .expect("the source answers")
}

#[test]
fn a_pipelined_sync_takes_replies_out_of_order_and_twice_and_catches_up() {
    let (mut source, mut target) = pair(3_000);
    let mut asked = start(&mut source, &mut target);
    let (mut most_in_flight, mut rounds) = (0, 0);
    while !asked.is_empty() {
        rounds += 1;
        assert!(rounds < 1_000, "sync does not end");
        let blocks_asked = asked.iter().filter(|r| r.kind == SyncKind::Blocks).count();
        most_in_flight = most_in_flight.max(blocks_asked);
        // Every reply of the round, newest first, each delivered twice.
        let replies: Vec<SyncReply> = asked.drain(..).map(|r| serve(&mut source, r)).collect();
        for reply in replies.into_iter().rev() {
            for _ in 0..2 {
                let actions = target.handle(T0, Event::SyncReply(reply.clone())).unwrap();
                assert_eq!(dead_letters(&actions), Vec::<String>::new());
                asked.extend(requests(&actions));
            }
        }
    }
    assert_eq!(target.store().head(), source.store().head(), "caught up");
    assert!(!target.syncing(), "the session ended");
    assert_eq!(target.stats().rejected, 0, "nothing refused");
    assert!(
        (2..=WINDOW).contains(&most_in_flight),
        "block requests in flight at once: {most_in_flight}"
    );
}

#[test]
fn a_block_that_is_not_its_header_mid_fetch_ends_the_session_and_is_not_kept() {
    let (mut source, mut target) = pair(1_000);
    let mut asked = start(&mut source, &mut target);
    let mut lied = None;
    let mut refused = Vec::new();
    while !asked.is_empty() {
        let replies: Vec<SyncReply> = asked.drain(..).map(|r| serve(&mut source, r)).collect();
        for mut reply in replies.into_iter().rev() {
            // The third block reply carries one block whose records differ from its header.
            if lied.is_none() && reply.blocks.len() > 10 && reply.blocks[0].index > 100 {
                let forged = &mut reply.blocks[5];
                forged.nonce ^= 1;
                lied = Some(forged.index);
            }
            let actions = target.handle(T0, Event::SyncReply(reply)).unwrap();
            refused.extend(dead_letters(&actions));
            asked.extend(requests(&actions));
        }
    }
    let index = lied.expect("a block reply was forged");
    assert!(
        refused
            .iter()
            .any(|r| r.contains("is not the one its header announced")),
        "{refused:?}"
    );
    assert!(!target.syncing(), "the session ended");
    let head = target.store().head().clone();
    assert!(head.index < index, "stopped before the forged block");
    assert_eq!(
        source.store().read(head.index).unwrap().hash,
        head.hash,
        "what was kept is the source's chain"
    );
}
