//! The whole pipeline end to end — simulator, cabinet, averagers, publisher — on a real broker,
//! watched by an independent subscriber; with an averager killed or the publisher restarted
//! mid-run; on the embedded broker and on mosquitto.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    fast_cabinet, start_averager, start_cabinet, start_publisher, Recorder, Running, TestBroker,
    TestSim,
};
use wattchain::bus::QoS;
use wattchain::ledger::CHAIN_FILE;
use wattchain::ledger::{digest_hex, verify_file};
use wattchain::sim::Fault;
use wattchain::topics::Quantity;

/// What goes wrong during the run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Disruption {
    None,
    KillAverager,
    RestartPublisher,
}

/// Windows produced before the cabinet is cut off from its PLC and the pipeline drains.
const WINDOWS: u64 = 16;

fn python_verifier() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/verify_chain.py")
}

async fn run_pipeline(broker: TestBroker, disruption: Disruption) {
    let url = broker.url();
    let sim = TestSim::start(true, 42).await;
    for load in [1, 4, 6] {
        sim.sim.set_load(load, true).unwrap();
    }
    let rec = Recorder::start(&url, "recorder").await;
    let data = tempfile::tempdir().unwrap();
    let chain_dir = data.path().join("publisher");

    let mut publisher = Some(start_publisher(&url, &chain_dir).await);
    let mut averagers: Vec<Running<_>> = Vec::new();
    for n in 1..=3 {
        averagers.push(start_averager(&url, &format!("averager-{n}")).await);
    }
    let mut config = fast_cabinet("c1", sim.addr, data.path().join("cabinet"));
    config.commit_deadline = Duration::from_secs(2);
    config.quad_qos = QoS::AtLeastOnce;
    let cabinet = start_cabinet(&url, config).await;

    rec.wait_until("a third of the windows", |s| {
        s.windows("c1").len() as u64 >= WINDOWS / 3
    })
    .await;
    match disruption {
        Disruption::None => {}
        Disruption::KillAverager => {
            // A crash: the task dies wherever it is, with whatever it was doing.
            averagers.remove(0).task.abort();
        }
        Disruption::RestartPublisher => {
            publisher.take().unwrap().stop().await.unwrap();
            let produced = rec.with(|s| s.windows("c1").len());
            rec.wait_until("windows produced while the publisher is away", |s| {
                s.windows("c1").len() >= produced + 2
            })
            .await;
            publisher = Some(start_publisher(&url, &chain_dir).await);
        }
    }
    rec.wait_until("enough windows", |s| {
        s.windows("c1").len() as u64 >= WINDOWS
    })
    .await;
    // Cut the cabinet off its PLC: no new windows, but it keeps re-issuing uncommitted ones.
    sim.sim.set_fault(Fault::Exception(4));
    let last = rec.with(|s| *s.windows("c1").keys().max().unwrap());
    rec.wait_until("every window committed", |s| {
        let commits = s.commits("c1");
        (0..=last).all(|w| commits.contains_key(&w))
    })
    .await;
    // The cabinet's outbox drains too: it saw every commit.
    let status = wattchain::topics::Topics::default().cabinet_status("c1");
    rec.wait_until("the cabinet's outbox is empty", |s| {
        s.last_status(&status)
            .is_some_and(|v| v["outbox"] == 0 && v["next_window"] == last + 1)
    })
    .await;

    let cabinet_stats = cabinet.stop().await.unwrap();
    for a in averagers {
        a.stop().await;
    }
    let publisher_stats = publisher.take().unwrap().stop().await.unwrap();
    assert!(publisher_stats.mined > 0);

    rec.with(|s| {
        let commits = s.commits("c1");
        let ids: Vec<u64> = commits.keys().copied().collect();
        assert_eq!(
            ids,
            (0..=last).collect::<Vec<_>>(),
            "every window, nothing else"
        );
        assert!(
            commits.values().all(|&n| n == 1),
            "each window in exactly one block: {commits:?}"
        );

        let mut by_index = std::collections::BTreeMap::new();
        for b in &s.blocks {
            by_index.entry(b.index).or_insert(b);
        }
        for block in by_index.values() {
            for r in block.records() {
                let window = &s.windows("c1")[&r.window];
                let first_seq = window[0].first_seq;
                let quads: Vec<_> = (first_seq..first_seq + u64::from(r.n))
                    .map(|seq| {
                        s.quads
                            .get(&("c1".to_string(), seq))
                            .unwrap_or_else(|| panic!("quad {seq} was published"))
                    })
                    .collect();
                assert_eq!(r.n, 4);
                for (q, mean, digest) in [
                    (Quantity::U, r.averages.u, r.digests.u),
                    (Quantity::I, r.averages.i, r.digests.i),
                    (Quantity::PA, r.averages.pa, r.digests.pa),
                    (Quantity::PR, r.averages.pr, r.digests.pr),
                ] {
                    let values: Vec<f64> = quads.iter().map(|x| x.value(q)).collect();
                    let expected = values.iter().sum::<f64>() / values.len() as f64;
                    assert!(
                        (mean - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                        "window {} {q}: block says {mean}, quads say {expected}",
                        r.window
                    );
                    assert_eq!(
                        digest.to_hex(),
                        digest_hex(&values),
                        "window {} {q} digest",
                        r.window
                    );
                }
            }
        }
        // Each block reaches c1 on its own commit topic, and nothing else does.
        for (cabinet, block) in &s.commit_deliveries {
            assert_eq!(cabinet, "c1");
            assert!(
                block.records().iter().any(|r| &r.cabinet == cabinet),
                "block {} sent to a cabinet it does not concern",
                block.index
            );
        }
        let delivered: std::collections::BTreeSet<u64> =
            s.commit_deliveries.iter().map(|(_, b)| b.index).collect();
        let concerning: std::collections::BTreeSet<u64> = by_index
            .values()
            .filter(|b| !b.records().is_empty())
            .map(|b| b.index)
            .collect();
        assert_eq!(
            delivered, concerning,
            "every block with windows of c1 reaches c1"
        );

        let agents: std::collections::HashSet<&str> =
            s.averages.iter().map(|a| a.agent.as_str()).collect();
        assert!(agents.len() > 1, "work was shared: {agents:?}");
    });

    let chain = chain_dir.join(CHAIN_FILE);
    let summary =
        verify_file(&support::genesis(), &chain).expect("wattchain chain verify accepts the chain");
    let text = summary.to_string();
    assert!(text.contains("c1"), "{text}");
    let py = Command::new("python3")
        .arg(python_verifier())
        .arg(&chain)
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "scripts/verify_chain.py rejected a valid chain: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    if disruption == Disruption::RestartPublisher {
        assert!(
            cabinet_stats.republished > 0,
            "windows lost with the publisher came back through the cabinet's deadline"
        );
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_is_committed_exactly_once_with_the_averages_of_its_quads() {
    run_pipeline(TestBroker::embedded().await, Disruption::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_averager_mid_run_loses_no_window() {
    run_pipeline(TestBroker::embedded().await, Disruption::KillAverager).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_publisher_mid_run_continues_the_chain_without_loss_or_duplicates() {
    run_pipeline(TestBroker::embedded().await, Disruption::RestartPublisher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pipeline_runs_on_an_external_mosquitto_broker() {
    run_pipeline(TestBroker::mosquitto().await, Disruption::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_status_and_head_come_back_after_a_broker_restart() {
    // mosquitto without persistence forgets retained messages, as the embedded broker does.
    let port = support::free_port();
    let broker = TestBroker::mosquitto_on(port).await;
    let url = broker.url();
    let sim = TestSim::start(true, 5).await;
    let data = tempfile::tempdir().unwrap();
    let publisher = start_publisher(&url, &data.path().join("p")).await;
    let cabinet = start_cabinet(&url, fast_cabinet("c1", sim.addr, data.path().join("c"))).await;
    let rec = Recorder::start(&url, "before").await;
    rec.wait_until("the genesis head and a cabinet status", |s| {
        s.heads > 0 && !s.statuses.is_empty()
    })
    .await;
    drop(rec);

    broker.stop().await;
    let broker = TestBroker::mosquitto_on(port).await;
    // A newcomer after the restart still finds the head and the statuses.
    let rec = Recorder::start(&url, "after").await;
    let topics = wattchain::topics::Topics::default();
    rec.wait_until("retained cabinet, agent and head after the restart", |s| {
        s.last_status(&topics.cabinet_status("c1"))
            .is_some_and(|v| v["state"] == "online")
            && s.last_status(&topics.agent_status("publisher"))
                .is_some_and(|v| v["state"] == "online")
            && s.heads > 0
    })
    .await;
    cabinet.stop().await.unwrap();
    publisher.stop().await.unwrap();
    broker.stop().await;
}
