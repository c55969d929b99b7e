//! Runs the broker on 127.0.0.1:PORT (first argument, default 1883) until Ctrl-C; for manual
//! checks with mosquitto clients. Logs go to stderr (`RUST_LOG` filters them).

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let port: u16 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(1883);
    let config = wattchain_broker::BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        ..Default::default()
    };
    let broker = wattchain_broker::start(config).await?;
    println!("listening on {}", broker.url());
    tokio::signal::ctrl_c().await?;
    broker.shutdown().await;
    Ok(())
}
