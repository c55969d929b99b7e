//! Front door versus direct-to-rumqttd throughput: `cargo bench -p wattchain-broker --bench
//! front_door [-- [auth] MESSAGES [PAYLOAD_BYTES]]` (defaults 20000 and 100); `auth` measures
//! the front door with a user logged in and its packets passing the permission gate. Prints
//! the report and its JSON.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; only numeric arguments are ours.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let messages = numbers.first().copied().unwrap_or(20_000);
    let payload = numbers.get(1).copied().unwrap_or(100);
    let authenticated = std::env::args().any(|arg| arg == "auth");
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
