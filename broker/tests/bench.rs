//! The front-door and memory benches run end to end (no speed or size is asserted: that would
//! depend on the machine; the figures are reported by `cargo bench -p wattchain-broker --bench
//! front_door [-- memory]`), and the rumqttd behaviour the memory bound relies on holds.

use wattchain_broker::bench;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_both_paths_and_reports_them_as_json() {
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        bench::front_door(200, 100),
    )
    .await
    .expect("bench finishes")
    .expect("bench runs");

    assert!(report.direct_msgs_per_sec.is_finite() && report.direct_msgs_per_sec > 0.0);
    assert!(report.front_door_msgs_per_sec.is_finite() && report.front_door_msgs_per_sec > 0.0);
    let json: serde_json::Value = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["ratio"].as_f64(), Some(report.ratio));
    assert!(report.to_string().contains("ratio"));
}

#[tokio::test]
async fn bench_refuses_zero_messages() {
    assert!(bench::front_door(0, 100).await.is_err());
}

#[tokio::test]
async fn authenticated_bench_logs_in_and_passes_the_permission_gate() {
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        bench::front_door_authenticated(200, 100),
    )
    .await
    .expect("bench finishes")
    .expect("logged-in clients publish and subscribe through the gate");
    assert!(report.front_door_msgs_per_sec > 0.0);
}

/// A memory scenario small enough for a test: three filters, one stalled, 200-byte messages.
fn small_memory_scenario() -> bench::memory::MemoryScenario {
    bench::memory::MemoryScenario {
        name: "test".into(),
        tuning: wattchain_broker::RumqttdTuning::default(),
        filters: 3,
        stalled: 1,
        payload: 200,
        fill: 0.05,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bench_floods_every_filter_and_reports_peak_growth_next_to_the_bound() {
    let scenario = small_memory_scenario();
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        bench::memory::run(&scenario),
    )
    .await
    .expect("memory bench finishes")
    .expect("memory bench runs");

    // 5% of a log's capacity in 217-byte counted messages (4 + 13-byte topic + 200), plus one,
    // for each of the three filters.
    let tuning = &scenario.tuning;
    let capacity = (tuning.max_segment_size * tuning.max_segment_count) as f64;
    let per_filter = (capacity * 0.05 / 217.0).ceil() as u64 + 1;
    assert_eq!(report.messages, 3 * per_filter);
    assert!(report.peak_rss >= report.baseline_rss);
    assert_eq!(
        report.growth,
        report.peak_rss - report.baseline_rss,
        "growth is measured from the baseline"
    );
    assert!(report.bound.total > 0 && report.worst_case.total >= report.bound.total);
    let json: serde_json::Value = serde_json::to_value(&report).expect("serializes");
    assert_eq!(
        json["scenario"]["tuning"]["max_segment_count"],
        scenario.tuning.max_segment_count
    );
    assert!(report.to_string().contains("bound"));
}

#[tokio::test]
async fn memory_bench_refuses_more_stalled_subscribers_than_filters() {
    let scenario = bench::memory::MemoryScenario {
        stalled: 4,
        ..small_memory_scenario()
    };
    assert!(bench::memory::run(&scenario).await.is_err());
}

/// The bound counts a message larger than a whole segment as stored whole (the segment
/// overshoots), which is what rumqttd 0.20 does: it checks a segment's size before appending.
#[tokio::test]
async fn rumqttd_delivers_messages_larger_than_its_segments_whole() {
    use rumqttd::{Notification, RouterConfig};

    let config = rumqttd::Config {
        router: RouterConfig {
            max_connections: 10,
            max_outgoing_packet_count: 10,
            max_segment_size: 1024,
            max_segment_count: 1,
            ..RouterConfig::default()
        },
        ..rumqttd::Config::default()
    };
    let broker = rumqttd::Broker::new(config);
    let (mut sub_tx, mut sub_rx) = broker.link("segment-sub").expect("subscriber link");
    let (mut pub_tx, _pub_rx) = broker.link("segment-pub").expect("publisher link");
    sub_tx.subscribe("segment/big").expect("subscribe");

    let within = std::time::Duration::from_secs(10);
    tokio::time::timeout(within, async {
        loop {
            if let Ok(Some(Notification::DeviceAck(_))) = sub_rx.next().await {
                break;
            }
        }
    })
    .await
    .expect("SUBACK");

    for round in 0..3u8 {
        pub_tx
            .publish("segment/big", vec![round; 64 * 1024])
            .expect("publish");
        let payload = tokio::time::timeout(within, async {
            loop {
                if let Ok(Some(Notification::Forward(forward))) = sub_rx.next().await {
                    return forward.publish.payload;
                }
            }
        })
        .await
        .expect("message delivered");
        assert_eq!(payload.len(), 64 * 1024, "round {round}");
        assert!(payload.iter().all(|&b| b == round), "round {round}");
    }
}
