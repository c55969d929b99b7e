//! A subscriber that cannot keep up loses only what its queue limit says, and the broker
//! counts every message it dropped; the publisher and a subscriber that keeps up lose
//! nothing. Both brokers are configured alike: 100 queued messages per session, 10 in flight.
//!
//! Drop counts come from `Broker::stats()` for ours and from mosquitto's
//! `$SYS/broker/publish/messages/dropped` (one slow client per broker, so the global count is
//! that client's).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::target::{both, Setup, Target};
use crate::common::*;

const QUEUE: usize = 100;
const INFLIGHT: usize = 10;

fn setup() -> Setup {
    Setup {
        mosquitto: "max_queued_messages 100\nmax_inflight_messages 10\nsys_interval 1\n",
        ours: Some(|config| {
            config.limits.max_queued_messages = QUEUE;
            config.limits.max_inflight = INFLIGHT as u16;
        }),
        ..Setup::default()
    }
}

/// What the broker says it dropped for `client`.
struct Drops {
    sys: Arc<AtomicU64>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Drops {
    fn drop(&mut self) {
        if let Some(task) = self.watcher.take() {
            task.abort();
        }
    }
}

impl Drops {
    async fn watch(t: &Target) -> Drops {
        let sys = Arc::new(AtomicU64::new(0));
        let mut task = None;
        if t.is_mosquitto() {
            let mut watcher = Raw::v4(t.addr(), "sys-drops").await;
            watcher
                .subscribe("$SYS/broker/publish/messages/dropped", 0)
                .await;
            let value = Arc::clone(&sys);
            // mosquitto publishes the count once a second, when it changed.
            task = Some(tokio::spawn(async move {
                loop {
                    for m in watcher.quiet(Duration::from_secs(1)).await {
                        let text = String::from_utf8_lossy(&m.payload).into_owned();
                        value.store(text.trim().parse().expect("a count"), Ordering::SeqCst);
                    }
                }
            }));
        }
        Drops { sys, watcher: task }
    }

    async fn of(&self, t: &Target, client: &str) -> u64 {
        match t.ours() {
            Some(broker) => {
                let stats = broker.stats().await;
                stats
                    .dropped_by_client
                    .iter()
                    .find(|(id, _)| id == client)
                    .map_or(0, |(_, n)| *n)
            }
            None => self.sys.load(Ordering::SeqCst),
        }
    }
}

async fn publish_all(t: &Target, count: usize) {
    let mut publisher = Raw::v4(t.addr(), "slow-pub").await;
    for i in 0..count {
        let code = publisher
            .publish(Message::new("slow/t", format!("m-{i}").as_bytes(), 1))
            .await;
        assert_eq!(code, 0, "the publisher loses nothing: PUBACK for m-{i}");
    }
    publisher.disconnect().await;
}

/// Reads `client` (acknowledging) until what it received plus what the broker says it
/// dropped for it accounts for all `count`, bounded; returns the received payloads.
/// `others`: drops the broker counted for other clients (mosquitto counts only a total).
async fn drain(
    t: &Target,
    drops: &Drops,
    client: &mut Raw,
    (id, others): (&str, u64),
    count: usize,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    let mut got: Vec<Vec<u8>> = Vec::new();
    loop {
        let dropped = drops.of(t, id).await.saturating_sub(others);
        if got.len() as u64 + dropped >= count as u64 {
            assert_eq!(
                got.len() as u64 + dropped,
                count as u64,
                "{id}: received + dropped"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: received {} + dropped {dropped} of {count}",
            got.len()
        );
        got.extend(
            client
                .quiet(Duration::from_millis(100))
                .await
                .into_iter()
                .map(|m| m.payload),
        );
    }
    got
}

async fn slow_subscriber_loses_only_its_queue_overflow_counted(t: &Target) {
    const COUNT: usize = 1000;
    let addr = t.addr();
    let drops = Drops::watch(t).await;
    let mut fast = Raw::v5(addr, "keeps-up").await;
    fast.subscribe("slow/t", 1).await;
    let mut connect = Connect::new(5, "stalled");
    connect.props = Props::new().u16(prop::RECEIVE_MAXIMUM, INFLIGHT as u16);
    let mut stalled = Raw::open(addr, &connect).await.0;
    stalled.subscribe("slow/t", 1).await;
    stalled.auto_ack = false;

    // The stalled subscriber reads nothing while all are published; the other one reads
    // until it has all, or nothing came for 500 ms after the last PUBACK.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let published = Arc::clone(&done);
    let fast_reading = tokio::spawn(async move {
        let mut got = Vec::with_capacity(COUNT);
        while got.len() < COUNT {
            let finished = published.load(Ordering::SeqCst);
            let more = fast.quiet(Duration::from_millis(500)).await;
            if more.is_empty() && finished {
                break;
            }
            got.extend(more.into_iter().map(|m| m.payload));
        }
        got
    });
    publish_all(t, COUNT).await;
    done.store(true, Ordering::SeqCst);
    let want: Vec<Vec<u8>> = (0..COUNT).map(|i| format!("m-{i}").into_bytes()).collect();
    let fast_got = fast_reading.await.expect("the fast subscriber's task");
    let fast_lost = (COUNT - fast_got.len()) as u64;
    if t.is_mosquitto() {
        // Deviation of mosquitto 2.0.11 (from this suite's requirement, not from the spec):
        // with a stalled subscriber on the topic, the subscriber keeping up loses messages
        // too (171 of 1000 in one run; none without the stalled one). They are counted.
        assert!(fast_got.iter().all(|p| want.contains(p)));
    } else {
        assert_eq!(fast_got, want, "the subscriber keeping up loses nothing");
    }

    stalled.auto_ack = true;
    let others = if t.is_mosquitto() { fast_lost } else { 0 };
    let got = drain(t, &drops, &mut stalled, ("stalled", others), COUNT).await;
    let dropped = COUNT - got.len();
    assert!(
        (QUEUE..=QUEUE + INFLIGHT).contains(&got.len()),
        "the stalled subscriber got its queue and in-flight window: {} (dropped {dropped})",
        got.len()
    );
    assert!(
        got.iter().all(|p| want.contains(p)),
        "only published messages"
    );
}
both!(
    slow_subscriber_loses_only_its_queue_overflow_counted,
    setup()
);

/// Offline: a persistent session queues exactly its limit; the rest is dropped, counted.
async fn offline_session_queues_exactly_its_limit(t: &Target) {
    const COUNT: usize = 300;
    let drops = Drops::watch(t).await;
    let mut connect = Connect::new(4, "offline-slow");
    connect.clean = false;
    let mut client = Raw::open(t.addr(), &connect).await.0;
    client.subscribe("slow/t", 1).await;
    client.disconnect().await;
    publish_all(t, COUNT).await;

    let (mut client, ack) = Raw::open(t.addr(), &connect).await;
    assert!(ack.session_present);
    let got = drain(t, &drops, &mut client, ("offline-slow", 0), COUNT).await;
    assert_eq!(
        (got.len(), COUNT - got.len()),
        (QUEUE, COUNT - QUEUE),
        "queued, dropped"
    );
    client.disconnect().await;
    Raw::v4(t.addr(), "offline-slow").await.disconnect().await;
}
both!(offline_session_queues_exactly_its_limit, setup());
