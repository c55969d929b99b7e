//! The front-door bench runs end to end (no speed is asserted: that would be a wall-clock
//! test; the figures are reported by `cargo bench -p wattchain-broker --bench front_door`).

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
