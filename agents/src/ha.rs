//! Home Assistant MQTT discovery: the retained configs that make each cabinet a device with
//! voltage, current, active and reactive power and an energy total, and the chain head a
//! "ledger" device with its block height and last block time — no YAML on the Home Assistant
//! side.
//!
//! What the payloads follow, from Home Assistant's documentation:
//! - <https://www.home-assistant.io/integrations/mqtt/#discovery-messages>: one retained config
//!   per entity on `<prefix>/<component>/[<node_id>/]<object_id>/config`, ids from
//!   `[a-zA-Z0-9_-]`; an empty payload on that topic deletes the entity; Home Assistant
//!   announces itself with `online` on `<prefix>/status` (its birth message), after which
//!   configs should be sent again; `origin` (its `name` required) is recommended; abbreviated
//!   keys are optional (we use the full names).
//! - <https://www.home-assistant.io/integrations/sensor.mqtt/>: `state_topic` is required;
//!   `device` (at least one of `identifiers`, `connections`) only works with a `unique_id`;
//!   availability from a topic through an `availability_template` rendering `online`/`offline`.
//! - <https://www.home-assistant.io/integrations/sensor/#device-class> and the developer docs'
//!   sensor entity page (state classes): voltage in V, current in A, power in W, reactive power
//!   in var, each `measurement`; energy in kWh, `total` or `total_increasing` only (the Energy
//!   dashboard wants one of them); a timestamp takes no state class. Home Assistant's own table
//!   is `DEVICE_CLASS_STATE_CLASSES` in `homeassistant/components/sensor/const.py`.
//!
//! The agents publish these through [`Outlet::publish_retained`], so the session sends them
//! again after every reconnection and, with [`HaConfig::birth`] as its `republish_on`,
//! whenever Home Assistant comes online.

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::bus::Outlet;
use crate::messages::encode;
use crate::topics::{DiscoveryTopics, Quantity, Topics};

/// Whether and where the agents announce themselves to Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// Publish the discovery configs (`true`), or clear them with empty payloads (`false`).
    pub enabled: bool,
    /// The discovery prefix Home Assistant listens on (`homeassistant`).
    pub topics: DiscoveryTopics,
}

impl Default for HaConfig {
    /// On, under Home Assistant's default prefix.
    fn default() -> Self {
        HaConfig {
            enabled: true,
            topics: DiscoveryTopics::default(),
        }
    }
}

impl HaConfig {
    /// Home Assistant's birth message, on which a session re-publishes its retained configs
    /// ([`BusOptions::republish_on`](crate::bus::BusOptions)); `None` when discovery is off.
    pub fn birth(&self) -> Option<(String, Vec<u8>)> {
        self.enabled
            .then(|| (self.topics.status(), b"online".to_vec()))
    }
}

/// A sensor's `device_class`, the ones wattchain uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Voltage (V).
    Voltage,
    /// Current (A).
    Current,
    /// Active power (W).
    Power,
    /// Reactive power (var).
    ReactivePower,
    /// Energy (kWh).
    Energy,
    /// A point in time.
    Timestamp,
}

/// A sensor's `state_class`: how Home Assistant keeps long-term statistics of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateClass {
    /// A value in present time (min, max, mean per period).
    Measurement,
    /// A total that may increase and decrease.
    Total,
    /// A total that only increases (a decrease is a meter reset).
    TotalIncreasing,
}

/// The device entities belong to (Home Assistant's device registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Ids that identify the device; one, its node id.
    pub identifiers: Vec<String>,
    /// Shown in Home Assistant, and the prefix of every entity's name.
    pub name: String,
    /// `wattchain`.
    pub manufacturer: String,
    /// What the device is (`cabinet agent`, `ledger`).
    pub model: String,
    /// The wattchain version.
    pub sw_version: String,
}

/// Which software published a discovery config (logged by Home Assistant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// `wattchain`.
    pub name: String,
    /// The wattchain version.
    pub sw_version: String,
}

impl Origin {
    fn wattchain() -> Origin {
        Origin {
            name: "wattchain".to_string(),
            sw_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// One MQTT sensor's discovery config, with Home Assistant's full key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorConfig {
    /// Entity name, shown after the device name.
    pub name: String,
    /// Unique across every entity of every wattchain deployment on one Home Assistant.
    pub unique_id: String,
    /// Where the value comes from.
    pub state_topic: String,
    /// Extracts the value from the state topic's JSON.
    pub value_template: String,
    /// What the value is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<DeviceClass>,
    /// Its unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<String>,
    /// How statistics are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<StateClass>,
    /// Decimals shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_display_precision: Option<u8>,
    /// Where availability comes from (a retained status with a last will).
    pub availability_topic: String,
    /// Renders `online` or `offline` from the availability topic's JSON.
    pub availability_template: String,
    /// The device the entity belongs to.
    pub device: Device,
    /// Who published this config.
    pub origin: Origin,
}

/// One entity: its retained config topic and the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// `<prefix>/sensor/<node_id>/<object_id>/config`.
    pub topic: String,
    /// What is published there.
    pub config: SensorConfig,
}

/// Available while the agent is online (its status says so).
const AVAILABLE_WHEN_ONLINE: &str = "{{ value_json.state }}";

/// Available while the cabinet is online and its last Modbus poll succeeded: otherwise the
/// readings are not fresh. The session's own `online` and its will carry no `modbus`.
const AVAILABLE_WHEN_READING: &str = "{{ 'online' if value_json.state == 'online' \
     and value_json.modbus is defined and value_json.modbus == 'ok' else 'offline' }}";

/// The entities of one cabinet: U, I, PA and PR from its quadruplets, and its energy total.
pub fn cabinet_entities(ha: &HaConfig, topics: &Topics, cabinet: &str) -> Vec<Discovery> {
    let node = topics.ha_cabinet_node(cabinet);
    let device = Device {
        identifiers: vec![node.clone()],
        name: device_name(topics, &format!("cabinet {cabinet}")),
        manufacturer: "wattchain".to_string(),
        model: "cabinet agent".to_string(),
        sw_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let status = topics.cabinet_status(cabinet);
    let quad = topics.quad(cabinet);
    let mut entities: Vec<Discovery> = Quantity::ALL
        .into_iter()
        .map(|q| {
            let (object, name, class, precision) = match q {
                Quantity::U => ("voltage", "Voltage", DeviceClass::Voltage, 1),
                Quantity::I => ("current", "Current", DeviceClass::Current, 3),
                Quantity::PA => ("active_power", "Active power", DeviceClass::Power, 1),
                Quantity::PR => (
                    "reactive_power",
                    "Reactive power",
                    DeviceClass::ReactivePower,
                    1,
                ),
            };
            sensor(
                ha,
                &node,
                object,
                SensorConfig {
                    name: name.to_string(),
                    unique_id: String::new(),
                    state_topic: quad.clone(),
                    value_template: format!("{{{{ value_json.{q} }}}}"),
                    device_class: Some(class),
                    unit_of_measurement: Some(q.unit().to_string()),
                    state_class: Some(StateClass::Measurement),
                    suggested_display_precision: Some(precision),
                    availability_topic: status.clone(),
                    availability_template: AVAILABLE_WHEN_READING.to_string(),
                    device: device.clone(),
                    origin: Origin::wattchain(),
                },
            )
        })
        .collect();
    entities.push(sensor(
        ha,
        &node,
        "energy",
        SensorConfig {
            name: "Energy".to_string(),
            unique_id: String::new(),
            state_topic: topics.energy(cabinet),
            value_template: "{{ value_json.energy_kwh }}".to_string(),
            device_class: Some(DeviceClass::Energy),
            unit_of_measurement: Some("kWh".to_string()),
            state_class: Some(StateClass::TotalIncreasing),
            suggested_display_precision: Some(3),
            availability_topic: status,
            availability_template: AVAILABLE_WHEN_ONLINE.to_string(),
            device,
            origin: Origin::wattchain(),
        },
    ));
    entities
}

/// The entities of the ledger device, from the retained chain head: block height and the
/// time of the last block. `agent_id` is the agent announcing them (its status gives their
/// availability).
pub fn ledger_entities(ha: &HaConfig, topics: &Topics, agent_id: &str) -> Vec<Discovery> {
    let node = topics.ha_ledger_node();
    let device = Device {
        identifiers: vec![node.clone()],
        name: device_name(topics, "ledger"),
        manufacturer: "wattchain".to_string(),
        model: "ledger".to_string(),
        sw_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let head = topics.head();
    let status = topics.agent_status(agent_id);
    vec![
        sensor(
            ha,
            &node,
            "block_height",
            SensorConfig {
                name: "Block height".to_string(),
                unique_id: String::new(),
                state_topic: head.clone(),
                value_template: "{{ value_json.index }}".to_string(),
                device_class: None,
                unit_of_measurement: Some("blocks".to_string()),
                // A total that a reorganisation of the chain may lower: `total`, not
                // `total_increasing` (which would take a lower height for a meter reset).
                state_class: Some(StateClass::Total),
                suggested_display_precision: Some(0),
                availability_topic: status.clone(),
                availability_template: AVAILABLE_WHEN_ONLINE.to_string(),
                device: device.clone(),
                origin: Origin::wattchain(),
            },
        ),
        sensor(
            ha,
            &node,
            "last_block",
            SensorConfig {
                name: "Last block".to_string(),
                unique_id: String::new(),
                state_topic: head,
                value_template: "{{ as_datetime(value_json.timestamp) }}".to_string(),
                device_class: Some(DeviceClass::Timestamp),
                unit_of_measurement: None,
                state_class: None,
                suggested_display_precision: None,
                availability_topic: status,
                availability_template: AVAILABLE_WHEN_ONLINE.to_string(),
                device,
                origin: Origin::wattchain(),
            },
        ),
    ]
}

/// Publishes `entities` retained (or, with discovery off, an empty retained payload on each
/// config topic, which removes the entity from Home Assistant). Best effort: a full queue is
/// logged, and the next reconnection or birth message sends them again.
pub fn announce(outlet: &Outlet, ha: &HaConfig, entities: &[Discovery]) {
    for e in entities {
        let payload = if ha.enabled {
            encode(&e.config)
        } else {
            Vec::new()
        };
        if let Err(err) = outlet.publish_retained(e.topic.clone(), payload) {
            warn!(topic = %e.topic, cause = %err, "Home Assistant discovery config not queued");
        }
    }
}

fn sensor(ha: &HaConfig, node: &str, object: &str, mut config: SensorConfig) -> Discovery {
    config.unique_id = format!("{node}_{object}");
    Discovery {
        topic: ha.topics.sensor_config(node, object),
        config,
    }
}

/// `wattchain cabinet c1`, or with another root `wattchain cabinet c1 (site-a/wattchain)`.
fn device_name(topics: &Topics, what: &str) -> String {
    if topics.root() == crate::topics::DEFAULT_ROOT {
        format!("wattchain {what}")
    } else {
        format!("wattchain {what} ({})", topics.root())
    }
}
