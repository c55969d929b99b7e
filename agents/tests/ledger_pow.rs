//! The miner as the publisher uses it: blocking, on its own threads, stoppable from outside.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use wattchain::ledger::{bench, BlockTemplate, Hash32, HeaderPrefix, Miner, Timestamp};

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

#[test]
fn bench_counts_trials_of_both_code_paths_consistently() {
    for naive in [false, true] {
        let report = bench(1, Duration::from_millis(50), naive);
        assert_eq!(report.threads, 1);
        assert!(report.trials > 0, "naive={naive}");
        assert!(report.seconds >= 0.05, "the timer ends the run, not before");
        let rate = report.trials as f64 / report.seconds;
        assert!((report.trials_per_sec - rate).abs() <= rate * 1e-9);
        let json = serde_json::to_value(report).expect("serialises");
        assert_eq!(json["threads"], 1);
        assert!(json["trials_per_sec"].is_number());
    }
}
