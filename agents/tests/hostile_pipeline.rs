//! Hostile messages through a real broker while the whole pipeline runs: a few hundred mutated
//! payloads on each topic an agent subscribes to (window tasks, averages, blocks). Each agent
//! refuses exactly what its decoder refuses, dead-letters it with a reason, counts it, and
//! keeps serving: the cabinet's windows are still committed exactly once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use support::mutate::Mutator;
use support::{
    fast_cabinet, start_averager, start_cabinet, start_publisher, Recorder, TestBroker, TestSim,
};
use wattchain::averager::{self, AveragerConfig};
use wattchain::cabinet::finality::Finality;
use wattchain::ledger::{digest_hex, verify_file, Block, NodeKey, CHAIN_FILE};
use wattchain::messages::{decode, Average, WindowTask};
use wattchain::topics::{Quantity, Topics};

/// Hostile messages per topic kind.
const PER_KIND: usize = 300;
const FROM: &str = "2026-11-21T10:00:00.000Z";

fn task(cabinet: &str, window: u64, quantity: Quantity) -> WindowTask {
    let values = vec![230.0, 231.5, 229.0, 230.25];
    WindowTask {
        cabinet: cabinet.into(),
        window,
        quantity,
        first_seq: 0,
        digest: digest_hex(&values),
        values,
        from: FROM.into(),
        to: FROM.into(),
    }
}

/// A genuine block of another cabinet on the tests' chain, the base of the forged ones.
fn foreign_block_json() -> serde_json::Value {
    let g = support::genesis();
    let tasks: Vec<WindowTask> = Quantity::ALL.iter().map(|&q| task("zz", 1, q)).collect();
    let key = NodeKey::from_seed([0x77; 32]);
    let block = support::mine_blocks(
        &g,
        &g.header(),
        &key,
        vec![vec![support::record_of(&tasks)]],
    );
    serde_json::to_value(&block[0]).unwrap()
}

/// Whether a cabinet's light client refuses `payload` on its commit topic.
fn cabinet_refuses(payload: &[u8]) -> bool {
    let mut light = Finality::new("c1", "cabinet-c1", support::genesis());
    let held = BTreeMap::<u64, Vec<WindowTask>>::new();
    let Ok(block) = std::str::from_utf8(payload)
        .map_err(|_| ())
        .and_then(|t| Block::from_json(t).map_err(|_| ()))
    else {
        return true;
    };
    light.on_block(block, &held, 0).is_err()
}

fn deadletters_by_role(seen: &support::Seen) -> BTreeMap<String, usize> {
    let mut by_role = BTreeMap::new();
    for d in &seen.deadletters {
        let role = d["role"].as_str().unwrap_or("?").to_string();
        assert!(
            d["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "dead letter without a reason: {d}"
        );
        *by_role.entry(role).or_insert(0) += 1;
    }
    by_role
}

#[tokio::test]
async fn hostile_messages_on_every_agent_topic_are_dead_lettered_while_windows_keep_committing() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let topics = Topics::default();
    let sim = TestSim::start(true, 7).await;
    let rec = Recorder::start(&url, "recorder").await;
    let data = tempfile::tempdir().unwrap();
    let publisher = start_publisher(&url, &data.path().join("publisher")).await;
    let averager_agent = start_averager(&url, "averager-1").await;
    let mut config = fast_cabinet("c1", sim.addr, data.path().join("cabinet"));
    config.commit_deadline = Duration::from_secs(2);
    let cabinet = start_cabinet(&url, config).await;
    rec.wait_until("a first committed window", |s| !s.commits("c1").is_empty())
        .await;

    // What each agent's own decoder says about every hostile payload: the expected counts.
    let averager_config = AveragerConfig::new("averager-1", topics.clone());
    let mut m = Mutator::new(0x5eed_00a1, 64 * 1024);
    let mut messages = Vec::new();
    let (mut bad_tasks, mut bad_averages, mut bad_blocks) = (0, 0, 0);
    for i in 0..PER_KIND {
        // Window ids far above the cabinet's: a forgery never collides with a real window.
        let q = Quantity::ALL[i % 4];
        let base = serde_json::to_value(task("c1", 1_000_000 + i as u64, q)).unwrap();
        let (_, payload) = m.mutate(&base);
        let topic = topics.window("c1", q);
        bad_tasks += averager::answer(&averager_config, &topic, &payload).is_err() as usize;
        messages.push((topic, payload));

        let avg = Average::of(&task("c1", 2_000_000 + i as u64, q), "averager-x");
        let (_, payload) = m.mutate(&serde_json::to_value(&avg).unwrap());
        let topic = topics.average("c1", q);
        let refused = match decode::<Average>(&payload, 64 * 1024) {
            Ok(a) => a.cabinet != "c1" || a.quantity != q,
            Err(_) => true,
        };
        bad_averages += refused as usize;
        messages.push((topic, payload));

        let (_, payload) = m.mutate(&foreign_block_json());
        bad_blocks += cabinet_refuses(&payload) as usize;
        messages.push((topics.commit("c1"), payload));
    }
    eprintln!("refused by the decoders: {bad_tasks} tasks, {bad_averages} averages, {bad_blocks} blocks of {PER_KIND} each");
    assert!(bad_tasks > PER_KIND / 2 && bad_averages > PER_KIND / 2 && bad_blocks > PER_KIND / 2);

    let windows_before = rec.with(|s| s.windows("c1").len());
    let mut options = MqttOptions::new("attacker", url.host.clone(), url.port);
    options.set_max_packet_size(2 << 20, 2 << 20);
    let (attacker, mut events) = AsyncClient::new(options, 64);
    let pump = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for (topic, payload) in messages {
        tokio::time::timeout(
            support::WAIT,
            attacker.publish(topic, QoS::AtLeastOnce, false, payload),
        )
        .await
        .expect("the broker keeps taking the attacker's messages")
        .unwrap();
    }

    rec.wait_until("every refusal dead-lettered", |s| {
        let by_role = deadletters_by_role(s);
        by_role.get("averager") == Some(&bad_tasks)
            && by_role.get("cabinet") == Some(&bad_blocks)
            && by_role.get("node").copied().unwrap_or(0) >= bad_averages
    })
    .await;
    rec.wait_until("ten more windows committed after the attack", |s| {
        let commits = s.commits("c1");
        s.windows("c1").len() >= windows_before + 10
            && (0..(windows_before + 10) as u64).all(|w| commits.get(&w) == Some(&1))
    })
    .await;
    pump.abort();

    let cabinet_stats = cabinet.stop().await.unwrap();
    let averager_stats = averager_agent.stop().await;
    let publisher_stats = publisher.stop().await.unwrap();
    let letters = rec.with(deadletters_by_role);
    eprintln!("dead letters {letters:?}; cabinet {cabinet_stats:?}; averager {averager_stats:?}; publisher {publisher_stats:?}");
    assert_eq!(averager_stats.rejected, bad_tasks as u64);
    assert_eq!(cabinet_stats.rejected, bad_blocks as u64);
    assert_eq!(publisher_stats.rejected as usize, letters["node"]);
    assert!(publisher_stats.rejected as usize >= bad_averages);
    // Every window the cabinet produced is committed once, forged ones never (ids ≥ 1 000 000
    // are incomplete: a forged task set needs all four quantities of one window).
    let commits = rec.with(|s| s.commits("c1"));
    assert!(commits.values().all(|&n| n == 1), "{commits:?}");
    assert!(commits.keys().all(|&w| w < 1_000_000), "{commits:?}");
    verify_file(
        &support::genesis(),
        &data.path().join("publisher").join(CHAIN_FILE),
    )
    .expect("chain verifies");
    broker.stop().await;
}
