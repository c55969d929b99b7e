//! The proof-of-stake reference vectors of topics.md ("Proof of stake"), computed by this code
//! and pinned: the genesis' chain id, a leader seed and the leaders it draws.
//! `scripts/test_mode_pos.py` reproduces them from the specification.

use serde_json::{Map, Value};
use wattchain::ledger::consensus::pos::Pos;
use wattchain::ledger::consensus::{new_params, ModeOptions, Validator};
use wattchain::ledger::{Genesis, GenesisSpec, NodeKey, Timestamp};

fn genesis() -> Genesis {
    let validators = (0u8..3)
        .map(|i| {
            let seed: [u8; 32] = std::array::from_fn(|b| b as u8 + i);
            Validator {
                name: format!("v{i}"),
                key: NodeKey::from_seed(seed).public(),
                stake: u64::from(i) + 1,
            }
        })
        .collect();
    let mut spec = GenesisSpec::pow(0);
    spec.created = Timestamp::parse("2026-12-01T21:40:00.000Z").unwrap();
    spec.consensus = new_params(
        "pos",
        &ModeOptions {
            validators,
            settings: Map::new(),
            ..ModeOptions::default()
        },
    )
    .unwrap();
    Genesis::new(spec).unwrap()
}

fn compute() -> Vec<(&'static str, String)> {
    let g = genesis();
    let pos = Pos::from_params(&g.consensus.params(), g.finality_depth, g.id()).unwrap();
    let leaders: Vec<String> = (1..=10)
        .map(|h| pos.leader(h, 0, &[]).name.clone())
        .collect();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    vec![
        ("genesis", g.canonical()),
        ("chain id", g.id().to_hex()),
        ("seed(1, 0)", hex(&pos.seed(1, 0))),
        ("leaders 1..10", leaders.join(" ")),
        ("leader(1, 1)", pos.leader(1, 1, &[]).name.clone()),
    ]
}

#[test]
#[ignore = "prints the vectors for topics.md"]
fn print_vectors() {
    for (k, v) in compute() {
        println!("{k} = {v}");
    }
}

#[test]
fn the_pos_reference_vectors_of_topics_md_hold() {
    let topics =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../topics.md")).unwrap();
    let section = topics
        .split("#### Proof-of-stake reference vectors")
        .nth(1)
        .expect("topics.md has the pos vectors");
    for (what, value) in compute() {
        let line = format!("{what} = {value}");
        assert!(section.contains(&line), "topics.md lacks the line: {line}");
    }
    // The genesis line is a real genesis: it parses to the same chain id.
    let doc: Value = serde_json::from_str(&genesis().canonical()).unwrap();
    assert_eq!(Genesis::from_value(doc).unwrap().id(), genesis().id());
}
