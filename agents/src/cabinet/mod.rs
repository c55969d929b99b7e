//! The cabinet acquisition agent: polls the PLC over Modbus TCP, publishes each quadruplet,
//! cuts windows of N samples into per-quantity tasks, and keeps every window in a durable
//! outbox until a block commits it.
//!
//! - [`agent`]: the acquisition loop (ticks, Modbus, publishing, commits, status).
//! - [`config`]: how a cabinet agent runs, with defaults.
//! - [`window`]: cutting quadruplets into windows.
//! - [`outbox`]: the durable journal of uncommitted windows and id counters.
//! - [`energy`]: the energy total integrated from PA, saved across restarts.
//! - [`forget`]: `wattchain cabinet forget`, clearing a decommissioned cabinet's retained topics.
//! - [`source`]: where readings come from (Modbus, or synthetic for benchmarks).
//! - [`commit`]: deciding whether a received block may commit our windows.

pub mod agent;
pub mod commit;
pub mod config;
pub mod energy;
pub mod forget;
pub mod outbox;
pub mod source;
pub mod window;

pub use agent::{run, CabinetError, CabinetStats, ROLE};
pub use config::CabinetConfig;
pub use source::{SourceConfig, SyntheticConfig};
