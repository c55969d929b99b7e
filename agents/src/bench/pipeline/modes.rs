//! The bench's consensus mode: its genesis (under pos the nodes' keys are the validators,
//! stake 1 each) and what the final chain shows of the mode — block intervals, rounds, each
//! producer's share of the blocks against its stake share.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{PipelineBench, PipelineBenchError};
use crate::bench::modbus::Spread;
use crate::ledger::consensus::{self, ModeOptions, Validator};
use crate::ledger::{Block, Genesis, GenesisSpec};

/// The bench genesis for `bench.consensus`.
pub(super) fn genesis(bench: &PipelineBench, dir: &Path) -> Result<Genesis, PipelineBenchError> {
    let mut options = ModeOptions {
        difficulty: bench.difficulty,
        ..ModeOptions::default()
    };
    if bench.consensus != consensus::pow::MODE {
        for n in 1..=bench.nodes {
            let node_dir = dir.join(format!("node-{n}"));
            std::fs::create_dir_all(&node_dir).map_err(|source| PipelineBenchError::DataDir {
                path: node_dir.clone(),
                source,
            })?;
            let (key, _) = crate::node::settle_key(&node_dir)
                .map_err(|_| PipelineBenchError::Invalid("cannot create a node key"))?;
            options.validators.push(Validator {
                name: format!("node-{n}"),
                key: key.public(),
                stake: 1,
            });
        }
    }
    if let Some(d) = bench.block_interval {
        options
            .settings
            .insert("block_interval_ms".into(), (d.as_millis() as u64).into());
    }
    let mut spec = GenesisSpec::pow(bench.difficulty);
    spec.consensus = consensus::new_params(&bench.consensus, &options).map_err(|_| {
        PipelineBenchError::Invalid("--consensus: pow, pos or pbft (--block-interval is pos only)")
    })?;
    Genesis::new(spec).map_err(|_| {
        PipelineBenchError::Invalid("difficulty must be 0..=40, block interval 1 ms..=1 h")
    })
}

/// One producer's part of the final chain.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerShare {
    /// Its key, shortened.
    pub producer: String,
    /// Blocks it produced.
    pub blocks: u64,
    /// Its share of the blocks.
    pub share: f64,
    /// Its share of the stake (pos), of the votes (pbft: equal), 0 under pow.
    pub stake_share: f64,
}

/// What the final chain shows of the consensus mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainFigures {
    /// Time between consecutive blocks' timestamps (block 1, after the genesis, excluded).
    pub block_interval: Spread,
    /// Mean of the same, ms.
    pub mean_interval_ms: f64,
    /// Mean interval before the blocks of round 0 (their first leader delivered), ms.
    pub mean_round0_interval_ms: f64,
    /// The configured block interval (pos), ms.
    pub configured_interval_ms: Option<u64>,
    /// Blocks per round (pos: round 0 = the first leader delivered).
    pub rounds: BTreeMap<u64, u64>,
    /// Each producer's share.
    pub producers: Vec<ProducerShare>,
}

/// Reads node 1's chain file.
pub(super) fn figures(genesis: &Genesis, chain_file: &Path) -> ChainFigures {
    let text = std::fs::read_to_string(chain_file).unwrap_or_default();
    let blocks: Vec<Block> = text
        .lines()
        .filter_map(|l| Block::from_json(l).ok())
        .collect();
    let mut intervals: Vec<Duration> = blocks
        .windows(2)
        .skip(1)
        .map(|p| Duration::from_millis(p[1].timestamp.millis() - p[0].timestamp.millis()))
        .collect();
    let mean = |d: &[Duration]| {
        if d.is_empty() {
            0.0
        } else {
            d.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1000.0 / d.len() as f64
        }
    };
    let mean_interval_ms = mean(&intervals);
    let round = |b: &Block| {
        b.consensus
            .as_ref()
            .and_then(|c| c.get("round"))
            .and_then(|r| r.as_u64())
    };
    let round0: Vec<Duration> = blocks
        .windows(2)
        .skip(1)
        .filter(|p| round(&p[1]).is_some_and(|r| r == 0))
        .map(|p| Duration::from_millis(p[1].timestamp.millis() - p[0].timestamp.millis()))
        .collect();
    let mut rounds = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for b in blocks.iter().skip(1) {
        if let Some(r) = round(b) {
            *rounds.entry(r).or_default() += 1;
        }
        *counts.entry(b.producer.to_hex()).or_default() += 1;
    }
    let params = genesis.consensus.params();
    // PBFT genesis lists no stakes: one vote each, so equal shares.
    let staked = genesis.consensus.mode() == consensus::pos::MODE;
    let stakes: BTreeMap<String, u64> = consensus::ValidatorSet::from_params(&params, staked)
        .map(|set| set.iter().map(|v| (v.key.to_hex(), v.stake)).collect())
        .unwrap_or_default();
    let total_stake: u64 = stakes.values().sum();
    let total_blocks: u64 = counts.values().sum();
    let producers = counts
        .into_iter()
        .map(|(k, n)| ProducerShare {
            stake_share: stakes
                .get(&k)
                .map_or(0.0, |s| *s as f64 / total_stake.max(1) as f64),
            producer: k[..8].to_string(),
            blocks: n,
            share: n as f64 / total_blocks.max(1) as f64,
        })
        .collect();
    ChainFigures {
        block_interval: Spread::of(&mut intervals),
        mean_interval_ms,
        mean_round0_interval_ms: mean(&round0),
        configured_interval_ms: params.get("block_interval_ms").and_then(|v| v.as_u64()),
        rounds,
        producers,
    }
}
