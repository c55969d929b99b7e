//! Hostile clients: random bytes, truncated packets, garbage after a valid
//! CONNECT, slow-loris CONNECTs and thousands of connections. After each attack a well-behaved
//! client must still be served; the thousands test reports connections held and RSS.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wattchain_broker::BrokerConfig;

/// splitmix64: a seeded byte source, so every failing input can be replayed.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on any thread of this test process (the engine runs in-process and a panic in
/// one of its connection tasks is otherwise invisible to the test).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // A failing assertion in another test of this binary is not a broker panic.
            let in_a_test = info.location().is_some_and(|l| l.file().contains("tests/"));
            if !in_a_test {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `bytes` (optionally half-closing) and waits, bounded, until the broker closes.
async fn closed_after(addr: SocketAddr, bytes: Vec<u8>, half_close: bool) -> Vec<u8> {
    let mut stream = raw_send(addr, &bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut out = Vec::new();
    // Reset by peer counts as closed too: only a hang fails.
    let _ = timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the broker closes a connection that sent no valid CONNECT");
    out
}

fn short_timeout_config() -> BrokerConfig {
    BrokerConfig {
        connect_timeout: Duration::from_secs(1),
        ..test_config()
    }
}

#[tokio::test]
async fn random_bytes_and_truncated_connects_are_closed_and_the_broker_keeps_serving() {
    let broker = start(short_timeout_config()).await;
    let addr = broker.local_addr();
    let mut watcher = TestClient::v4(addr, "watcher").await;
    watcher.subscribe("hostile/alive").await;
    let talker = TestClient::v5(addr, "talker").await;

    let mut rng = Bytes(0x5eed_b10c);
    let mut attacks = Vec::new();
    for i in 0..300 {
        let len = 1 + rng.below(2048) as usize;
        let mut bytes = rng.fill(len);
        // A third look like a CONNECT header, to get past the first byte.
        if i % 3 == 0 {
            bytes[0] = 0x10;
        }
        attacks.push(tokio::spawn(closed_after(addr, bytes, i % 2 == 0)));
    }
    for level in [4, 5] {
        let connect = connect_packet(level, "truncated", None);
        for cut in 1..connect.len() {
            let half = cut % 2 == 0;
            attacks.push(tokio::spawn(closed_after(
                addr,
                connect[..cut].to_vec(),
                half,
            )));
        }
    }
    let count = attacks.len();
    for a in attacks {
        let reply = a.await.expect("attack task");
        // Whatever came back is at most a CONNACK refusal, never a session.
        assert!(reply.is_empty() || reply[0] == 0x20, "reply {reply:02x?}");
    }
    talker.publish("hostile/alive", b"after-garbage").await;
    let (_, payload) = watcher.next_publish().await;
    assert_eq!(payload, b"after-garbage");
    eprintln!("{count} garbage/truncated connections closed");
    assert_broker_serves(addr, "after-garbage").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn garbage_after_a_valid_connect_never_takes_the_broker_down() {
    count_panics();
    let broker = start(short_timeout_config()).await;
    let addr = broker.local_addr();
    let mut watcher = TestClient::v4(addr, "watcher").await;
    watcher.subscribe("hostile/alive").await;
    let talker = TestClient::v4(addr, "talker").await;
    let mut rng = Bytes(0x5eed_9a7b);
    for round in 0..4 {
        let mut held = Vec::new();
        for i in 0..50 {
            let level = if i % 2 == 0 { 4 } else { 5 };
            let (code, mut stream) =
                raw_connack(addr, &connect_packet(level, &format!("g{round}-{i}"), None)).await;
            // A broker may refuse a CONNECT in the middle of this storm as busy (0x03 / 0x97):
            // a refusal, not a crash.
            // The promise under test is the well-behaved clients' round trip below.
            assert!(
                [0x00, 0x03, 0x97].contains(&code),
                "accepted or refused as busy, not {code:#x}"
            );
            let len = 1 + rng.below(4096) as usize;
            let _ = stream.write_all(&rng.fill(len)).await;
            held.push(stream);
        }
        talker
            .publish("hostile/alive", format!("round {round}").as_bytes())
            .await;
        let (_, payload) = watcher.next_publish().await;
        assert_eq!(payload, format!("round {round}").as_bytes());
        drop(held);
    }
    assert_broker_serves(addr, "after-post-connect-garbage").await;
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "nothing panicked in the broker"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn server_only_packets_after_connect_close_that_connection_without_a_panic() {
    count_panics();
    let broker = start(short_timeout_config()).await;
    let addr = broker.local_addr();
    // Packets only a server sends (CONNACK, AUTH with a body, SUBACK) must not reach a panic.
    for (level, packet) in [
        (5, vec![0x20, 2, 0, 0]),
        (5, vec![0xf0, 1, 0]),
        (5, vec![0x90, 3, 0, 1, 0]),
        (4, vec![0x20, 2, 0, 0]),
        (4, vec![0x00, 1, 0]),
    ] {
        let (code, mut stream) =
            raw_connack(addr, &connect_packet(level, "server-mimic", None)).await;
        assert_eq!(code, 0);
        stream.write_all(&packet).await.expect("write");
        read_to_close(&mut stream).await;
    }
    assert_broker_serves(addr, "after-server-only-packets").await;
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "nothing panicked in the broker"
    );
    broker.shutdown().await;
}

/// Sends `packet` one byte per `pace`; returns how many bytes went out before the broker closed.
async fn slow_loris(addr: SocketAddr, packet: Vec<u8>, pace: Duration) -> usize {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 64];
    for (sent, byte) in packet.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return sent;
        }
        tokio::select! {
            // The pace is the attack itself, not synchronisation.
            _ = tokio::time::sleep(pace) => {}
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return sent + 1,
                Ok(_) => panic!("the broker answered a CONNECT it never fully received"),
            },
        }
    }
    packet.len()
}

#[tokio::test]
async fn slow_loris_connects_are_cut_at_the_connect_timeout_while_a_client_is_served() {
    let broker = start(short_timeout_config()).await;
    let addr = broker.local_addr();
    let packet = connect_packet(4, "slow-loris-client-id-long-enough", None);
    let pace = Duration::from_millis(200);
    let attackers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slow_loris(addr, packet.clone(), pace)))
        .collect();
    // Served while the attackers are all still dribbling.
    assert_broker_serves(addr, "during-slow-loris").await;
    for a in attackers {
        let sent = timeout(WAIT, a)
            .await
            .expect("attacker cut in time")
            .unwrap();
        assert!(
            sent < packet.len(),
            "a slow-loris finished its CONNECT ({sent} bytes)"
        );
    }
    assert_broker_serves(addr, "after-slow-loris").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn thousands_of_connections_are_held_and_a_well_behaved_client_is_still_served() {
    let config = BrokerConfig {
        connect_timeout: Duration::from_secs(60),
        max_connections: 1000,
        ..test_config()
    };
    let broker = start(config).await;
    let addr = broker.local_addr();
    let rss_before = rss_kib();
    // Idle sockets that never send CONNECT: they hold no connection slot.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(
            timeout(WAIT, TcpStream::connect(addr))
                .await
                .expect("connect in time")
                .expect("connect"),
        );
    }
    // Sessions, each holding a slot.
    let mut sessions = Vec::new();
    for i in 0..900 {
        let (code, stream) =
            raw_connack(addr, &connect_packet(4, &format!("held-{i}"), None)).await;
        assert_eq!(code, 0, "session {i} accepted");
        sessions.push(stream);
    }
    let rss_held = rss_kib();
    assert_broker_serves(addr, "under-load").await;
    // The probe's two sessions end a moment after their DISCONNECTs: wait until they are gone.
    timeout(WAIT, async {
        while broker.stats().await.sessions > 900 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the probe's sessions end");
    // Beyond the limit the broker says so with a CONNACK instead of hanging or crashing.
    let mut over = Vec::new();
    for i in 0..150 {
        let (code, stream) =
            raw_connack(addr, &connect_packet(4, &format!("over-{i}"), None)).await;
        over.push((code, stream));
    }
    let refused = over.iter().filter(|(code, _)| *code == 0x03).count();
    assert_eq!(
        refused,
        over.len() - (1000 - 900),
        "accepted up to the limit, then refused"
    );
    eprintln!(
        "held {} idle sockets + {} sessions (+{} accepted, {refused} refused over the limit); \
         test-process RSS {rss_before} KiB -> {rss_held} KiB ({} KiB per connection)",
        idle.len(),
        sessions.len(),
        over.len() - refused,
        (rss_held.saturating_sub(rss_before)) / (idle.len() + sessions.len()) as u64
    );
    drop(over);
    drop(sessions);
    drop(idle);
    assert_broker_serves(addr, "after-load").await;
    broker.shutdown().await;
}

#[tokio::test]
async fn server_only_packets_from_an_authenticated_client_close_it_without_a_panic() {
    // With users configured, client packets go through the permission gate instead of the
    // plain framer: it must refuse the same packet types.
    count_panics();
    let dir = tempfile::tempdir().unwrap();
    let broker = start(config_with_roles(dir.path())).await;
    let addr = broker.local_addr();
    let login = Some(("watcher", "watcher-secret"));
    for (level, packet) in [
        (5, vec![0x20, 2, 0, 0]),
        (5, vec![0xf0, 1, 0]),
        (4, vec![0x00, 1, 0]),
    ] {
        let (code, mut stream) =
            raw_connack(addr, &connect_packet(level, "gated-mimic", login)).await;
        assert_eq!(code, 0, "the watcher logs in");
        stream.write_all(&packet).await.expect("write");
        read_to_close(&mut stream).await;
    }
    let (code, _stream) = raw_connack(addr, &connect_packet(4, "gated-after", login)).await;
    assert_eq!(code, 0, "the broker still admits clients");
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "nothing panicked in the broker"
    );
    broker.shutdown().await;
}
