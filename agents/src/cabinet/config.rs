//! How a cabinet agent runs: its configuration, with wattchain's defaults, and what follows
//! from it (agent id, subscriptions, the status session's options).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::source::SourceConfig;
use crate::bus::{BusOptions, Presence as BusPresence, QoS};
use crate::config::{self, ConfigError};
use crate::ha::HaConfig;
use crate::messages::{
    encode, now_ts, CabinetPresence, CabinetStatus, Presence, MAX_WINDOW_VALUES,
};
use crate::regmap::RegisterMap;
use crate::topics::{check_id, Topics};

/// How a cabinet agent runs.
#[derive(Debug, Clone)]
pub struct CabinetConfig {
    /// Cabinet id (a topic level).
    pub id: String,
    /// The PLC (or simulator) Modbus TCP address.
    pub modbus: SocketAddr,
    /// Where the measurements and coils are.
    pub map: RegisterMap,
    /// Poll period.
    pub period: Duration,
    /// Samples per window.
    pub window: usize,
    /// Directory for the outbox journal and counters (one per cabinet).
    pub data_dir: PathBuf,
    /// A window not committed by then is published again.
    pub commit_deadline: Duration,
    /// Most uncommitted windows kept; beyond, the oldest goes to the dead-letter topic.
    pub outbox_capacity: usize,
    /// Bound on every Modbus request (and on connecting).
    pub modbus_timeout: Duration,
    /// First and longest delay between Modbus reconnection attempts.
    pub reconnect: (Duration, Duration),
    /// How often the coils are read for the status.
    pub switches_every: Duration,
    /// QoS of quadruplets.
    pub quad_qos: QoS,
    /// Topic namespace.
    pub topics: Topics,
    /// Where readings come from: Modbus, or synthetic for benchmarks.
    pub source: SourceConfig,
    /// How often the energy total is saved and published.
    pub energy_every: Duration,
    /// Home Assistant discovery.
    pub ha: HaConfig,
}

impl CabinetConfig {
    /// A configuration with wattchain's defaults.
    pub fn new(id: &str, modbus: SocketAddr, data_dir: PathBuf) -> Self {
        CabinetConfig {
            id: id.to_string(),
            modbus,
            map: RegisterMap::default_sim(),
            period: Duration::from_secs(1),
            window: 4,
            data_dir,
            commit_deadline: Duration::from_secs(30),
            outbox_capacity: 10_000,
            modbus_timeout: Duration::from_millis(500),
            reconnect: (Duration::from_millis(200), Duration::from_secs(10)),
            switches_every: Duration::from_secs(5),
            quad_qos: QoS::AtMostOnce,
            topics: Topics::default(),
            source: SourceConfig::Modbus,
            energy_every: Duration::from_secs(10),
            ha: HaConfig::default(),
        }
    }

    /// Checks every value before anything starts: ids, durations, counts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_id(&self.id)?;
        config::positive("period", self.period)?;
        config::within(
            "window",
            self.window,
            1..=MAX_WINDOW_VALUES,
            ": a window task holds at most 10000 values",
        )?;
        config::positive("commit-deadline", self.commit_deadline)?;
        config::within("outbox-capacity", self.outbox_capacity, 1..=1_000_000, "")?;
        config::positive("modbus-timeout", self.modbus_timeout)?;
        config::positive("reconnect-min", self.reconnect.0)?;
        config::positive("reconnect-max", self.reconnect.1)?;
        if self.reconnect.0 > self.reconnect.1 {
            return Err(ConfigError::Inconsistent {
                key: "reconnect-min",
                reason: format!(
                    "{:?} is longer than the longest Modbus reconnect delay {:?}",
                    self.reconnect.0, self.reconnect.1
                ),
            });
        }
        config::positive("switches-every", self.switches_every)?;
        config::positive("energy-every", self.energy_every)?;
        Ok(())
    }

    /// The agent id on the bus for this cabinet.
    pub fn agent_id(&self) -> String {
        format!("cabinet-{}", self.id)
    }

    /// What the main session subscribes to: the blocks that commit this cabinet's windows.
    pub fn subscriptions(&self) -> Vec<(String, QoS)> {
        vec![(self.topics.commit(&self.id), QoS::AtLeastOnce)]
    }

    /// Options for the second session that carries the cabinet's retained state (status,
    /// energy total, Home Assistant discovery), whose last will marks the cabinet offline (one
    /// MQTT connection has one will; the first one marks the agent offline). Its own payloads
    /// say only the cabinet and its state ([`CabinetPresence`]): the will fires at some later
    /// time, when the counters a status carries are unknown. The agent's full status follows
    /// the `online` one, and a clean stop leaves the full final status.
    pub fn status_bus_options(&self, base: &BusOptions) -> BusOptions {
        let mut o = base.clone();
        o.id = format!("{}-status", self.agent_id());
        o.presence = BusPresence::Custom {
            topic: self.topics.cabinet_status(&self.id),
            online: encode(&CabinetPresence {
                cabinet: self.id.clone(),
                state: Presence::Online,
            }),
            offline: encode(&CabinetPresence {
                cabinet: self.id.clone(),
                state: Presence::Offline,
            }),
        };
        o.republish_on = self.ha.birth();
        o
    }

    /// The status payload before anything is known but the state and the Modbus link.
    pub(super) fn status(&self, state: Presence, modbus: &str) -> CabinetStatus {
        CabinetStatus {
            cabinet: self.id.clone(),
            state,
            modbus: modbus.to_string(),
            loads: None,
            source: None,
            last_error: None,
            next_window: 0,
            outbox: 0,
            missed_ticks: 0,
            ts: now_ts(),
        }
    }
}
