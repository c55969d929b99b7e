//! `wattchain bench modbus`: the acquisition path alone — the real [`ModbusCabinet`] client
//! polling the real [`Simulator`] (or a PLC) on a steady period, measuring each poll's round
//! trip and how regular the period really is.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::modbus::{ModbusCabinet, ModbusError};
use crate::regmap::RegisterMap;
use crate::sim::{SimConfig, Simulator};

/// What `bench modbus` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct ModbusBench {
    /// Poll period.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub period: Duration,
    /// How long to poll, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Measure this PLC instead of a built-in simulator on loopback.
    #[arg(long)]
    pub modbus: Option<SocketAddr>,
    /// Bound on each Modbus request.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ModbusBench {
    /// `seconds` of polling every `period` against the built-in simulator.
    pub fn new(period: Duration, seconds: f64) -> Self {
        ModbusBench {
            period,
            seconds,
            modbus: None,
            timeout: Duration::from_millis(500),
            json: false,
        }
    }
}

/// Why the bench could not run.
#[derive(Debug, Error)]
pub enum ModbusBenchError {
    /// The simulator could not bind loopback.
    #[error("cannot start the simulator: {0}")]
    Bind(#[from] std::io::Error),
    /// The first connection failed.
    #[error(transparent)]
    Modbus(#[from] ModbusError),
    /// Nothing was measured (every poll failed, or the run was too short for one period).
    #[error("no poll succeeded in {0:?}")]
    NoSamples(Duration),
    /// A flag that cannot be used (a zero period, a timeout of zero).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Median, 99th percentile and maximum of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile (nearest rank), µs.
    pub p99_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
}

/// The `p` quantile (0 < p ≤ 1) of non-empty, sorted `samples` by nearest rank.
pub fn nearest_rank<T: Copy>(samples: &[T], p: f64) -> T {
    let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[i - 1]
}

impl Spread {
    /// The spread of `samples` (sorted in place); all zero when empty.
    pub fn of(samples: &mut [Duration]) -> Spread {
        if samples.is_empty() {
            return Spread::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| nearest_rank(samples, p).as_secs_f64() * 1e6;
        Spread {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: rank(1.0),
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
            self.p50_us, self.p99_us, self.max_us
        )
    }
}

/// What `bench modbus` measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModbusReport {
    /// The server polled.
    pub server: String,
    /// The nominal period, µs.
    pub period_us: f64,
    /// Successful polls.
    pub polls: u64,
    /// Failed polls.
    pub errors: u64,
    /// Ticks skipped because a poll overran the period.
    pub missed_ticks: u64,
    /// Request to decoded reply of one measurement read.
    pub round_trip: Spread,
    /// |actual period − nominal period| between consecutive polls.
    pub period_jitter: Spread,
    /// How late each poll started against its schedule (includes the timer's 1 ms grain).
    pub lateness: Spread,
}

impl fmt::Display for ModbusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Modbus poll of {} every {:.0} µs: {} polls, {} errors, {} missed ticks",
            self.server, self.period_us, self.polls, self.errors, self.missed_ticks
        )?;
        writeln!(f, "  round trip     {}", self.round_trip)?;
        writeln!(f, "  period jitter  {}", self.period_jitter)?;
        write!(f, "  lateness       {}", self.lateness)
    }
}

/// Polls for `bench.seconds` (or until `shutdown`) and reports.
pub async fn run(
    bench: &ModbusBench,
    shutdown: CancellationToken,
) -> Result<ModbusReport, ModbusBenchError> {
    crate::config::positive("period", bench.period)?;
    crate::config::positive("timeout", bench.timeout)?;
    if !(bench.seconds.is_finite() && bench.seconds > 0.0) {
        return Err(crate::config::ConfigError::Inconsistent {
            key: "seconds",
            reason: format!("{} is not a positive number of seconds", bench.seconds),
        }
        .into());
    }
    let map = RegisterMap::default_sim();
    let stop_sim = shutdown.child_token();
    let (server, sim_task) = match bench.modbus {
        Some(addr) => (addr, None),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let mut config = SimConfig::new(map.clone());
            config.seed = Some(1);
            let sim = Simulator::new(config);
            let stop = stop_sim.clone();
            let task = tokio::spawn(async move { sim.serve(listener, stop).await });
            (addr, Some(task))
        }
    };
    let result = measure(bench, server, map, &shutdown).await;
    stop_sim.cancel();
    if let Some(task) = sim_task {
        let _ = task.await;
    }
    result
}

async fn measure(
    bench: &ModbusBench,
    server: SocketAddr,
    map: RegisterMap,
    shutdown: &CancellationToken,
) -> Result<ModbusReport, ModbusBenchError> {
    let mut plc = ModbusCabinet::connect(server, map.clone(), bench.timeout).await?;
    // Warm the connection and both ends' code paths before measuring.
    for _ in 0..100 {
        plc.read_measurement().await?;
    }
    let run_for = Duration::from_secs_f64(bench.seconds.max(0.0));
    let mut ticker = tokio::time::interval(bench.period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let end = Instant::now() + run_for;
    let (mut round_trips, mut jitter, mut lateness) = (Vec::new(), Vec::new(), Vec::new());
    let (mut errors, mut missed) = (0u64, 0u64);
    let mut previous: Option<(Instant, Instant)> = None;
    loop {
        let scheduled = tokio::select! {
            _ = shutdown.cancelled() => break,
            t = ticker.tick() => t,
        };
        let started = Instant::now();
        if started >= end {
            break;
        }
        lateness.push(started - scheduled);
        if let Some((prev_scheduled, prev_started)) = previous {
            let skipped = (scheduled - prev_scheduled).as_nanos() / bench.period.as_nanos().max(1);
            missed += (skipped as u64).saturating_sub(1);
            if skipped == 1 {
                let actual = started - prev_started;
                jitter.push(actual.abs_diff(bench.period));
            }
        }
        previous = Some((scheduled, started));
        match plc.read_measurement().await {
            Ok(_) => round_trips.push(started.elapsed()),
            Err(e) => {
                errors += 1;
                if e.needs_reconnect() {
                    plc = ModbusCabinet::connect(server, map.clone(), bench.timeout).await?;
                }
            }
        }
    }
    if round_trips.is_empty() {
        return Err(ModbusBenchError::NoSamples(run_for));
    }
    Ok(ModbusReport {
        server: server.to_string(),
        period_us: bench.period.as_secs_f64() * 1e6,
        polls: round_trips.len() as u64,
        errors,
        missed_ticks: missed,
        round_trip: Spread::of(&mut round_trips),
        period_jitter: Spread::of(&mut jitter),
        lateness: Spread::of(&mut lateness),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_uses_nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let s = Spread::of(&mut v);
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (50.0, 99.0, 100.0));
        assert_eq!(Spread::of(&mut []), Spread::default());
    }

    #[tokio::test]
    async fn modbus_bench_polls_the_simulator_once_per_period() {
        let bench = ModbusBench::new(Duration::from_millis(5), 0.5);
        let report = run(&bench, CancellationToken::new()).await.unwrap();
        assert_eq!(report.errors, 0);
        // 100 periods in 0.5 s; a loaded test machine may skip some, never add any.
        assert!(
            (1..=100).contains(&(report.polls + report.missed_ticks)),
            "{report:?}"
        );
        assert!(report.round_trip.p50_us > 0.0);
        assert!(report.round_trip.p50_us <= report.round_trip.p99_us);
        assert!(report.round_trip.p99_us <= report.round_trip.max_us);
    }
}
