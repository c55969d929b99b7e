//! The miner as the publisher uses it: blocking, on its own threads, stoppable from outside.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use wattchain::bench::mine::{self, Method};
use wattchain::ledger::pow::Midstate;
use wattchain::ledger::{BlockTemplate, Engine, Hash32, HeaderPrefix, Miner, Timestamp};

/// Generous bound: cancellation is polled every ~1k trials, far below this.
const BOUND: Duration = Duration::from_secs(10);

#[test]
fn cancelling_from_another_thread_stops_an_impossible_search() {
    let cancel = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let miner_cancel = Arc::clone(&cancel);
    let worker = std::thread::spawn(move || {
        let prefix = HeaderPrefix::new(1, 256, &Hash32([7; 32]), &Hash32([3; 32]), 0);
        started_tx.send(()).expect("test alive");
        let result = Miner::new(2).mine(&prefix, 256, &miner_cancel);
        done_tx.send(result).expect("test alive");
    });
    started_rx
        .recv_timeout(BOUND)
        .expect("miner thread started");
    // Nothing can satisfy 256 zero bits, so only the cancel flag can end the search.
    assert!(done_rx.try_recv().is_err());
    cancel.store(true, Ordering::Relaxed);
    let result = done_rx
        .recv_timeout(BOUND)
        .expect("miner returned after cancel");
    assert_eq!(result, None);
    worker.join().expect("miner thread exits cleanly");
}

#[tokio::test]
async fn mining_inside_spawn_blocking_returns_a_block_meeting_its_difficulty() {
    let genesis = BlockTemplate::genesis(10, Timestamp::from_millis(1_000).expect("valid"))
        .expect("template");
    let cancel = Arc::new(AtomicBool::new(false));
    let task_cancel = Arc::clone(&cancel);
    let task = tokio::task::spawn_blocking(move || genesis.mine(&Miner::all_cores(), &task_cancel));
    let block = tokio::time::timeout(BOUND, task)
        .await
        .expect("mined within the bound")
        .expect("task did not panic")
        .expect("not cancelled");
    assert_eq!(block.computed_hash(), block.hash);
    assert!(block.hash.leading_zero_bits() >= 10);
}

#[tokio::test]
async fn an_async_shutdown_cancels_mining_in_spawn_blocking() {
    let template = BlockTemplate::genesis(256, Timestamp::from_millis(0).expect("valid"))
        .expect("256 is the maximum, never reached in practice");
    let cancel = Arc::new(AtomicBool::new(false));
    let task_cancel = Arc::clone(&cancel);
    let task = tokio::task::spawn_blocking(move || template.mine(&Miner::new(2), &task_cancel));
    cancel.store(true, Ordering::Relaxed);
    let outcome = tokio::time::timeout(BOUND, task)
        .await
        .expect("returned within the bound")
        .expect("task did not panic");
    assert!(outcome.is_none());
}

/// The engines this CPU can run, found independently of the miner's own detection: the
/// kernel's CPU flags (`/proc/cpuinfo`, which also drops AVX-512 when the OS does not save its
/// registers), else std's run-time detection. The portable engine runs everywhere.
fn cpu_engines() -> Vec<Engine> {
    let flags: Option<Vec<String>> =
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("flags"))
                    .map(|l| l.split_whitespace().map(str::to_string).collect())
            });
    let has = |flag: &str| match &flags {
        Some(flags) => flags.iter().any(|f| f == flag),
        #[cfg(target_arch = "x86_64")]
        None => match flag {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            _ => false,
        },
        #[cfg(not(target_arch = "x86_64"))]
        None => false,
    };
    let mut engines = vec![Engine::Portable];
    if cfg!(target_arch = "x86_64") && has("avx2") {
        engines.push(Engine::Avx2);
    }
    if cfg!(target_arch = "x86_64") && has("avx512f") {
        engines.push(Engine::Avx512);
    }
    engines
}

/// The engines a test runs: every one the miner supports here, which must be every one the
/// CPU has (a SIMD engine silently skipped would leave its unsafe code untested on a machine
/// that runs it). Printed, so a CI log says which engines ran (`--nocapture` shows it).
fn supported_engines() -> Vec<Engine> {
    let engines: Vec<Engine> = Engine::ALL
        .into_iter()
        .filter(|e| e.is_supported())
        .collect();
    let cpu = cpu_engines();
    let names = |es: &[Engine]| es.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ");
    println!(
        "engines exercised: {} (the CPU has: {})",
        names(&engines),
        names(&cpu)
    );
    for engine in &cpu {
        assert!(
            engines.contains(engine),
            "the CPU supports the {engine} engine but the miner does not offer it, so it would not be exercised"
        );
    }
    engines
}

/// The textbook hash of `prefix || nonce`, the reference every engine must reproduce.
fn reference(prefix: &HeaderPrefix, nonce: u64) -> [u8; 32] {
    Sha256::digest(prefix.header(nonce)).into()
}

/// Checks `cases` random (prefix, nonce) pairs per supported engine against plain sha2;
/// returns how many each engine hashed.
fn differential(seed: u64, cases: usize) -> Vec<(Engine, usize)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut exercised = Vec::new();
    for engine in supported_engines() {
        let mut checked = 0;
        while checked < cases {
            let mut bytes = [0u8; 88];
            rng.fill(&mut bytes[..]);
            let prefix = HeaderPrefix(bytes);
            let hi: u32 = rng.random();
            // Lanes hold unrelated low words, not just consecutive ones the miner uses.
            let lows: Vec<u32> = (0..engine.lanes()).map(|_| rng.random()).collect();
            let hashes = Midstate::new(&prefix)
                .hash_lanes(engine, hi, &lows)
                .expect("supported engine");
            for (low, hash) in lows.iter().zip(&hashes) {
                let nonce = u64::from(hi) << 32 | u64::from(*low);
                assert_eq!(
                    *hash,
                    reference(&prefix, nonce),
                    "seed {seed}, engine {engine}, prefix {prefix:?}, nonce {nonce:#x}"
                );
            }
            checked += hashes.len();
        }
        exercised.push((engine, checked));
    }
    exercised
}

#[test]
fn every_engine_matches_sha2_on_100k_random_prefixes_and_nonces() {
    let exercised = differential(0x00c0_ffee, 100_000);
    println!("hashed per engine: {exercised:?}");
    for engine in cpu_engines() {
        assert!(
            exercised.iter().any(|&(e, n)| e == engine && n >= 100_000),
            "{engine} was not exercised: {exercised:?}"
        );
    }
}

/// The long fuzz run: `cargo test --release --test ledger_pow -- --ignored`; set
/// `WATTCHAIN_FUZZ_SEED` to replay a reported failure.
#[test]
#[ignore = "long-running randomized differential test (minutes)"]
fn every_engine_matches_sha2_on_20m_random_cases() {
    let seed = std::env::var("WATTCHAIN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("WATTCHAIN_FUZZ_SEED={seed}");
    let exercised = differential(seed, 20_000_000);
    eprintln!("hashed per engine: {exercised:?}");
}

#[test]
fn engines_agree_with_sha2_at_the_edges_of_the_nonce_words() {
    let prefix = HeaderPrefix::new(u64::MAX, 256, &Hash32([0xff; 32]), &Hash32::ZERO, u64::MAX);
    let midstate = Midstate::new(&prefix);
    let lows: Vec<u32> = [0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX]
        .into_iter()
        .cycle()
        .take(21)
        .collect();
    for engine in supported_engines() {
        for hi in [0, 1, 0x8000_0000, u32::MAX] {
            // 21 nonces: more than one batch of any engine, with a short last batch.
            let hashes = midstate.hash_lanes(engine, hi, &lows).expect("supported");
            assert_eq!(hashes.len(), lows.len());
            for (low, hash) in lows.iter().zip(&hashes) {
                let nonce = u64::from(hi) << 32 | u64::from(*low);
                assert_eq!(*hash, reference(&prefix, nonce), "{engine} {nonce:#x}");
            }
        }
    }
}

#[test]
fn one_thread_finds_the_lowest_qualifying_nonce_with_every_engine() {
    let prefix = HeaderPrefix::new(5, 10, &Hash32([1; 32]), &Hash32([2; 32]), 1_700_000_000_000);
    // 10 bits: found in the first trials, on the calling thread. 17 bits: past the calling
    // thread's first share of the search, so the mining threads must continue where it
    // stopped, skipping and repeating nothing.
    for difficulty in [10, 17] {
        let expected = (0u64..)
            .find(|n| Hash32(reference(&prefix, *n)).leading_zero_bits() >= difficulty)
            .expect("some nonce qualifies");
        if difficulty == 17 {
            assert!(
                expected > 1 << 14,
                "the case reaches the threads: {expected}"
            );
        }
        for engine in supported_engines() {
            let miner = Miner::new(1).with_engine(engine).expect("supported");
            let mined = miner
                .mine(&prefix, difficulty, &AtomicBool::new(false))
                .expect("reachable");
            assert_eq!(mined.nonce, expected, "{engine} at {difficulty} bits");
            assert_eq!(mined.hash, reference(&prefix, expected), "{engine}");
            // Whole batches are hashed: the winner's batch and every one before it.
            let lanes = engine.lanes() as u64;
            assert_eq!(mined.trials, (expected / lanes + 1) * lanes, "{engine}");
        }
    }
}

#[test]
fn several_threads_find_a_nonce_that_plain_sha2_accepts_with_every_engine() {
    let prefix = HeaderPrefix::new(9, 13, &Hash32([4; 32]), &Hash32([6; 32]), 12_345);
    for engine in supported_engines() {
        for threads in [2, 3] {
            let miner = Miner::new(threads).with_engine(engine).expect("supported");
            let mined = miner
                .mine(&prefix, 13, &AtomicBool::new(false))
                .expect("reachable");
            let hash = prefix.hash(mined.nonce);
            assert_eq!(hash.0, mined.hash, "{engine} x{threads}");
            assert!(
                hash.leading_zero_bits() >= 13,
                "{engine} x{threads}: {hash}"
            );
        }
    }
}

#[test]
fn the_default_miner_uses_the_fastest_supported_engine_in_optimised_builds() {
    let best = Engine::best();
    assert!(best.is_supported());
    assert!(supported_engines()
        .iter()
        .all(|e| e.lanes() <= best.lanes()));
    let expected = if cfg!(debug_assertions) {
        Engine::Portable
    } else {
        best
    };
    assert_eq!(Engine::preferred(), expected);
    assert_eq!(Miner::new(1).engine(), expected);
}

#[test]
fn engine_names_round_trip_and_unknown_names_are_refused() {
    for engine in Engine::ALL {
        assert_eq!(engine.name().parse::<Engine>(), Ok(engine));
    }
    let err = "sha-ni".parse::<Engine>().expect_err("not an engine");
    assert!(err.to_string().contains("sha-ni"), "{err}");
}

#[test]
fn bench_counts_trials_of_every_method_consistently() {
    let methods = supported_engines()
        .into_iter()
        .map(|e| Method::Miner(Some(e)))
        .chain([Method::Naive]);
    for method in methods {
        let report = mine::run(method, 1, Duration::from_millis(50)).expect("supported");
        assert_eq!(report.threads, 1);
        assert!(report.trials > 0, "{method:?}");
        assert!(report.seconds >= 0.05, "the timer ends the run, not before");
        let rate = report.trials as f64 / report.seconds;
        assert!((report.trials_per_sec - rate).abs() <= rate * 1e-9);
        let json = serde_json::to_value(report).expect("serialises");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{json}");
        for key in ["threads", "seconds", "trials", "trials_per_sec"] {
            assert!(json[key].is_number(), "{key} in {json}");
        }
    }
}
