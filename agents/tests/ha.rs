//! Home Assistant discovery and the energy total, as Home Assistant and a user see them: every
//! config checked against Home Assistant's documented discovery rules and its templates
//! rendered (Jinja, with Home Assistant's functions) against real payloads; the retained
//! configs seen with `mosquitto_sub`, sent again when Home Assistant announces itself, removed
//! by `--ha-discovery off` and `wattchain cabinet forget`; the energy total continuing, never
//! lower, after `kill -9`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior, Value};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value as Json};

use support::process::{mosquitto_sub, parse_sub_line, wattchain, Proc};
use support::{TestBroker, TestSim, WAIT};
use wattchain::bus::BrokerUrl;
use wattchain::ha::{self, DeviceClass, Discovery, HaConfig, StateClass};
use wattchain::ledger::{BlockTemplate, Hash32, Timestamp};
use wattchain::messages::{
    encode, now_ts, AgentStatus, CabinetPresence, CabinetStatus, EnergyTotal, Presence, Quadruplet,
};
use wattchain::topics::{DiscoveryTopics, Topics};

// ---------------------------------------------------------------------------------------------
// Home Assistant's rules, as documented (see the sources cited in `agents/src/ha.rs`).

/// Every key Home Assistant's MQTT sensor accepts, full names (sensor.mqtt), plus `origin`
/// (MQTT discovery). Unknown keys are ignored by Home Assistant, so a typo would silently do
/// nothing: every key we send must be one of these.
const SENSOR_KEYS: &[&str] = &[
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "default_entity_id",
    "device",
    "device_class",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "expire_after",
    "force_update",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "last_reset_value_template",
    "name",
    "object_id",
    "options",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "state_class",
    "state_topic",
    "suggested_display_precision",
    "unique_id",
    "unit_of_measurement",
    "value_template",
];

/// The device mapping's keys (sensor.mqtt).
const DEVICE_KEYS: &[&str] = &[
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
];

/// The origin mapping's keys (MQTT discovery).
const ORIGIN_KEYS: &[&str] = &["name", "sw_version", "support_url"];

/// Units Home Assistant accepts per device class (sensor device classes).
fn allowed_units(class: &str) -> &'static [Option<&'static str>] {
    match class {
        "voltage" => &[Some("V"), Some("mV"), Some("µV"), Some("kV"), Some("MV")],
        "current" => &[Some("A"), Some("mA")],
        "power" => &[
            Some("mW"),
            Some("W"),
            Some("kW"),
            Some("MW"),
            Some("GW"),
            Some("TW"),
        ],
        "reactive_power" => &[Some("var"), Some("mvar"), Some("kvar")],
        "energy" => &[
            Some("J"),
            Some("kJ"),
            Some("MJ"),
            Some("GJ"),
            Some("mWh"),
            Some("Wh"),
            Some("kWh"),
            Some("MWh"),
            Some("GWh"),
            Some("TWh"),
            Some("cal"),
            Some("kcal"),
            Some("Mcal"),
            Some("Gcal"),
        ],
        "timestamp" => &[None],
        other => panic!("device class {other} is not in this table"),
    }
}

/// State classes Home Assistant accepts per device class (`DEVICE_CLASS_STATE_CLASSES`).
fn allowed_state_classes(class: Option<&str>) -> &'static [Option<&'static str>] {
    match class {
        Some("voltage" | "current" | "power" | "reactive_power") => &[Some("measurement")],
        Some("energy") => &[Some("total"), Some("total_increasing")],
        Some("timestamp") => &[None],
        Some(other) => panic!("device class {other} is not in this table"),
        None => &[
            None,
            Some("measurement"),
            Some("total"),
            Some("total_increasing"),
        ],
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks one discovery message against Home Assistant's documented rules.
fn check_rules(prefix: &str, topic: &str, config: &Json) {
    let levels: Vec<&str> = topic
        .strip_prefix(prefix)
        .and_then(|t| t.strip_prefix('/'))
        .unwrap_or_else(|| panic!("{topic} is not under {prefix}"))
        .split('/')
        .collect();
    assert!(
        matches!(levels.as_slice(), ["sensor", node, object, "config"] if is_id(node) && is_id(object)),
        "{topic}: not <prefix>/sensor/<node_id>/<object_id>/config with ids from [a-zA-Z0-9_-]"
    );
    let map = config.as_object().expect("a JSON dictionary");
    for key in map.keys() {
        assert!(
            SENSOR_KEYS.contains(&key.as_str()),
            "{topic}: unknown key {key}"
        );
    }
    assert!(
        config["state_topic"].is_string(),
        "{topic}: state_topic is required"
    );
    assert!(
        config["unique_id"].as_str().is_some_and(|u| !u.is_empty()),
        "{topic}: device works only with a unique_id"
    );
    let device = config["device"].as_object().expect("a device mapping");
    for key in device.keys() {
        assert!(
            DEVICE_KEYS.contains(&key.as_str()),
            "{topic}: device key {key}"
        );
    }
    assert!(
        device["identifiers"]
            .as_array()
            .is_some_and(|ids| !ids.is_empty()),
        "{topic}: a device needs identifiers or connections"
    );
    for key in ["name", "manufacturer", "model", "sw_version"] {
        assert!(device[key].is_string(), "{topic}: device {key}");
    }
    let origin = config["origin"].as_object().expect("an origin mapping");
    for key in origin.keys() {
        assert!(
            ORIGIN_KEYS.contains(&key.as_str()),
            "{topic}: origin key {key}"
        );
    }
    assert!(
        origin["name"].is_string(),
        "{topic}: origin name is required"
    );
    let class = config["device_class"].as_str();
    let unit = config["unit_of_measurement"].as_str();
    let state_class = config["state_class"].as_str();
    if let Some(c) = class {
        assert!(allowed_units(c).contains(&unit), "{topic}: {c} in {unit:?}");
    }
    assert!(
        allowed_state_classes(class).contains(&state_class),
        "{topic}: {class:?} with state class {state_class:?}"
    );
    assert!(
        config["availability_topic"].is_string() && config["availability_template"].is_string(),
        "{topic}: availability from the agent's status"
    );
}

// ---------------------------------------------------------------------------------------------
// Home Assistant's template environment.

/// Home Assistant's `as_datetime`: a datetime from a timestamp string (or UNIX seconds),
/// rendered the way Python prints a timezone-aware datetime: `2026-11-21 10:15:31.407000+00:00`
/// (no fraction when it is zero). A string it cannot parse gives `None`.
fn as_datetime(value: Value) -> Value {
    let time = if let Some(s) = value.as_str() {
        match humantime::parse_rfc3339(s) {
            Ok(t) => t,
            Err(_) => return Value::from(()),
        }
    } else if let Ok(secs) = f64::try_from(value.clone()) {
        std::time::UNIX_EPOCH + Duration::from_secs_f64(secs)
    } else {
        return Value::from(());
    };
    let iso = humantime::format_rfc3339_micros(time).to_string(); // 2026-11-21T10:15:31.407000Z
    let iso = iso.trim_end_matches('Z').replacen('T', " ", 1);
    let iso = iso.strip_suffix(".000000").unwrap_or(&iso).to_string();
    Value::from(format!("{iso}+00:00"))
}

/// Strict about undefined values (stricter than Home Assistant, which only logs a warning):
/// a template that renders here renders there.
fn ha_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_function("as_datetime", as_datetime);
    env.add_filter("as_datetime", as_datetime);
    env
}

/// Renders `template` as Home Assistant does for an MQTT message `payload`: `value` is the
/// payload, `value_json` the payload parsed as JSON.
fn render(template: &str, payload: &str) -> String {
    let value_json: Json = serde_json::from_str(payload).expect("payload is JSON");
    ha_env()
        .render_str(
            template,
            minijinja::context! {
                value => payload,
                value_json => Value::from(minijinja::value::Serde(&value_json)),
            },
        )
        .unwrap_or_else(|e| panic!("{template:?} on {payload}: {e:#}"))
}

/// What a Home Assistant timestamp sensor accepts: ISO 8601 with a UTC offset. Returns the
/// time it stands for.
fn ha_timestamp(state: &str) -> std::time::SystemTime {
    let (date_time, offset) = state.split_at(state.len().saturating_sub(6));
    assert_eq!(offset, "+00:00", "timestamp {state:?} has a UTC offset");
    let rfc = format!("{}Z", date_time.replacen(' ', "T", 1));
    humantime::parse_rfc3339(&rfc).unwrap_or_else(|e| panic!("{state:?}: {e}"))
}

fn rfc3339(json: &Json) -> std::time::SystemTime {
    humantime::parse_rfc3339(json.as_str().expect("a timestamp")).unwrap()
}

fn quad() -> Quadruplet {
    Quadruplet {
        cabinet: "c1".into(),
        seq: 1042,
        ts: now_ts(),
        u: 240.87,
        i: 2.514,
        pa: 571.3,
        pr: -181.9,
    }
}

fn cabinet_status(state: Presence, modbus: &str) -> String {
    String::from_utf8(encode(&CabinetStatus {
        cabinet: "c1".into(),
        state,
        modbus: modbus.into(),
        loads: Some(vec![true, false, false, true, false, false, false]),
        source: Some(2),
        last_error: None,
        next_window: 261,
        outbox: 1,
        missed_ticks: 0,
        ts: now_ts(),
    }))
    .unwrap()
}

fn text(msg: &impl serde::Serialize) -> String {
    String::from_utf8(encode(msg)).unwrap()
}

fn config_json(d: &Discovery) -> Json {
    serde_json::from_slice(&encode(&d.config)).unwrap()
}

#[test]
fn every_discovery_config_follows_home_assistants_rules_with_unique_ids() {
    let ha = HaConfig::default();
    let mut unique_ids = HashSet::new();
    let mut topics_seen = HashSet::new();
    for root in ["wattchain", "site-a/wattchain"] {
        let topics = Topics::new(root).unwrap();
        let mut all = ha::ledger_entities(&ha, &topics, "publisher");
        for cab in ["c1", "c2", "c_3", "cabinet-4"] {
            all.extend(ha::cabinet_entities(&ha, &topics, cab));
        }
        for d in &all {
            check_rules("homeassistant", &d.topic, &config_json(d));
            assert!(
                unique_ids.insert(d.config.unique_id.clone()),
                "unique_id {} used twice",
                d.config.unique_id
            );
            assert!(topics_seen.insert(d.topic.clone()), "{} twice", d.topic);
        }
    }
    assert_eq!(unique_ids.len(), 2 * (2 + 4 * 5));

    let c1 = ha::cabinet_entities(&ha, &Topics::default(), "c1");
    let kinds: Vec<(Option<DeviceClass>, Option<&str>, Option<StateClass>)> = c1
        .iter()
        .map(|d| {
            (
                d.config.device_class,
                d.config.unit_of_measurement.as_deref(),
                d.config.state_class,
            )
        })
        .collect();
    use DeviceClass::*;
    use StateClass::*;
    assert_eq!(
        kinds,
        vec![
            (Some(Voltage), Some("V"), Some(Measurement)),
            (Some(Current), Some("A"), Some(Measurement)),
            (Some(Power), Some("W"), Some(Measurement)),
            (Some(ReactivePower), Some("var"), Some(Measurement)),
            (Some(Energy), Some("kWh"), Some(TotalIncreasing)),
        ]
    );
    // One device per cabinet, shared by its five entities.
    let devices: HashSet<String> = c1
        .iter()
        .map(|d| d.config.device.identifiers.join(","))
        .collect();
    assert_eq!(devices.len(), 1);
    // Another prefix moves every config topic.
    let other = HaConfig {
        enabled: true,
        topics: DiscoveryTopics::new("ha-test").unwrap(),
    };
    for d in ha::cabinet_entities(&other, &Topics::default(), "c1") {
        check_rules("ha-test", &d.topic, &config_json(&d));
    }
}

#[test]
fn every_template_renders_real_payloads_to_what_home_assistant_expects() {
    let ha = HaConfig::default();
    let topics = Topics::default();
    let q = quad();
    let quad_json = text(&q);
    let energy = text(&EnergyTotal {
        cabinet: "c1".into(),
        energy_kwh: 12.345678,
        since: now_ts(),
        ts: now_ts(),
    });
    let ok = cabinet_status(Presence::Online, "ok");
    let plc_down = cabinet_status(Presence::Online, "error");
    let stopped = cabinet_status(Presence::Offline, "offline");
    let connected = text(&CabinetPresence {
        cabinet: "c1".into(),
        state: Presence::Online,
    });
    let will = text(&CabinetPresence {
        cabinet: "c1".into(),
        state: Presence::Offline,
    });
    for d in ha::cabinet_entities(&ha, &topics, "c1") {
        let c = &d.config;
        let state = if c.state_topic == topics.quad("c1") {
            render(&c.value_template, &quad_json)
        } else {
            assert_eq!(c.state_topic, topics.energy("c1"));
            render(&c.value_template, &energy)
        };
        let value: f64 = state
            .parse()
            .unwrap_or_else(|_| panic!("{state:?} is a number"));
        let expected = match c.unit_of_measurement.as_deref() {
            Some("V") => q.u,
            Some("A") => q.i,
            Some("W") => q.pa,
            Some("var") => q.pr,
            Some("kWh") => 12.345678,
            other => panic!("unit {other:?}"),
        };
        assert_eq!(value, expected, "{}", c.name);

        assert_eq!(c.availability_topic, topics.cabinet_status("c1"));
        let available = |status: &str| render(&c.availability_template, status);
        let fresh_readings = c.state_topic == topics.quad("c1");
        assert_eq!(available(&ok), "online", "{}", c.name);
        assert_eq!(available(&stopped), "offline", "{}", c.name);
        assert_eq!(available(&will), "offline", "{}", c.name);
        let (down, bare) = if fresh_readings {
            ("offline", "offline")
        } else {
            ("online", "online")
        };
        assert_eq!(available(&plc_down), down, "{}: PLC unreachable", c.name);
        assert_eq!(available(&connected), bare, "{}: just connected", c.name);
    }

    let block = BlockTemplate {
        index: 42,
        previous_hash: Hash32::ZERO,
        timestamp: Timestamp::from_millis(1_795_256_131_407).unwrap(),
        difficulty: 0,
        records: vec![],
    }
    .seal(7);
    let head = block.to_json();
    let head_json: Json = serde_json::from_str(&head).unwrap();
    let online = text(&AgentStatus::new(
        Presence::Online,
        "publisher",
        "publisher",
    ));
    let offline = text(&AgentStatus::new(
        Presence::Offline,
        "publisher",
        "publisher",
    ));
    let ledger = ha::ledger_entities(&ha, &topics, "publisher");
    assert_eq!(ledger.len(), 2);
    for d in &ledger {
        let c = &d.config;
        assert_eq!(c.state_topic, topics.head());
        let state = render(&c.value_template, &head);
        match c.device_class {
            None => assert_eq!(state, "42", "block height"),
            Some(DeviceClass::Timestamp) => {
                assert_eq!(state, "2026-11-21 10:15:31.407000+00:00");
                assert_eq!(ha_timestamp(&state), rfc3339(&head_json["timestamp"]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(render(&c.availability_template, &online), "online");
        assert_eq!(render(&c.availability_template, &offline), "offline");
    }
}

#[test]
fn home_assistants_as_datetime_is_reproduced_for_whole_seconds_and_epochs() {
    assert_eq!(
        render(
            "{{ as_datetime(value_json.t) }}",
            r#"{"t":"2026-11-21T10:15:31.000Z"}"#
        ),
        "2026-11-21 10:15:31+00:00"
    );
    assert_eq!(
        render("{{ value_json.t | as_datetime }}", r#"{"t":1707294116}"#),
        "2024-02-07 08:21:56+00:00",
        "the example of Home Assistant's MQTT sensor documentation"
    );
    assert_eq!(render("{{ as_datetime('soon') }}", "{}"), "None");
}

// ---------------------------------------------------------------------------------------------
// On a real broker, with mosquitto_sub.

/// What the broker holds retained under `filter` right now: subscribe, then publish a probe
/// on a second filter of the same subscription; the broker sends the retained messages of a
/// subscription before anything published after it, so the probe's arrival ends the list.
async fn retained(url: &BrokerUrl, filter: &str) -> BTreeMap<String, String> {
    let probe = "wattchain-test/probe";
    let mut o = MqttOptions::new("retained-probe", url.host.clone(), url.port);
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    client
        .subscribe_many([
            rumqttc::SubscribeFilter::new(filter.to_string(), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new(probe.to_string(), QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    let mut found = BTreeMap::new();
    let collect = async {
        loop {
            match eventloop.poll().await.expect("broker reachable") {
                Event::Incoming(Packet::SubAck(_)) => {
                    client
                        .publish(probe, QoS::AtLeastOnce, false, "end")
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) if p.topic == probe => break,
                Event::Incoming(Packet::Publish(p)) if p.retain => {
                    found.insert(p.topic, String::from_utf8_lossy(&p.payload).into_owned());
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, collect)
        .await
        .expect("probe came back");
    let _ = client.disconnect().await;
    found
}

/// `wattchain cabinet` against `broker` and `sim`, fast, with extra flags.
fn cabinet(
    broker: &BrokerUrl,
    sim: std::net::SocketAddr,
    dir: &std::path::Path,
    extra: &[&str],
) -> Proc {
    Proc::spawn(
        wattchain()
            .args(["cabinet", "--broker", &broker.to_string()])
            .args(["--modbus", &sim.to_string(), "--id", "c1"])
            .args([
                "--period",
                "50ms",
                "--window",
                "4",
                "--energy-every",
                "150ms",
            ])
            .arg("--data-dir")
            .arg(dir)
            .args(extra),
    )
}

/// Reads lines of `sub` until every topic of `topics` has had one satisfying `pred` (on its
/// payload); returns those lines as (retain, topic, payload).
fn until_each(
    sub: &Proc,
    topics: &HashSet<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> Vec<(bool, String, String)> {
    let mut seen = BTreeMap::new();
    while seen.len() < topics.len() {
        let line = parse_sub_line(&sub.line(what, |l| {
            let (_, topic, payload) = parse_sub_line(l);
            topics.contains(&topic) && pred(&payload)
        }));
        seen.insert(line.1.clone(), line);
    }
    seen.into_values().collect()
}

/// Waits until `sub` (on `#`) is subscribed: it prints a retained marker published before.
fn subscribed(port: u16) -> Proc {
    let marker = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-r", "-t", "wattchain-test/ready", "-m", "1"])
        .status()
        .unwrap();
    assert!(marker.success());
    let sub = mosquitto_sub(port, &["#"]);
    sub.line("the marker", |l| {
        parse_sub_line(l).1 == "wattchain-test/ready"
    });
    sub
}

#[test]
fn discovery_is_retained_sent_again_when_home_assistant_comes_online_and_removed_by_off_and_forget()
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = rt.block_on(TestBroker::embedded());
    let sim = rt.block_on(TestSim::start(true, 11));
    sim.sim.set_load(1, true).unwrap();
    let url = broker.url();
    let data = tempfile::tempdir().unwrap();
    let ha = HaConfig::default();
    let topics = Topics::default();
    let entities = ha::cabinet_entities(&ha, &topics, "c1");
    let config_topics: HashSet<String> = entities.iter().map(|e| e.topic.clone()).collect();
    let watch = subscribed(url.port);

    let mut agent = cabinet(&url, sim.addr, data.path(), &[]);
    // The status session says `online` once per connection; every discovery config its start
    // sends (from the agent, or re-sent from the session's retained map) follows at most that
    // far after it that all five have been seen after it.
    let status = topics.cabinet_status("c1");
    watch.line("the status session online", |l| {
        let (_, topic, payload) = parse_sub_line(l);
        topic == status && payload == r#"{"cabinet":"c1","state":"online"}"#
    });
    until_each(&watch, &config_topics, "the five discovery configs", |p| {
        !p.is_empty()
    });

    // Retained: a subscriber arriving now gets them at once, flagged retained.
    let retained_sub = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &url.port.to_string()])
        .args([
            "-t",
            "homeassistant/#",
            "--retained-only",
            "-C",
            "5",
            "-W",
            "20",
        ])
        .args(["-F", "%r|%t|%p"])
        .output()
        .unwrap();
    let retained_lines: Vec<(bool, String, String)> = String::from_utf8_lossy(&retained_sub.stdout)
        .lines()
        .map(parse_sub_line)
        .collect();
    assert_eq!(retained_lines.len(), 5, "{retained_lines:?}");
    for (retain, topic, payload) in &retained_lines {
        assert!(*retain && config_topics.contains(topic), "{topic}");
        let config: Json = serde_json::from_str(payload).unwrap();
        check_rules("homeassistant", topic, &config);
        // Rendered against what the running cabinet publishes.
        let state_topic = config["state_topic"].as_str().unwrap();
        let state = std::process::Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &url.port.to_string()])
            .args(["-t", state_topic, "-C", "1", "-W", "20"])
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
        let value: f64 = render(config["value_template"].as_str().unwrap(), &state)
            .parse()
            .expect("a number");
        assert!(value.is_finite(), "{topic}: {value}");
    }

    // Home Assistant restarts and announces itself: the configs come again, live.
    let birth = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &url.port.to_string()])
        .args(["-t", "homeassistant/status", "-m", "online"])
        .status()
        .unwrap();
    assert!(birth.success());
    until_each(
        &watch,
        &config_topics,
        "the configs again after the birth message",
        |p| !p.is_empty(),
    );

    // `--ha-discovery off` removes them: empty retained payloads, nothing left retained.
    assert!(agent.terminate().success());
    let mut off = cabinet(&url, sim.addr, data.path(), &["--ha-discovery", "off"]);
    until_each(&watch, &config_topics, "the configs cleared", str::is_empty);
    assert!(rt.block_on(retained(&url, "homeassistant/#")).is_empty());
    assert!(off.terminate().success());

    // Back on, then decommissioned with `wattchain cabinet forget`.
    let mut on = cabinet(&url, sim.addr, data.path(), &[]);
    until_each(&watch, &config_topics, "the configs back", |p| {
        !p.is_empty()
    });
    assert!(on.terminate().success());
    let forget = wattchain()
        .args([
            "cabinet",
            "forget",
            "--id",
            "c1",
            "--broker",
            &url.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        forget.status.success(),
        "{}",
        String::from_utf8_lossy(&forget.stderr)
    );
    let listed = String::from_utf8_lossy(&forget.stdout);
    assert!(listed.contains("wattchain/cabinet/c1/status"), "{listed}");
    until_each(
        &watch,
        &config_topics,
        "the configs cleared by forget",
        str::is_empty,
    );
    for filter in [
        "homeassistant/#",
        "wattchain/cabinet/c1/#",
        "wattchain/agent/cabinet-c1/status",
    ] {
        let left = rt.block_on(retained(&url, filter));
        assert!(left.is_empty(), "{filter} still holds {left:?}");
    }
    rt.block_on(broker.stop());
}

#[test]
fn the_publisher_announces_the_ledger_device_on_the_retained_head() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = rt.block_on(TestBroker::embedded());
    let url = broker.url();
    let data = tempfile::tempdir().unwrap();
    let mut publisher = Proc::spawn(
        wattchain()
            .args([
                "publisher",
                "--broker",
                &url.to_string(),
                "--difficulty",
                "4",
            ])
            .arg("--data-dir")
            .arg(data.path()),
    );
    let watch = mosquitto_sub(
        url.port,
        &[
            "homeassistant/sensor/wattchain_ledger/+/config",
            "wattchain/ledger/head",
        ],
    );
    let mut configs = BTreeMap::new();
    let mut head = None;
    while configs.len() < 2 || head.is_none() {
        let (_, topic, payload) =
            parse_sub_line(&watch.line("ledger configs and the head", |_| true));
        if topic == "wattchain/ledger/head" {
            head = Some(payload);
        } else {
            configs.insert(topic, payload);
        }
    }
    let head = head.unwrap();
    let head_json: Json = serde_json::from_str(&head).unwrap();
    for (topic, payload) in &configs {
        let config: Json = serde_json::from_str(payload).unwrap();
        check_rules("homeassistant", topic, &config);
        let state = render(config["value_template"].as_str().unwrap(), &head);
        if topic.contains("block_height") {
            assert_eq!(json!(state.parse::<u64>().unwrap()), head_json["index"]);
        } else {
            assert_eq!(ha_timestamp(&state), rfc3339(&head_json["timestamp"]));
        }
    }
    assert!(publisher.terminate().success());
    rt.block_on(broker.stop());
}

#[test]
fn the_energy_total_continues_after_kill_9_and_never_decreases() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = rt.block_on(TestBroker::embedded());
    let sim = rt.block_on(TestSim::start(false, 12));
    sim.sim.set_load(3, true).unwrap(); // 88 Ω at 241 V: about 660 W − 16 W of meter offset
    let url = broker.url();
    let data = tempfile::tempdir().unwrap();
    let energy_topic = Topics::default().energy("c1");
    let watch = mosquitto_sub(url.port, &[&energy_topic]);
    let total = |line: &str| -> f64 {
        let total: EnergyTotal =
            serde_json::from_str(&parse_sub_line(line).2).expect("an energy total");
        total.energy_kwh
    };
    let mut values = Vec::new();
    let mut agent = cabinet(&url, sim.addr, data.path(), &[]);
    while values.len() < 4 || values.last() == Some(&0.0) {
        values.push(total(&watch.line("an energy total", |_| true)));
    }
    assert!(!agent.kill9().success());
    let before = *values.last().unwrap();
    assert!(before > 0.0, "{values:?}");

    let mut again = cabinet(&url, sim.addr, data.path(), &[]);
    let mut after = Vec::new();
    while after.last().is_none_or(|v| *v <= before) {
        after.push(total(
            &watch.line("an energy total after the restart", |_| true),
        ));
    }
    let all: Vec<f64> = values.iter().chain(&after).copied().collect();
    assert!(
        all.windows(2).all(|w| w[1] >= w[0]),
        "the total never decreases: {all:?}"
    );
    assert!(again.terminate().success());
    let saved: Json =
        serde_json::from_slice(&std::fs::read(data.path().join("energy.json")).unwrap()).unwrap();
    assert!(saved["energy_wh"].as_f64().unwrap() / 1000.0 >= *after.last().unwrap());
    rt.block_on(broker.stop());
}

/// With the example users file, each role may do what discovery needs: the cabinet publish its
/// configs and energy total and hear Home Assistant's birth message, the publisher its ledger
/// configs, Home Assistant connect with its will and announce itself. (MQTT 3.1.1 clients are
/// disconnected on a refused publish, so a missing grant would show as configs never retained
/// or never sent again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_users_file_lets_cabinet_publisher_and_home_assistant_do_discovery() {
    use tokio_util::sync::CancellationToken;
    use wattchain::bus::{Bus, BusOptions};
    use wattchain::cabinet::{self, CabinetConfig, SourceConfig, SyntheticConfig};

    let dir = tempfile::tempdir().unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../broker/config/users.example.toml"
    );
    let hash = wattchain_broker::hash_password("secret").unwrap();
    let users = std::fs::read_to_string(example).unwrap().replace(
        "REPLACE with the output of: wattchain broker hash-password",
        &hash,
    );
    std::fs::write(dir.path().join("users.toml"), users).unwrap();
    let broker = wattchain_broker::start(wattchain_broker::BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        users_file: Some(dir.path().join("users.toml")),
        ..Default::default()
    })
    .await
    .unwrap();
    let url: BrokerUrl = broker.url().parse().unwrap();
    let login = |id: &str, role: &str, user: &str| {
        let mut o = BusOptions::new(url.clone(), id, role);
        o.username = Some(user.to_string());
        o.password = Some("secret".to_string());
        o
    };

    // Home Assistant: its will and birth on homeassistant/status, everything it reads.
    let mut o = MqttOptions::new("home-assistant", url.host.clone(), url.port);
    o.set_credentials("homeassistant", "secret");
    o.set_last_will(rumqttc::LastWill::new(
        "homeassistant/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (ha_client, mut ha_events) = AsyncClient::new(o, 64);
    ha_client
        .subscribe_many([
            rumqttc::SubscribeFilter::new("homeassistant/#".into(), QoS::AtLeastOnce),
            rumqttc::SubscribeFilter::new("wattchain/cabinet/c1/energy".into(), QoS::AtLeastOnce),
        ])
        .await
        .unwrap();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let ha_task = tokio::spawn(async move {
        loop {
            match ha_events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = seen_tx.send((p.topic, p.payload));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = seen_tx.send(("suback".into(), Default::default()));
                }
                Ok(_) => {}
                Err(e) => panic!("Home Assistant's session failed: {e}"),
            }
        }
    });
    async fn next(
        seen: &mut tokio::sync::mpsc::UnboundedReceiver<(String, bytes::Bytes)>,
        what: &str,
    ) -> (String, bytes::Bytes) {
        tokio::time::timeout(WAIT, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"))
            .expect("Home Assistant's session is up")
    }
    assert_eq!(next(&mut seen, "the subscription").await.0, "suback");

    let ha = HaConfig::default();
    let topics = Topics::default();
    let config = CabinetConfig {
        period: Duration::from_millis(50),
        energy_every: Duration::from_millis(100),
        source: SourceConfig::Synthetic(SyntheticConfig::new(20.0, None)),
        ..CabinetConfig::new("c1", "127.0.0.1:9".parse().unwrap(), dir.path().join("c1"))
    };
    let base = login(&config.agent_id(), cabinet::ROLE, "cabinet-c1");
    let status_bus = Bus::connect(config.status_bus_options(&base), vec![]).unwrap();
    let bus = Bus::connect(base, config.subscriptions()).unwrap();
    let stop = CancellationToken::new();
    let cabinet_task = tokio::spawn(cabinet::run(config, bus, status_bus, stop.clone()));
    let mut publisher_options = login("publisher", "publisher", "publisher");
    publisher_options.republish_on = ha.birth();
    let publisher = Bus::connect(publisher_options, vec![]).unwrap();
    ha::announce(
        &publisher.outlet(),
        &ha,
        &ha::ledger_entities(&ha, &topics, "publisher"),
    );

    let mut expected: HashSet<String> = ha::cabinet_entities(&ha, &topics, "c1")
        .into_iter()
        .chain(ha::ledger_entities(&ha, &topics, "publisher"))
        .map(|d| d.topic)
        .collect();
    let all = expected.clone();
    let mut energy = false;
    while !expected.is_empty() || !energy {
        let (topic, payload) = next(&mut seen, "every config and an energy total").await;
        energy |= topic == topics.energy("c1") && !payload.is_empty();
        expected.remove(&topic);
    }
    ha_client
        .publish("homeassistant/status", QoS::AtLeastOnce, true, "online")
        .await
        .unwrap();
    while next(&mut seen, "Home Assistant's own birth message")
        .await
        .0
        != "homeassistant/status"
    {}
    let mut again = all;
    while !again.is_empty() {
        let (topic, payload) = next(&mut seen, "every config again after the birth").await;
        if !payload.is_empty() {
            again.remove(&topic);
        }
    }

    stop.cancel();
    cabinet_task.await.unwrap().unwrap();
    publisher.close().await;
    ha_task.abort();
    broker.shutdown().await;
}
