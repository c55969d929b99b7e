//! Proof of stake in the simulation: a genesis whose validators are the simulated nodes (plus,
//! in some runs, one that never comes online), an equivocating validator that signs two blocks
//! per slot and shows each to half the nodes, a liar sending forged blocks and mode messages,
//! and the extra invariant: honest validators are never recorded as offenders.

use rand::rngs::SmallRng;
use rand::Rng;

use super::{CabinetMsg, Outcome, PosPlan, To, World, START_MS};
use crate::ledger::consensus::pos::{Pos, PosBlock};
use crate::ledger::consensus::{ModeOptions, Validator};
use crate::ledger::{Block, BlockTemplate, Genesis, GenesisSpec, NodeKey, Timestamp};
use crate::node::engine::Event;
use crate::node::wire::{HeaderMessage, ModeMessage};

/// Key of the validator that never runs.
fn offline_key() -> NodeKey {
    NodeKey::from_seed([0x0f; 32])
}

pub(super) fn plan(rng: &mut SmallRng, nodes: usize) -> PosPlan {
    let offline = rng.random_bool(0.5);
    let equivocator = rng.random_bool(0.5).then(|| rng.random_range(0..nodes));
    PosPlan {
        offline,
        equivocator,
        stakes: (0..=nodes).map(|_| rng.random_range(1..=4)).collect(),
        block_interval_ms: rng.random_range(100..=300),
        round_timeout_ms: rng.random_range(150..=400),
    }
}

pub(super) fn genesis(world: &World, name: &str) -> Genesis {
    let plan = world.plan.pos.as_ref().expect("a pos run");
    let mut validators: Vec<Validator> = world
        .nodes
        .iter()
        .zip(&plan.stakes)
        .map(|(n, stake)| Validator {
            name: n.id.clone(),
            key: n.key.public(),
            stake: *stake,
        })
        .collect();
    if plan.offline {
        validators.push(Validator {
            name: "offline".into(),
            key: offline_key().public(),
            stake: plan.stakes[world.nodes.len()],
        });
    }
    let mut settings = serde_json::Map::new();
    settings.insert("block_interval_ms".into(), plan.block_interval_ms.into());
    settings.insert("round_timeout_ms".into(), plan.round_timeout_ms.into());
    let mut spec = GenesisSpec::pow(0);
    spec.name = name.into();
    spec.finality_depth = 3;
    spec.max_records_per_block = 16;
    spec.created = Timestamp::from_millis(START_MS).expect("valid");
    spec.consensus = crate::ledger::consensus::new_params(
        "pos",
        &ModeOptions {
            validators,
            settings,
            ..ModeOptions::default()
        },
    )
    .expect("valid params");
    Genesis::new(spec).expect("valid genesis")
}

/// `block` again with its timestamp 1 ms later: same slot, another hash, validly signed.
fn twin(genesis: &Genesis, key: &NodeKey, block: &Block) -> Block {
    let consensus = block.consensus.clone().expect("a pos block");
    BlockTemplate {
        index: block.index,
        previous_hash: block.previous_hash,
        timestamp: Timestamp::from_millis(block.timestamp.millis() + 1).expect("valid"),
        difficulty: 0,
        records: block.records().to_vec(),
        producer: key.public(),
        seal: PosBlock::seal(&consensus),
        consensus: Some(consensus),
    }
    .finish(0, key, &genesis.id())
}

impl World {
    pub(super) fn is_equivocator(&self, n: usize) -> bool {
        self.plan.pos.as_ref().and_then(|p| p.equivocator) == Some(n)
    }

    /// The equivocator's publication: one block to the even nodes and cabinets, its twin to
    /// the odd ones.
    pub(super) fn equivocate(&mut self, n: usize, block: Block) {
        let group = Some(self.nodes[n].group);
        let other = twin(&self.genesis, &self.nodes[n].key, &block);
        self.twins += 1;
        self.log(&format!(
            "{} equivocates at #{}: {} and {}",
            self.nodes[n].id,
            block.index,
            block.hash.short(),
            other.hash.short()
        ));
        for m in 0..self.nodes.len() {
            if m != n {
                let b = if m % 2 == 0 { &block } else { &other };
                self.send(group, To::Node(m, Event::Block(b.clone())));
            }
        }
        for c in 0..self.cabinets.len() {
            let b = if c % 2 == 0 { &block } else { &other };
            let header = HeaderMessage {
                chain: self.genesis.id(),
                header: b.header(),
            };
            self.send(group, To::Cabinet(c, CabinetMsg::Header(header)));
            if b.records().iter().any(|r| r.cabinet == self.cabinets[c].id) {
                self.send(group, To::Cabinet(c, CabinetMsg::Block(b.clone())));
            }
        }
    }

    /// A Byzantine peer under pos: a block by a validator that is not the leader, a block with
    /// a forged signature, one of another genesis, mode messages forged or for another chain,
    /// and evidence that proves nothing.
    pub(super) fn lie_pos(&mut self) {
        let Some(victim) = (0..self.nodes.len()).find(|&n| self.nodes[n].engine.is_some()) else {
            return;
        };
        let head = self.nodes[victim]
            .engine
            .as_ref()
            .expect("live")
            .store()
            .head()
            .clone();
        let pos = Pos::from_params(
            &self.genesis.consensus.params(),
            self.genesis.finality_depth,
            self.genesis.id(),
        )
        .expect("valid");
        let height = head.index + 1;
        let leader = pos.leader(height, 0, &pos.offenders_of(&head)).key;
        // A validator whose turn it is not, signing anyway (the liar holds its key).
        let usurper = self
            .nodes
            .iter()
            .map(|n| n.key.clone())
            .find(|k| k.public() != leader)
            .unwrap_or_else(offline_key);
        let obj = PosBlock {
            round: 0,
            offenders: pos.offenders_of(&head),
            evidence: vec![],
        }
        .to_map();
        let ts = Timestamp::from_millis(self.now.max(pos.earliest(&head, 0))).expect("valid");
        let make = |g: &Genesis, parent: &crate::ledger::Header, key: &NodeKey| {
            BlockTemplate {
                index: parent.index + 1,
                previous_hash: parent.hash,
                timestamp: ts,
                difficulty: 0,
                records: vec![],
                producer: key.public(),
                seal: PosBlock::seal(&obj),
                consensus: Some(obj.clone()),
            }
            .finish(0, key, &g.id())
        };
        let wrong_leader = make(&self.genesis, &head, &usurper);
        let mut forged = make(&self.genesis, &head, &usurper);
        forged.signature.0[5] ^= 1;
        let foreign = make(&self.other_genesis, &self.other_genesis.header(), &usurper);
        let mut body = serde_json::Map::new();
        body.insert("type".into(), "evidence".into());
        body.insert(
            "a".into(),
            serde_json::to_value(wrong_leader.header()).expect("json"),
        );
        body.insert(
            "b".into(),
            serde_json::to_value(wrong_leader.header()).expect("json"),
        );
        let tag = self.genesis.consensus.message_tag();
        let bogus_evidence = ModeMessage::sign(&usurper, tag, self.genesis.id(), body.clone());
        let mut forged_msg = bogus_evidence.clone();
        forged_msg.sig.0[0] ^= 1;
        let other_chain = ModeMessage::sign(&usurper, tag, self.other_genesis.id(), body);
        for n in 0..self.nodes.len() {
            for b in [&wrong_leader, &forged, &foreign] {
                self.send(None, To::Node(n, Event::Block(b.clone())));
            }
            for m in [&bogus_evidence, &forged_msg, &other_chain] {
                self.send(None, To::Node(n, Event::Mode(m.clone())));
            }
        }
        for c in 0..self.cabinets.len() {
            for b in [&wrong_leader, &forged] {
                let header = HeaderMessage {
                    chain: self.genesis.id(),
                    header: b.header(),
                };
                self.send(None, To::Cabinet(c, CabinetMsg::Header(header)));
            }
        }
    }

    /// After [`World::check`]: no honest validator is recorded as an offender; returns 1 when
    /// the equivocator's offence is recorded on the final chain.
    pub(super) fn check_offenders(&self) -> u64 {
        let store = self.nodes[0].engine.as_ref().expect("restarted").store();
        let pos = Pos::from_params(
            &self.genesis.consensus.params(),
            self.genesis.finality_depth,
            self.genesis.id(),
        )
        .expect("valid");
        let offenders = pos.offenders_of(store.head());
        let cheat = self
            .plan
            .pos
            .as_ref()
            .and_then(|p| p.equivocator)
            .map(|n| self.nodes[n].key.public());
        if let Some(k) = offenders.iter().find(|k| Some(**k) != cheat) {
            let who = self
                .nodes
                .iter()
                .find(|n| n.key.public() == *k)
                .map_or("?", |n| n.id.as_str());
            self.fail(&format!("honest validator {who} recorded as an offender"));
        }
        u64::from(cheat.is_some_and(|c| offenders.contains(&c)))
    }
}

#[test]
fn pos_every_window_lands_exactly_once_on_one_head_over_1000_seeds() {
    let o: Outcome = super::run_seeds(0, super::seeds(1000), true);
    assert!(o.reorgs > 0, "no reorg in any seed: nothing was exercised");
    assert!(o.twins > 0, "the equivocator never equivocated");
    assert!(
        o.recorded > 0,
        "no equivocation was ever recorded on the final chain"
    );
    eprintln!(
        "pos simulation: {} reorgs; {} twin blocks; offence recorded in {} runs; worst settle {} ms",
        o.reorgs, o.twins, o.recorded, o.settle
    );
}
