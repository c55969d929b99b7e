//! Churn toggles random loads and sources on a schedule; a seed makes it reproducible, and the
//! same logic drives the simulator in-process or a cabinet over Modbus.

mod sim_support;

use std::time::Duration;

use sim_support::{exact, start, BOUND};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use wattchain::modbus::ModbusCabinet;
use wattchain::regmap::Switches;
use wattchain::sim::{run_churn, ChurnSpec, ChurnSpecError, LoadSwitch, SimConfig, Simulator};

/// One churn step as observed: (load, on, source, time since start).
type Step = (usize, bool, u8, Duration);

/// Wraps a switch, records each step, and stops churn after `limit` steps.
struct Recorder<S> {
    inner: S,
    steps: Vec<Step>,
    pending: Option<(usize, bool)>,
    start: Instant,
    limit: usize,
    stop: CancellationToken,
}

impl<S: LoadSwitch + Send> LoadSwitch for Recorder<S> {
    type Error = S::Error;

    async fn read_switches(&mut self) -> Result<Switches, S::Error> {
        self.inner.read_switches().await
    }

    async fn set_load(&mut self, load: usize, on: bool) -> Result<(), S::Error> {
        self.pending = Some((load, on));
        self.inner.set_load(load, on).await
    }

    async fn set_source(&mut self, source: u8) -> Result<(), S::Error> {
        self.inner.set_source(source).await?;
        if let Some((load, on)) = self.pending.take() {
            self.steps.push((load, on, source, self.start.elapsed()));
        }
        if self.steps.len() >= self.limit {
            self.stop.cancel();
        }
        Ok(())
    }
}

/// Runs churn on a fresh noise-free simulator (in-process) for `steps` steps.
async fn churn_steps(spec: &str, seed: u64, steps: usize) -> Vec<Step> {
    let sim = Simulator::new(exact(Switches::default()));
    let stop = CancellationToken::new();
    let mut recorder = Recorder {
        inner: sim,
        steps: Vec::new(),
        pending: None,
        start: Instant::now(),
        limit: steps,
        stop: stop.clone(),
    };
    let spec: ChurnSpec = spec.parse().expect("valid spec");
    // Virtual time: the bound is generous because the paused clock jumps over the waits.
    timeout(
        Duration::from_secs(3600),
        run_churn(&mut recorder, spec, Some(seed), stop),
    )
    .await
    .expect("churn stops after the limit")
    .expect("in-process switching cannot fail");
    recorder.steps
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_switch_sequence() {
    let a = churn_steps("1s..5s", 11, 20).await;
    let b = churn_steps("1s..5s", 11, 20).await;
    assert_eq!(a.len(), 20);
    assert_eq!(a, b);
}

#[tokio::test(start_paused = true)]
async fn a_different_seed_gives_a_different_switch_sequence() {
    let a = churn_steps("1s..5s", 11, 20).await;
    let b = churn_steps("1s..5s", 12, 20).await;
    assert_ne!(a, b);
}

#[tokio::test(start_paused = true)]
async fn churn_waits_within_the_range_and_uses_every_load_and_both_sources() {
    let steps = churn_steps("1s..5s", 7, 200).await;
    let mut previous = Duration::ZERO;
    for &(load, _, source, at) in &steps {
        let gap = at - previous;
        assert!(
            gap >= Duration::from_secs(1) && gap <= Duration::from_secs(5),
            "gap {gap:?}"
        );
        assert!((1..=7).contains(&load) && (source == 1 || source == 2));
        previous = at;
    }
    for load in 1..=7 {
        assert!(
            steps.iter().any(|s| s.0 == load),
            "load {load} never switched"
        );
    }
    assert!(steps.iter().any(|s| s.2 == 1) && steps.iter().any(|s| s.2 == 2));
}

#[tokio::test(start_paused = true)]
async fn a_fixed_period_switches_exactly_every_period_and_toggles_loads() {
    let steps = churn_steps("2s", 3, 10).await;
    let times: Vec<u64> = steps.iter().map(|s| s.3.as_secs()).collect();
    assert_eq!(times, (1..=10).map(|k| 2 * k).collect::<Vec<u64>>());
    // Each step toggles: replaying the steps from all-off must agree with each `on`.
    let mut loads = [false; 7];
    for &(load, on, _, _) in &steps {
        assert_eq!(on, !loads[load - 1], "step must invert load {load}");
        loads[load - 1] = on;
    }
}

#[test]
fn churn_specs_parse_fixed_and_ranged_periods_and_reject_nonsense() {
    assert_eq!(
        "2s".parse::<ChurnSpec>(),
        Ok(ChurnSpec::Every(Duration::from_secs(2)))
    );
    assert_eq!(
        "1s..5s".parse::<ChurnSpec>(),
        Ok(ChurnSpec::Between(
            Duration::from_secs(1),
            Duration::from_secs(5)
        ))
    );
    assert_eq!(
        "500ms..2s".parse::<ChurnSpec>(),
        Ok(ChurnSpec::Between(
            Duration::from_millis(500),
            Duration::from_secs(2)
        ))
    );
    assert!(matches!(
        "5s..1s".parse::<ChurnSpec>(),
        Err(ChurnSpecError::Reversed { .. })
    ));
    assert_eq!("0s".parse::<ChurnSpec>(), Err(ChurnSpecError::Zero));
    assert!(matches!(
        "soon".parse::<ChurnSpec>(),
        Err(ChurnSpecError::Duration { .. })
    ));
}

#[tokio::test]
async fn churn_drives_a_cabinet_over_modbus() {
    let running = start(exact(Switches::default())).await;
    let cabinet: ModbusCabinet = running.connect().await;
    let stop = CancellationToken::new();
    let mut recorder = Recorder {
        inner: cabinet,
        steps: Vec::new(),
        pending: None,
        start: Instant::now(),
        limit: 5,
        stop: stop.clone(),
    };
    let spec: ChurnSpec = "10ms".parse().expect("valid spec");
    timeout(BOUND, run_churn(&mut recorder, spec, Some(9), stop))
        .await
        .expect("five steps within bound")
        .expect("Modbus switching works");
    // The simulator ends in the state the recorded steps imply.
    let mut expected = Switches::default();
    for &(load, on, source, _) in &recorder.steps {
        expected.loads[load - 1] = on;
        expected.source = source;
    }
    assert_eq!(recorder.steps.len(), 5);
    assert_eq!(running.sim.switches(), expected);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_simulator_configured_with_churn_switches_loads_while_serving() {
    let config = SimConfig {
        churn: Some("1s".parse().expect("valid spec")),
        ..exact(Switches::default())
    };
    let running = start(config).await;
    // Poll in virtual time: each sleep lets the paused clock jump to the next churn step.
    let changed = timeout(Duration::from_secs(600), async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if running.sim.switches().loads.iter().any(|&on| on) {
                break;
            }
        }
    })
    .await;
    assert!(
        changed.is_ok(),
        "no load switched within 10 virtual minutes"
    );
    running.stop().await;
}
