//! `wattchain bench mine`: trials per second of the real miner, the code path the publisher runs,
//! at a difficulty no hash meets, for a fixed time.
//!
//! For comparison it can also force an [`Engine`] (for instance the portable one) or run the
//! textbook method: serialise the whole header, hash it, hex it and compare strings per trial.

use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ledger::encoding::{Hash32, HeaderPrefix, HEADER_LEN, HEADER_MAGIC};
use crate::ledger::pow::{Engine, Miner, UnsupportedEngine};

/// Difficulty of the benchmark block: 256 zero bits, so the search only ends on the timer.
const NEVER: u32 = 256;

/// Header fields of the sample block the benchmark hashes (also spelled out in `naive_search`).
const INDEX: u64 = 1;
const PREVIOUS: [u8; 32] = [0x5a; 32];
const DATA: [u8; 32] = [0xa5; 32];
const TIMESTAMP_MS: u64 = 1_795_224_695_123;

/// Which search loop to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The publisher's miner with the given engine (`None`: its default, `Engine::preferred`).
    Miner(Option<Engine>),
    /// The textbook loop: serialise + SHA-256 the whole header + hex compare, per trial.
    Naive,
}

/// Hash rate measured by [`run`]; serialises as the `--json` line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MineReport {
    /// Threads used.
    pub threads: usize,
    /// Measured duration in seconds.
    pub seconds: f64,
    /// Trials (hashes computed) by all threads.
    pub trials: u64,
    /// `trials / seconds`.
    pub trials_per_sec: f64,
    /// The engine measured; `None` for the textbook method.
    #[serde(skip)]
    pub engine: Option<Engine>,
}

/// Why a benchmark could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BenchError {
    /// The forced engine needs an instruction set this CPU lacks.
    #[error(transparent)]
    Unsupported(#[from] UnsupportedEngine),
}

/// Measures `method` with `threads` threads (at least one) for `duration`.
pub fn run(method: Method, threads: usize, duration: Duration) -> Result<MineReport, BenchError> {
    let miner = match method {
        Method::Miner(Some(engine)) => Miner::new(threads).with_engine(engine)?,
        Method::Miner(None) | Method::Naive => Miner::new(threads),
    };
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let trials = std::thread::scope(|scope| {
        let cancel = &cancel;
        // The benchmark's own clock: the search has no other way to end.
        scope.spawn(move || {
            std::thread::sleep(duration);
            cancel.cancel();
        });
        match method {
            Method::Naive => naive_search(miner.threads(), cancel),
            Method::Miner(_) => miner.search(&bench_prefix(), NEVER, cancel).trials,
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    Ok(MineReport {
        threads: miner.threads(),
        seconds,
        trials,
        trials_per_sec: if seconds > 0.0 {
            trials as f64 / seconds
        } else {
            0.0
        },
        engine: match method {
            Method::Miner(_) => Some(miner.engine()),
            Method::Naive => None,
        },
    })
}

/// The header prefix of the sample block.
fn bench_prefix() -> HeaderPrefix {
    HeaderPrefix::new(INDEX, NEVER, &Hash32(PREVIOUS), &Hash32(DATA), TIMESTAMP_MS)
}

/// The textbook search loop, for comparison only; runs until `cancel`.
fn naive_search(threads: usize, cancel: &CancellationToken) -> u64 {
    let total = AtomicU64::new(0);
    let target = "0".repeat(64);
    std::thread::scope(|scope| {
        for first in 0..threads as u64 {
            let (total, target) = (&total, &target);
            scope.spawn(move || {
                let mut nonce = first;
                let mut trials = 0u64;
                while !cancel.is_cancelled() {
                    let digest = Sha256::digest(naive_header(nonce));
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    trials += 1;
                    if hex.starts_with(target.as_str()) {
                        break;
                    }
                    nonce = nonce.wrapping_add(threads as u64);
                }
                total.fetch_add(trials, Ordering::Relaxed);
            });
        }
    });
    total.into_inner()
}

/// The whole header serialised from its fields, as the textbook loop does on every trial.
fn naive_header(nonce: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(HEADER_MAGIC);
    header.extend_from_slice(&INDEX.to_be_bytes());
    header.extend_from_slice(&NEVER.to_be_bytes());
    header.extend_from_slice(&PREVIOUS);
    header.extend_from_slice(&DATA);
    header.extend_from_slice(&TIMESTAMP_MS.to_be_bytes());
    header.extend_from_slice(&nonce.to_be_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_naive_header_is_the_canonical_header() {
        // The textbook loop must hash the same bytes the miner does, or the comparison is unfair.
        assert_eq!(
            naive_header(7).as_slice(),
            bench_prefix().header(7).as_slice()
        );
    }
}
