//! The cabinet acquisition agent: polls the PLC over Modbus TCP, publishes each quadruplet,
//! cuts windows of N samples into per-quantity tasks, and keeps every window in a durable
//! outbox until a block holding it is final on the chain, as the cabinet checks itself.
//!
//! - [`agent`]: the acquisition loop (ticks, Modbus, publishing, commits, status).
//! - [`config`]: how a cabinet agent runs, with defaults.
//! - [`window`]: cutting quadruplets into windows.
//! - [`outbox`]: the durable journal of uncommitted windows and id counters.
//! - [`energy`]: the energy total integrated from PA, saved across restarts.
//! - [`forget`]: `wattchain cabinet forget`, clearing a decommissioned cabinet's retained topics.
//! - [`source`]: where readings come from (Modbus, or synthetic for benchmarks).
//! - [`finality`]: the light client that decides when a window is final (never one node's word).

pub mod agent;
pub mod config;
pub mod energy;
pub mod finality;
pub mod forget;
pub mod outbox;
pub mod source;
pub mod window;

pub use agent::{run, CabinetError, CabinetStats, ROLE};
pub use config::CabinetConfig;
pub use source::{SourceConfig, SyntheticConfig};
