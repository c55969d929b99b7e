//! Benchmarks behind `wattchain bench`: each measures one part of the pipeline on this machine
//! and reports a rate a script can read (`--json`).
//!
//! # Layout
//!
//! - [`mine`]: trials per second of the proof-of-work miner (and of the textbook method).

pub mod mine;
