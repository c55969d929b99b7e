//! A real proof-of-stake chain through both verifiers: `wattchain chain verify`'s code and
//! `scripts/verify_chain.py` accept the rightful leaders' chain, and both refuse, at the same
//! block, one produced by another validator or before its round started.

#[path = "support/verifiers.rs"]
mod verifiers;
use verifiers::{assert_both_refuse, python_verify, write_chain};

use wattchain::ledger::consensus::pos::{Pos, PosBlock};
use wattchain::ledger::consensus::{new_params, ModeOptions, Validator};
use wattchain::ledger::{
    verify_file, Block, BlockTemplate, Genesis, GenesisSpec, Header, NodeKey, Timestamp,
};

fn keys() -> Vec<NodeKey> {
    (1u8..=4).map(|i| NodeKey::from_seed([i; 32])).collect()
}

fn genesis() -> Genesis {
    let validators = keys()
        .iter()
        .enumerate()
        .map(|(i, k)| Validator {
            name: format!("v{i}"),
            key: k.public(),
            stake: i as u64 + 1,
        })
        .collect();
    let mut spec = GenesisSpec::pow(0);
    spec.created = Timestamp::from_millis(1_800_000_000_000).unwrap();
    spec.consensus = new_params(
        "pos",
        &ModeOptions {
            validators,
            ..ModeOptions::default()
        },
    )
    .unwrap();
    Genesis::new(spec).unwrap()
}

fn pos(g: &Genesis) -> Pos {
    Pos::from_params(&g.consensus.params(), g.finality_depth, g.id()).unwrap()
}

/// The block on `parent` at `round` by `key` (the leader's unless a test says), `late` ms
/// after its round starts.
fn block(g: &Genesis, parent: &Header, round: u32, key: Option<&NodeKey>, late: i64) -> Block {
    let p = pos(g);
    let leader = p.leader(parent.index + 1, round, &[]).key;
    let ks = keys();
    let key = key.unwrap_or_else(|| ks.iter().find(|k| k.public() == leader).unwrap());
    let obj = PosBlock {
        round,
        offenders: vec![],
        evidence: vec![],
    }
    .to_map();
    BlockTemplate {
        index: parent.index + 1,
        previous_hash: parent.hash,
        timestamp: Timestamp::from_millis((p.earliest(parent, round) as i64 + late) as u64)
            .unwrap(),
        difficulty: 0,
        records: vec![],
        producer: key.public(),
        seal: PosBlock::seal(&obj),
        consensus: Some(obj),
    }
    .finish(0, key, &g.id())
}

fn chain(g: &Genesis, n: u64, last: impl Fn(&Header) -> Block) -> Vec<Block> {
    let mut blocks = vec![g.block()];
    for i in 1..=n {
        let parent = blocks.last().unwrap().header();
        let b = if i == n {
            last(&parent)
        } else {
            block(g, &parent, (i % 3 == 0) as u32, None, 0)
        };
        blocks.push(b);
    }
    blocks
}

#[test]
fn both_verifiers_accept_a_pos_chain_of_rightful_leaders() {
    let g = genesis();
    let dir = tempfile::tempdir().unwrap();
    let blocks = chain(&g, 12, |p| block(&g, p, 0, None, 5));
    let path = write_chain(dir.path(), &g, &blocks);
    let summary = verify_file(&g, &path).expect("rust accepts");
    assert_eq!(summary.blocks, 13);
    let (code, text) = python_verify(&path);
    assert_eq!(code, 0, "python: {text}");
    assert!(text.contains("pos, 4 validators"), "{text}");
}

#[test]
fn both_verifiers_refuse_a_wrong_leader_and_an_early_round_at_that_block() {
    let g = genesis();
    for (what, needle_rust, needle_py) in [
        (
            "wrong leader",
            "is not the leader of height 6",
            "is not the leader of height 6",
        ),
        (
            "early round",
            "before its round starts",
            "before its round starts",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let blocks = chain(&g, 6, |p| match what {
            "wrong leader" => {
                let leader = pos(&g).leader(6, 0, &[]).key;
                let ks = keys();
                let other = ks.iter().find(|k| k.public() != leader).unwrap();
                block(&g, p, 0, Some(other), 0)
            }
            _ => block(&g, p, 1, None, -1),
        });
        let path = write_chain(dir.path(), &g, &blocks);
        assert_both_refuse(&g, &path, 6, what, needle_rust, needle_py);
    }
}
