//! Load churn: every few seconds toggle a random load and pick a random source, so the
//! measurements move like a lab session.
//!
//! The logic is written once against [`LoadSwitch`], implemented by the in-process
//! [`Simulator`](super::Simulator) and by [`ModbusCabinet`], so the same churn can drive a
//! real PLC (`wattchain cabinet churn --modbus HOST:PORT`).

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::modbus::{ModbusCabinet, ModbusError};
use crate::regmap::{Switches, LOADS};

/// How long to wait between churn steps: fixed (`"2s"`) or uniform in a range (`"1s..5s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum ChurnSpec {
    /// Always the same period.
    Every(Duration),
    /// Uniformly random in `[min, max]`.
    Between(Duration, Duration),
}

/// A churn period that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChurnSpecError {
    /// Not a humantime duration.
    #[error("invalid churn period {text:?}: {cause}")]
    Duration {
        /// The offending part.
        text: String,
        /// humantime's explanation.
        cause: String,
    },
    /// Zero periods would spin.
    #[error("churn period must be greater than zero")]
    Zero,
    /// `a..b` with a > b.
    #[error("churn range {min:?}..{max:?} is reversed")]
    Reversed {
        /// Lower bound given.
        min: Duration,
        /// Upper bound given.
        max: Duration,
    },
}

fn parse_duration(text: &str) -> Result<Duration, ChurnSpecError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| ChurnSpecError::Duration {
        text: text.to_owned(),
        cause: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(ChurnSpecError::Zero);
    }
    Ok(d)
}

impl FromStr for ChurnSpec {
    type Err = ChurnSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once("..") {
            None => Ok(ChurnSpec::Every(parse_duration(s)?)),
            Some((a, b)) => {
                let (min, max) = (parse_duration(a)?, parse_duration(b)?);
                if min > max {
                    return Err(ChurnSpecError::Reversed { min, max });
                }
                Ok(ChurnSpec::Between(min, max))
            }
        }
    }
}

impl TryFrom<String> for ChurnSpec {
    type Error = ChurnSpecError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for ChurnSpec {
    /// The form [`FromStr`] reads: `2s` or `1s..5s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use humantime::format_duration as h;
        match *self {
            ChurnSpec::Every(d) => write!(f, "{}", h(d)),
            ChurnSpec::Between(a, b) => write!(f, "{}..{}", h(a), h(b)),
        }
    }
}

/// A churn setting as flags and config files give it: a [`ChurnSpec`], or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Churn(pub Option<ChurnSpec>);

impl FromStr for Churn {
    type Err = ChurnSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "off" | "none" => Ok(Churn(None)),
            spec => spec.parse().map(|c| Churn(Some(c))),
        }
    }
}

impl TryFrom<String> for Churn {
    type Error = ChurnSpecError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for Churn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(spec) => spec.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl serde::Serialize for Churn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl ChurnSpec {
    /// The next wait, drawn from `rng` when the spec is a range.
    fn next_wait(&self, rng: &mut StdRng) -> Duration {
        match *self {
            ChurnSpec::Every(d) => d,
            ChurnSpec::Between(min, max) => rng.random_range(min..=max),
        }
    }
}

/// Something whose loads and source can be switched: the simulator, or a PLC over Modbus.
pub trait LoadSwitch {
    /// Why a switching operation failed.
    type Error: std::error::Error;

    /// The current state of the loads and the source.
    fn read_switches(&mut self) -> impl Future<Output = Result<Switches, Self::Error>> + Send;

    /// Switches load `load` (1..=7) on or off.
    fn set_load(
        &mut self,
        load: usize,
        on: bool,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Selects source 1 or 2.
    fn set_source(&mut self, source: u8) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl LoadSwitch for ModbusCabinet {
    type Error = ModbusError;

    fn read_switches(&mut self) -> impl Future<Output = Result<Switches, ModbusError>> + Send {
        ModbusCabinet::read_switches(self)
    }

    fn set_load(
        &mut self,
        load: usize,
        on: bool,
    ) -> impl Future<Output = Result<(), ModbusError>> + Send {
        ModbusCabinet::set_load(self, load, on)
    }

    fn set_source(&mut self, source: u8) -> impl Future<Output = Result<(), ModbusError>> + Send {
        ModbusCabinet::set_source(self, source)
    }
}

/// Toggles a random load and picks a random source every period of `spec` until `shutdown`
/// fires. The same `seed` gives the same sequence of waits, loads and sources (and, from the
/// same starting state, the same on/off values). Returns the first switching error: the caller
/// decides whether to reconnect and start again.
pub async fn run_churn<S: LoadSwitch>(
    switch: &mut S,
    spec: ChurnSpec,
    seed: Option<u64>,
    shutdown: CancellationToken,
) -> Result<(), S::Error> {
    let mut rng = match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    loop {
        let wait = spec.next_wait(&mut rng);
        tokio::select! {
            () = shutdown.cancelled() => {
                debug!("churn stopped");
                return Ok(());
            }
            () = tokio::time::sleep(wait) => {}
        }
        let load = rng.random_range(1..=LOADS);
        let source: u8 = rng.random_range(1..=2);
        // Toggle relative to the real state, so churn stays right if someone else switches too.
        let on = !switch.read_switches().await?.loads[load - 1];
        switch.set_load(load, on).await?;
        switch.set_source(source).await?;
        let state = if on { "on" } else { "off" };
        info!(
            load,
            on, source, "load {load} switched {state}, source {source}"
        );
    }
}
