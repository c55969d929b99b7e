//! wattchain agents: measurements from an electrical cabinet, carried over MQTT, averaged by a
//! pool of workers and recorded by ledger nodes in a signed chain bound to a genesis.
//!
//! # Layout
//!
//! - [`topics`]: every MQTT topic string and filter, mirroring `topics.md`.
//! - [`config`]: what configurations must satisfy; the typed error every `validate()` returns;
//!   `wattchain.toml` (a section per agent, its defaults, `generate-config`).
//! - [`messages`]: the JSON payloads (quadruplet, window, average, status), with validation.
//! - [`bus`]: the MQTT session every agent uses (reconnect, re-subscribe, retained status, will).
//! - [`ledger`]: genesis, keys, signed blocks, encoding, rules, consensus modes, the block tree
//!   over the durable chain file, verification, the miner.
//! - [`regmap`]: the Modbus register map (addresses, types, word order, scale) from TOML.
//! - [`modbus`]: the Modbus TCP client of a cabinet, every request under a timeout.
//! - [`sim`]: the cabinet simulator, a Modbus TCP server with load physics and churn.
//! - [`cabinet`]: the acquisition agent (Modbus polling, quadruplets, windows, outbox).
//! - [`averager`]: the stateless averaging worker on the shared subscription.
//! - [`ha`]: Home Assistant MQTT discovery (cabinet and ledger devices).
//! - [`publisher`]: assembles averages into records, mines and appends blocks.
//! - [`up`]: the whole pipeline in one process (`wattchain up`).
//! - [`web`]: the HTTP API, live dashboard and `/metrics` (axum, in-process).
//! - [`metrics`](mod@metrics): every Prometheus metric name, the handles agents count with, the recorder.
//! - [`bench`](mod@bench): the measurements behind `wattchain bench` (mining, pipeline, Modbus).

pub mod averager;
pub mod bench;
pub mod bus;
pub mod cabinet;
pub mod config;
pub mod ha;
pub mod ledger;
pub mod messages;
pub mod metrics;
pub mod modbus;
pub mod node;
pub mod regmap;
pub mod sim;
pub mod topics;
pub mod up;
pub mod web;
