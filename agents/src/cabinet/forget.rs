//! `wattchain cabinet forget`: decommissioning a cabinet on the broker. Every retained topic
//! the cabinet's agent owns is cleared with an empty retained payload — its Home Assistant
//! discovery configs (so Home Assistant removes the device), its status, its energy total and
//! its agent status — so that nothing stale is replayed to new subscribers. The data
//! directory is left alone: it may still hold uncommitted windows.

use std::time::Duration;

use crate::bus::{Bus, BusError, BusOptions, Presence, QoS};
use crate::ha::{self, HaConfig};
use crate::topics::Topics;

/// The retained topics of cabinet `cabinet`: its discovery configs (under `ha`'s prefix), its
/// status, its energy total and the status of its agent `cabinet-{cab}`.
pub fn retained_topics(ha: &HaConfig, topics: &Topics, cabinet: &str) -> Vec<String> {
    let mut out: Vec<String> = ha::cabinet_entities(ha, topics, cabinet)
        .into_iter()
        .map(|e| e.topic)
        .collect();
    out.push(topics.cabinet_status(cabinet));
    out.push(topics.energy(cabinet));
    out.push(topics.agent_status(&format!("cabinet-{cabinet}")));
    out
}

/// Clears every retained topic of `cabinet` on the broker `base` points to, waiting at most
/// `wait` for the connection; returns the topics cleared. Run it while the cabinet's agent is
/// stopped (a running agent publishes its state again).
pub async fn forget(
    base: &BusOptions,
    ha: &HaConfig,
    cabinet: &str,
    wait: Duration,
) -> Result<Vec<String>, BusError> {
    crate::config::positive("wait", wait)?;
    let topics = base.topics.clone();
    let cleared = retained_topics(ha, &topics, cabinet);
    let mut options = base.clone();
    options.id = format!("cabinet-{cabinet}-forget");
    // This session's presence is the cabinet's status topic, empty at every turn (at connect,
    // as a will, at close): it never leaves a status of its own behind.
    options.presence = Presence::Custom {
        topic: topics.cabinet_status(cabinet),
        online: Vec::new(),
        offline: Vec::new(),
    };
    options.republish_on = None;
    let bus = Bus::connect(options, vec![])?;
    let result = async {
        bus.wait_ready(wait).await?;
        let outlet = bus.outlet();
        for topic in &cleared {
            outlet
                .publish(topic.clone(), Vec::new(), QoS::AtLeastOnce, true)
                .await?;
        }
        Ok(())
    }
    .await;
    // Close in every case: the publishes queued so far go out before the DISCONNECT.
    bus.close().await;
    result.map(|()| cleared)
}
