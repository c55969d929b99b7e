//! The cabinet simulator: a real Modbus TCP server imitating the WAGO cabinet, with load
//! physics ([`physics`]), the Modbus front ([`server`]) and random switching ([`churn`]).
//!
//! [`Simulator`] is a cheap `Clone` handle to shared state. The state sits behind a
//! `std::sync::Mutex` because every access is a short computation that never crosses an
//! `.await`, which is cheaper and simpler than an async mutex.

pub mod churn;
pub mod physics;
pub mod server;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{rngs::StdRng, SeedableRng};

use crate::regmap::{Measurement, RegisterMap, SwitchError, Switches};

pub use churn::{run_churn, Churn, ChurnSpec, ChurnSpecError, LoadSwitch};
pub use physics::expected;

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where coils and measurements live.
    pub map: RegisterMap,
    /// Seed for noise, drift and churn; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Add measurement noise and source drift; `false` makes readings equal [`expected`].
    pub noise: bool,
    /// Switch loads at random while serving.
    pub churn: Option<ChurnSpec>,
    /// Switch state at start.
    pub initial: Switches,
}

impl SimConfig {
    /// The default map, noise on, no churn, all loads off on source 1.
    pub fn new(map: RegisterMap) -> Self {
        Self {
            map,
            seed: None,
            noise: true,
            churn: None,
            initial: Switches::default(),
        }
    }
}

/// A misbehaviour the server can be told to show, for testing clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave normally.
    #[default]
    None,
    /// Answer every request with this Modbus exception code.
    Exception(u8),
    /// Read requests but never answer them.
    Stall,
    /// Close the connection on the next request.
    Close,
}

/// Why the simulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Accepting connections failed.
    #[error("simulator listener failed: {0}")]
    Accept(#[from] std::io::Error),
}

#[derive(Debug)]
struct State {
    switches: Switches,
    meter: physics::Meter,
    fault: Fault,
}

#[derive(Debug)]
struct Shared {
    map: RegisterMap,
    seed: Option<u64>,
    churn: Option<ChurnSpec>,
    state: Mutex<State>,
}

/// A handle to a simulated cabinet; clones share the same state.
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    /// A simulator in `config.initial` state; call [`Simulator::serve`] to expose it.
    pub fn new(config: SimConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let state = State {
            switches: config.initial,
            meter: physics::Meter::new(rng, config.noise),
            fault: Fault::None,
        };
        Self {
            shared: Arc::new(Shared {
                map: config.map,
                // Churn gets its own stream, derived from the seed, so the switch sequence
                // does not depend on how many readings were served meanwhile.
                seed: config.seed.map(|s| s.wrapping_add(0x9E37_79B9_7F4A_7C15)),
                churn: config.churn,
                state: Mutex::new(state),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-updated (every update
        // is a single assignment), so a poisoned lock is safe to keep using.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The register map served.
    pub fn map(&self) -> &RegisterMap {
        &self.shared.map
    }

    /// The current switch state.
    pub fn switches(&self) -> Switches {
        self.state().switches
    }

    /// Switches load `load` (1..=7) on or off.
    pub fn set_load(&self, load: usize, on: bool) -> Result<(), SwitchError> {
        let mut state = self.state();
        let slot = load
            .checked_sub(1)
            .and_then(|k| state.switches.loads.get_mut(k))
            .ok_or(SwitchError::NoSuchLoad(load))?;
        *slot = on;
        Ok(())
    }

    /// Selects source 1 or 2.
    pub fn set_source(&self, source: u8) -> Result<(), SwitchError> {
        if !(1..=2).contains(&source) {
            return Err(SwitchError::NoSuchSource(source));
        }
        self.state().switches.source = source;
        Ok(())
    }

    /// The noise-free reading for the current state.
    pub fn expected(&self) -> Measurement {
        expected(&self.switches())
    }

    /// One meter reading (with noise and drift when enabled), as the server serves it.
    pub fn measure(&self) -> Measurement {
        let mut state = self.state();
        let switches = state.switches;
        state.meter.read(&switches)
    }

    /// Makes the server misbehave (or behave again with [`Fault::None`]).
    pub fn set_fault(&self, fault: Fault) {
        self.state().fault = fault;
    }

    /// The fault currently set.
    pub fn fault(&self) -> Fault {
        self.state().fault
    }
}

impl LoadSwitch for Simulator {
    type Error = SwitchError;

    fn read_switches(&mut self) -> impl Future<Output = Result<Switches, SwitchError>> + Send {
        std::future::ready(Ok(self.switches()))
    }

    fn set_load(
        &mut self,
        load: usize,
        on: bool,
    ) -> impl Future<Output = Result<(), SwitchError>> + Send {
        std::future::ready(Simulator::set_load(self, load, on))
    }

    fn set_source(&mut self, source: u8) -> impl Future<Output = Result<(), SwitchError>> + Send {
        std::future::ready(Simulator::set_source(self, source))
    }
}
