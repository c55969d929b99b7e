//! The cabinet agent against the simulator and a real broker: what a user sees on the topics.

mod support;

use std::time::Duration;

use support::{fast_cabinet, start_cabinet, Recorder, TestBroker, TestSim};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wattchain::bus::{Bus, Incoming};
use wattchain::cabinet::{self, CabinetConfig, SourceConfig, SyntheticConfig};
use wattchain::ledger::{BlockTemplate, Hash32, Record, Timestamp};
use wattchain::messages::{Quadruplet, WindowTask};
use wattchain::sim::Fault;
use wattchain::topics::{Quantity, Route, Topics};

fn close(actual: f64, expected: f64, rel: f64, what: &str) {
    let tol = expected.abs().max(1.0) * rel;
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, expected {expected} ± {tol}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_quadruplets_follow_the_physics_of_r_rl_and_rc_loads() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let sim = TestSim::start(false, 1).await;
    let rec = Recorder::start(&url, "rec-physics").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_cabinet(&url, fast_cabinet("c1", sim.addr, dir.path().into())).await;

    // (loads switched on, what the physics says about reactive power)
    type Case = (&'static [usize], fn(f64) -> bool);
    let cases: [Case; 3] = [
        (&[1, 3], |pr| (pr - -6.0).abs() < 0.01), // pure R: only the no-load offset
        (&[4], |pr| pr > 100.0),                  // R-L: inductive, positive
        (&[6], |pr| pr < -100.0),                 // R-C: capacitive, negative
    ];
    for (loads, pr_sign) in cases {
        for load in 1..=7 {
            sim.sim.set_load(load, loads.contains(&load)).unwrap();
        }
        let expected = sim.sim.expected();
        // Only quads read after the switch count: wait for the first one that matches.
        rec.wait_until(&format!("a quad for loads {loads:?}"), |seen| {
            seen.quads
                .values()
                .rev()
                .take(1)
                .any(|q| (q.i - expected.i).abs() < 1e-3)
        })
        .await;
        let q: Quadruplet = rec.with(|s| s.quads.values().next_back().cloned().unwrap());
        close(q.u, expected.u, 1e-4, "U");
        close(q.i, expected.i, 1e-4, "I");
        close(q.pa, expected.pa, 1e-4, "PA");
        close(q.pr, expected.pr, 1e-4, "PR");
        assert!(pr_sign(q.pr), "loads {loads:?}: PR {}", q.pr);
        assert!(q.pa > 100.0, "loads {loads:?} draw real power: {}", q.pa);
    }
    agent.stop().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_hold_exactly_their_quads_and_ids_continue_across_a_restart() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let sim = TestSim::start(true, 2).await;
    sim.sim.set_load(2, true).unwrap();
    let rec = Recorder::start(&url, "rec-windows").await;
    let dir = tempfile::tempdir().unwrap();

    let first = start_cabinet(&url, fast_cabinet("c1", sim.addr, dir.path().into())).await;
    rec.wait_until("3 windows", |s| s.windows("c1").len() >= 3)
        .await;
    first.stop().await.unwrap();
    let before = rec.with(|s| s.windows("c1").keys().max().copied().unwrap());

    let second = start_cabinet(&url, fast_cabinet("c1", sim.addr, dir.path().into())).await;
    rec.wait_until("3 more windows", |s| {
        s.windows("c1").keys().max().copied().unwrap() >= before + 3
    })
    .await;
    second.stop().await.unwrap();

    rec.with(|s| {
        let windows = s.windows("c1");
        let ids: Vec<u64> = windows.keys().copied().collect();
        let expected: Vec<u64> = (0..=*ids.last().unwrap()).collect();
        assert_eq!(
            ids, expected,
            "window ids are contiguous across the restart"
        );
        let mut seqs_seen = std::collections::HashSet::new();
        let last = *windows.keys().last().unwrap();
        for (id, tasks) in &windows {
            if *id == last && tasks.len() < 4 {
                // Cut just as the agent stopped: the rest of it is still in the outbox, which
                // the next start re-publishes (the restart above proves it for window `before`).
                continue;
            }
            assert_eq!(tasks.len(), 4, "window {id} has all four quantities");
            for t in tasks {
                assert_eq!(t.values.len(), 4, "window {id} has N values");
                for (k, v) in t.values.iter().enumerate() {
                    let seq = t.first_seq + k as u64;
                    let quad = s
                        .quads
                        .get(&("c1".to_string(), seq))
                        .unwrap_or_else(|| panic!("quad {seq} of window {id} was published"));
                    assert_eq!(
                        *v,
                        quad.value(t.quantity),
                        "window {id} {} seq {seq}",
                        t.quantity
                    );
                    if t.quantity == Quantity::U {
                        assert!(seqs_seen.insert(seq), "sample {seq} is in two windows");
                    }
                }
            }
        }
    });
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_plc_is_reported_in_the_status_and_acquisition_resumes() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let sim = TestSim::start(true, 3).await;
    let rec = Recorder::start(&url, "rec-faults").await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_cabinet(&url, fast_cabinet("c1", sim.addr, dir.path().into())).await;
    let status = Topics::default().cabinet_status("c1");
    let quads = |rec: &Recorder| rec.with(|s| s.quads.len());

    rec.wait_until("first quads", |s| s.quads.len() >= 3).await;
    for (fault, expect) in [
        (Fault::Exception(4), "exception 4"),
        (Fault::Stall, "timed out"),
        (Fault::Close, "transport"),
    ] {
        sim.sim.set_fault(fault);
        rec.wait_until(&format!("status naming {expect}"), |s| {
            s.last_status(&status).is_some_and(|v| {
                v["modbus"] == "error"
                    && v["state"] == "online"
                    && v["last_error"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase().contains(expect))
            })
        })
        .await;
        sim.sim.set_fault(Fault::None);
        let n = quads(&rec);
        rec.wait_until(&format!("quads again after {expect}"), |s| {
            s.quads.len() >= n + 3 && s.last_status(&status).is_some_and(|v| v["modbus"] == "ok")
        })
        .await;
    }
    assert!(
        !agent.task.is_finished(),
        "the agent never exits because of the PLC"
    );
    let stats = agent.stop().await.unwrap();
    assert!(stats.modbus_errors >= 3);
    broker.stop().await;
}

fn commit_block(cabinet: &str, window: u64, tasks: &[wattchain::messages::WindowTask]) -> Vec<u8> {
    let digest = |q: Quantity| {
        Hash32::from_hex(&tasks.iter().find(|t| t.quantity == q).unwrap().digest).unwrap()
    };
    let record = Record {
        cabinet: cabinet.into(),
        window,
        from: tasks[0].from.clone(),
        to: tasks[0].to.clone(),
        n: tasks[0].values.len() as u32,
        averages: wattchain::ledger::Averages {
            u: 1.0,
            i: 1.0,
            pa: 1.0,
            pr: 1.0,
        },
        digests: wattchain::ledger::Digests {
            u: digest(Quantity::U),
            i: digest(Quantity::I),
            pa: digest(Quantity::PA),
            pr: digest(Quantity::PR),
        },
    };
    let template = BlockTemplate {
        index: 1,
        previous_hash: Hash32::ZERO,
        timestamp: Timestamp::now(),
        difficulty: 0,
        records: vec![record],
    };
    template.seal(0).to_json().into_bytes()
}

/// Deadline behaviour on a virtual clock: the cabinet with its real outbox and a synthetic
/// meter, on the in-memory bus, under `tokio::time::pause` — no real-time deadline racing a
/// commit.
#[tokio::test(start_paused = true)]
async fn a_window_is_republished_when_its_deadline_passes_and_a_committed_one_never() {
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_secs(30);
    let config = CabinetConfig {
        period: Duration::from_millis(100),
        window: 4,
        commit_deadline: deadline,
        // Eight readings: windows 0 and 1, then nothing new.
        source: SourceConfig::Synthetic(SyntheticConfig::new(10.0, Some(8))),
        ..CabinetConfig::new("c1", "127.0.0.1:9".parse().unwrap(), dir.path().into())
    };
    let (bus, mut peer) = Bus::memory(64);
    let (status_bus, _status) = Bus::memory(64);
    let stop = CancellationToken::new();
    let agent = tokio::spawn(cabinet::run(config, bus, status_bus, stop.clone()));
    let topics = Topics::default();
    let window_u = topics.window("c1", Quantity::U);
    let mut first_published = std::collections::HashMap::new();
    let mut tasks0 = Vec::new();
    // (window, virtual time since its first publication) of every re-publication.
    let mut republished = Vec::new();
    while republished.is_empty() {
        let out = peer.published.recv().await.expect("the agent publishes");
        let Some(Route::Window { .. }) = topics.parse(&out.topic) else {
            continue;
        };
        let task: WindowTask = serde_json::from_slice(&out.payload).unwrap();
        if task.window == 0 {
            tasks0.push(task.clone());
        }
        if out.topic != window_u {
            continue;
        }
        match first_published.get(&task.window) {
            None => {
                first_published.insert(task.window, Instant::now());
            }
            Some(first) => republished.push((task.window, Instant::now() - *first)),
        }
        if task.window == 1 && first_published.len() == 2 && tasks0.len() == 4 {
            // Window 0 is committed by a block, as the publisher would, at once.
            let block = commit_block("c1", 0, &tasks0);
            peer.deliver
                .send(Incoming {
                    topic: topics.commit("c1"),
                    payload: block.into(),
                })
                .await
                .unwrap();
        }
    }
    assert_eq!(republished.len(), 1);
    let (window, after) = republished[0];
    assert_eq!(window, 1, "the committed window 0 is never re-published");
    assert!(
        after >= deadline && after < deadline + Duration::from_millis(200),
        "re-published {after:?} after its first publication, deadline {deadline:?}"
    );
    stop.cancel();
    let stats = agent.await.unwrap().unwrap();
    assert_eq!(
        (stats.windows, stats.committed, stats.republished),
        (2, 1, 1)
    );
}

/// A restart re-publishes, at once, every window its journal still holds, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_windows_are_republished_at_once_after_a_restart() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let sim = TestSim::start(true, 4).await;
    let rec = Recorder::start(&url, "rec-outbox").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_cabinet("c1", sim.addr, dir.path().into());
    // No deadline falls within the test: only the restart re-publishes.
    config.commit_deadline = Duration::from_secs(600);
    let status = Topics::default().cabinet_status("c1");
    let outbox = |s: &support::Seen| s.last_status(&status).and_then(|v| v["outbox"].as_u64());

    let agent = start_cabinet(&url, config.clone()).await;
    rec.wait_until("windows 0 and 1", |s| s.windows("c1").len() >= 2)
        .await;
    // Cut the cabinet off its PLC: no new window, so the outbox count only moves on commits.
    sim.stop.cancel();
    rec.wait_until("the PLC unreachable", |s| {
        s.last_status(&status)
            .is_some_and(|v| v["modbus"] == "error")
    })
    .await;
    let held = rec.with(|s| outbox(s)).unwrap();
    let tasks0: Vec<_> = rec.with(|s| s.windows("c1")[&0].iter().map(|t| (*t).clone()).collect());
    let publisher = rumqttc_publisher(&url).await;
    publisher
        .publish(
            Topics::default().commit("c1"),
            rumqttc::QoS::AtLeastOnce,
            false,
            commit_block("c1", 0, &tasks0),
        )
        .await
        .unwrap();
    rec.wait_until("window 0 committed", |s| outbox(s) == Some(held - 1))
        .await;
    agent.stop().await.unwrap();
    rec.wait_until("offline status on a clean stop", |s| {
        s.last_status(&status)
            .is_some_and(|v| v["state"] == "offline" && v["outbox"].as_u64() == Some(held - 1))
    })
    .await;

    let published = |s: &support::Seen, w: u64| {
        s.tasks
            .iter()
            .filter(|t| t.window == w && t.quantity == Quantity::U)
            .count()
    };
    let before = rec.with(|s| published(s, 1));
    let agent = start_cabinet(&url, config).await;
    rec.wait_until("window 1 re-published at once after a restart", |s| {
        published(s, 1) > before
    })
    .await;
    assert_eq!(
        rec.with(|s| published(s, 0)),
        1,
        "the journal forgot the committed window"
    );
    agent.stop().await.unwrap();
    broker.stop().await;
}

async fn rumqttc_publisher(url: &wattchain::bus::BrokerUrl) -> rumqttc::AsyncClient {
    let mut o = rumqttc::MqttOptions::new("forger", url.host.clone(), url.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}
