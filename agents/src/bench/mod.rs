//! Benchmarks behind `wattchain bench`: figures measured as ratios within one run, on the real
//! components, never asserted as wall-clock in tests; each can print one JSON line (`--json`).
//!
//! # Layout
//!
//! - [`converge`]: ledger nodes back on one head after a partition heals, against propagation
//!   and a sync round trip.
//! - [`mine`]: trials per second of the proof-of-work miner (and of the textbook method).
//! - [`pipeline`]: synthetic cabinets through averagers and nodes to the chain.
//! - [`modbus`]: the Modbus poll round trip and period jitter against the simulator.
//! - [`sync`]: a node with an empty data directory catching up with a long chain.
//! - [`http`]: `GET /api/v1/chain/head` against a bare axum handler, same process and client.
//! - `roles`: the roles benches start in-process (ready sessions, averagers, synthetic cabinets).
//! - [`sse`]: event-stream fan-out: quadruplet → client latency for many clients, server RSS.

pub mod converge;
pub mod http;
pub mod mine;
pub mod modbus;
pub mod pipeline;
mod roles;
pub mod sse;
pub mod sync;
