//! Front door versus direct-to-rumqttd throughput: `cargo bench -p wattchain-broker --bench
//! front_door [-- [auth] MESSAGES [PAYLOAD_BYTES]]` (defaults 20000 and 100); `auth` measures
//! the front door with a user logged in and its packets passing the permission gate. Prints
//! the report and its JSON.
//!
//! Broker memory against its bound: `cargo bench -p wattchain-broker --bench front_door --
//! memory [FILTERS [INDEX]]` (default 210 filters, every scenario) floods the default tuning
//! and the former 4 MiB × 4 one (`wattchain_broker::bench::memory::presets`: largest
//! messages, a stalled subscriber, small messages, FILTERS filters) and prints, per scenario,
//! the peak resident growth next to the bound. rumqttd cannot be stopped, so each scenario
//! runs in a child process (this binary, called with `memory-scenario INDEX FILTERS`).

use wattchain_broker::bench::memory::{self, MemoryScenario};
use wattchain_broker::RumqttdTuning;

/// Argument that makes this binary run one memory scenario and print its JSON report.
const CHILD: &str = "memory-scenario";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; only numeric arguments are ours.
    let numbers: Vec<usize> = args.iter().filter_map(|arg| arg.parse().ok()).collect();
    if args.iter().any(|arg| arg == CHILD) {
        let index = numbers.first().copied().unwrap_or(0);
        let filters = numbers.get(1).copied().unwrap_or(210);
        let scenario = scenarios(filters)
            .into_iter()
            .nth(index)
            .ok_or("no such memory scenario")?;
        let report = memory::run(&scenario).await?;
        println!("{report}");
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if args.iter().any(|arg| arg == "memory") {
        let filters = numbers.first().copied().unwrap_or(210);
        let only: Option<usize> = numbers.get(1).copied();
        for index in 0..scenarios(filters).len() {
            if only.is_some_and(|only| only != index) {
                continue;
            }
            let status = std::process::Command::new(std::env::current_exe()?)
                .args([CHILD, &index.to_string(), &filters.to_string()])
                .status()?;
            if !status.success() {
                return Err(format!("memory scenario {index} failed: {status}").into());
            }
        }
        return Ok(());
    }
    let messages = numbers.first().copied().unwrap_or(20_000);
    let payload = numbers.get(1).copied().unwrap_or(100);
    let authenticated = args.iter().any(|arg| arg == "auth");
    let report = if authenticated {
        wattchain_broker::bench::front_door_authenticated(messages, payload).await?
    } else {
        wattchain_broker::bench::front_door(messages, payload).await?
    };
    let mode = if authenticated { "auth on" } else { "auth off" };
    println!("{messages} QoS 1 messages of {payload} bytes, {mode}: {report}");
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The default tuning, then the tuning of a previous release for comparison.
fn scenarios(filters: usize) -> Vec<MemoryScenario> {
    let previous = RumqttdTuning {
        max_segment_size: 4 * 1024 * 1024,
        max_segment_count: 4,
        max_outgoing_packet_count: 200,
        ..RumqttdTuning::default()
    };
    let mut all = memory::presets(&RumqttdTuning::default(), "default", filters);
    all.extend(memory::presets(&previous, "4MiBx4", filters));
    all
}
