//! The web service's own MQTT session feeding the live view, and the chain follower: a block
//! or head on the bus (or [`WebConfig::chain_poll`] passing) makes it re-read the chain, and
//! every new block becomes a `block` event.

use std::sync::Arc;

use metrics::{counter, gauge};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::chain::ChainView;
use super::live::Live;
use super::WebConfig;
use crate::bus::{Bus, QoS};
use crate::messages::{decode, AgentStatus, Average, CabinetStatus, DeadLetter, Quadruplet};
use crate::metrics as m;
use crate::topics::{Route, Topics};

/// What the web service's session subscribes to: [`Topics::watch_filters`], quadruplets at
/// QoS 0 (a live view: a lost one is replaced by the next), the rest at QoS 1.
pub fn subscriptions(topics: &Topics) -> Vec<(String, QoS)> {
    topics
        .watch_filters()
        .into_iter()
        .map(|f| {
            let qos = if f.ends_with("/quad") {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            (f, qos)
        })
        .collect()
}

/// Feeds `live` from `bus` and keeps `chain` followed, until `shutdown`; then closes the bus.
pub async fn run(
    config: WebConfig,
    mut bus: Bus,
    chain: Arc<dyn ChainView>,
    live: Arc<Live>,
    shutdown: CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let follower = tokio::spawn(follow(
        chain,
        live.clone(),
        wake.clone(),
        config.chain_poll,
        shutdown.clone(),
    ));
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = bus.recv() => match msg { Some(m) => m, None => break },
        };
        let kind = take(&config, &live, &wake, &msg.topic, &msg.payload);
        counter!(m::WEB_MESSAGES, "kind" => kind).increment(1);
    }
    bus.close().await;
    let _ = follower.await;
}

fn parse<T: DeserializeOwned>(payload: &[u8], max: usize) -> Option<T> {
    if payload.is_empty() || payload.len() > max {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// Hands one message to the live view; returns its kind for the metrics (`refused` when it
/// was not understood or beyond a cap).
fn take(
    config: &WebConfig,
    live: &Live,
    wake: &Notify,
    topic: &str,
    payload: &[u8],
) -> &'static str {
    let max = config.max_payload;
    let taken = match config.topics.parse(topic) {
        Some(Route::Quad { cabinet }) => decode::<Quadruplet>(payload, max)
            .ok()
            .filter(|q| q.cabinet == cabinet)
            .map(|q| ("quad", live.on_quad(q))),
        Some(Route::Average { cabinet, quantity }) => decode::<Average>(payload, max)
            .ok()
            .filter(|a| a.cabinet == cabinet && a.quantity == quantity)
            .map(|a| ("average", live.on_average(a))),
        Some(Route::CabinetStatus { cabinet }) => parse::<CabinetStatus>(payload, max)
            .filter(|s| s.cabinet == cabinet)
            .map(|s| ("cabinet", live.on_cabinet_status(s))),
        Some(Route::AgentStatus { id }) => parse::<AgentStatus>(payload, max)
            .filter(|s| s.id == id)
            .map(|s| ("agent", live.on_agent_status(s))),
        Some(Route::NodeHead { node }) => parse::<serde_json::Value>(payload, max).map(|head| {
            let height = head.get("index").or_else(|| head.get("height"));
            let admitted = live.on_node_head(&node, head.clone());
            if let (true, Some(h)) = (admitted, height.and_then(|h| h.as_u64())) {
                gauge!(m::NODE_HEIGHT, "node" => node).set(h as f64);
            }
            ("node", admitted)
        }),
        Some(Route::Head) => parse::<serde_json::Value>(payload, max).map(|head| {
            live.on_head(head);
            wake.notify_one();
            ("head", true)
        }),
        Some(Route::Block) => {
            wake.notify_one();
            Some(("block", true))
        }
        Some(Route::Deadletter { role }) => parse::<DeadLetter>(payload, max).map(|d| {
            let label = live.on_deadletter(&role, d);
            counter!(m::DEADLETTERS, "role" => label).increment(1);
            ("deadletter", true)
        }),
        _ => None,
    };
    match taken {
        Some((kind, true)) => kind,
        Some((kind, false)) => {
            debug!(topic, kind, "live view full: message ignored");
            "refused"
        }
        None => {
            debug!(
                topic,
                bytes = payload.len(),
                "message not understood by the live view"
            );
            "refused"
        }
    }
}

/// Re-reads the chain when woken or every `poll`, turning new blocks into events.
async fn follow(
    chain: Arc<dyn ChainView>,
    live: Arc<Live>,
    wake: Arc<Notify>,
    poll: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut last_error = String::new();
    loop {
        let view = chain.clone();
        match tokio::task::spawn_blocking(move || view.refresh()).await {
            Ok(Ok(fresh)) => {
                last_error.clear();
                for block in &fresh {
                    live.on_block(block);
                }
                let summary = chain.summary();
                gauge!(m::CHAIN_BLOCKS).set(summary.length as f64);
                gauge!(m::CHAIN_RECORDS).set(summary.records as f64);
                let valid = summary.verification.first_bad.is_none();
                gauge!(m::CHAIN_VALID).set(if valid { 1.0 } else { 0.0 });
            }
            Ok(Err(e)) => {
                let text = e.to_string();
                if text != last_error {
                    warn!(cause = %text, "cannot read the chain; retrying");
                    last_error = text;
                }
            }
            Err(e) => warn!(cause = %e, "chain refresh panicked"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}
