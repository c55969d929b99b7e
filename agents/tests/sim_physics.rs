//! The simulator's readings over Modbus match hand-computed circuit values.
//!
//! Component values (documented in `sim/physics.rs`): load 1 R = 264.5 Ω; load 4 R = 80 Ω
//! with X_L = 60 Ω (|Z| = 100 Ω); load 6 R = 120 Ω with C = 20 µF (X_C = 159.155 Ω);
//! load 7 R = 200 Ω with C = 30 µF (X_C = 106.103 Ω). Source 1 = 241 V, source 2 = 236 V.
//! Meter offsets: I + 0.1 A, PA − 16 W, PR − 6 var.

mod sim_support;

use sim_support::{assert_close, exact, start, with_loads, BOUND};
use wattchain::regmap::Measurement;

/// Reads one measurement over Modbus from a noise-free simulator in the given state.
async fn reading(on: &[usize], source: u8) -> (Measurement, Measurement) {
    let running = start(exact(with_loads(on, source))).await;
    let mut cabinet = running.connect().await;
    let m = tokio::time::timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("reply within bound")
        .expect("reading");
    let expected = running.sim.expected();
    running.stop().await;
    (m, expected)
}

// Readings travel as f32, so compare to ~1e-5 relative.
fn check(m: &Measurement, u: f64, i: f64, pa: f64, pr: f64) {
    assert_close("U", m.u, u, 1e-3);
    assert_close("I", m.i, i, 1e-4);
    assert_close("PA", m.pa, pa, 1e-2);
    assert_close("PR", m.pr, pr, 1e-2);
}

#[tokio::test]
async fn no_load_reads_the_meter_offsets_at_source_voltage() {
    let (m, _) = reading(&[], 1).await;
    check(&m, 241.0, 0.1, -16.0, -6.0);
}

#[tokio::test]
async fn pure_resistive_load_draws_u_over_r_with_no_reactive_power() {
    // I = 241 / 264.5 = 0.911153 A; PA = 241² / 264.5 = 219.588 W; PR = 0.
    let (m, _) = reading(&[1], 1).await;
    check(&m, 241.0, 0.911_153 + 0.1, 219.587_9 - 16.0, -6.0);
}

#[tokio::test]
async fn inductive_load_gives_positive_reactive_power() {
    // |Z| = 100 Ω: I = 2.41 A; PA = 2.41² · 80 = 464.648 W; PR = 2.41² · 60 = 348.486 var.
    let (m, _) = reading(&[4], 1).await;
    check(&m, 241.0, 2.41 + 0.1, 464.648 - 16.0, 348.486 - 6.0);
    assert!(m.pr > 0.0, "inductive PR must be positive, got {}", m.pr);
}

#[tokio::test]
async fn capacitive_load_gives_negative_reactive_power() {
    // |Z|² = 120² + 159.155² = 39730.3; I = 236 / 199.324 = 1.183998 A;
    // PA = 236² · 120 / 39730.3 = 168.222 W; PR = −236² · 159.155 / 39730.3 = −223.112 var.
    let (m, _) = reading(&[6], 2).await;
    check(&m, 236.0, 1.183_998 + 0.1, 168.222 - 16.0, -223.112 - 6.0);
    assert!(m.pr < 0.0, "capacitive PR must be negative, got {}", m.pr);
}

#[tokio::test]
async fn parallel_r_rl_rc_loads_add_their_admittances() {
    // Y = 1/264.5 + (80 − 60j)/10⁴ + (120 + 159.155j)/39730.3
    //   = 0.0037807 + 0.008 + 0.0030204 + j(−0.006 + 0.0040059) = 0.0148011 − 0.0019941j S.
    // I = 241 · |Y| = 3.59929 A; PA = 241² · 0.0148011 = 859.662 W; PR = 241² · 0.0019941 = 115.820.
    let (m, expected) = reading(&[1, 4, 6], 1).await;
    check(&m, 241.0, 3.599_29 + 0.1, 859.662 - 16.0, 115.820 - 6.0);
    check(&m, expected.u, expected.i, expected.pa, expected.pr);
}

#[tokio::test]
async fn noisy_readings_scatter_around_the_noise_free_value() {
    let mut config = exact(with_loads(&[2, 4], 1));
    config.noise = true;
    config.seed = Some(42);
    let running = start(config).await;
    let mut cabinet = running.connect().await;
    let expected = running.sim.expected();
    let n = 200;
    let mut readings = Vec::with_capacity(n);
    for _ in 0..n {
        let m = tokio::time::timeout(BOUND, cabinet.read_measurement())
            .await
            .expect("reply within bound")
            .expect("reading");
        readings.push(m);
    }
    running.stop().await;
    let mean = |f: fn(&Measurement) -> f64| readings.iter().map(f).sum::<f64>() / n as f64;
    let sd = |f: fn(&Measurement) -> f64, mu: f64| {
        (readings.iter().map(|m| (f(m) - mu).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    let mu_pa = mean(|m| m.pa);
    let sd_pa = sd(|m| m.pa, mu_pa);
    // Readings differ (noise is on) with about 0.5 % spread; drift moves U by at most 1 V,
    // which moves PA by at most ~1 %.
    assert!(
        sd_pa > 0.002 * expected.pa && sd_pa < 0.01 * expected.pa,
        "sd PA {sd_pa}"
    );
    assert_close(
        "mean U",
        mean(|m| m.u),
        expected.u,
        1.0 + 0.01 * expected.u / (n as f64).sqrt() * 4.0,
    );
    assert_close(
        "mean PA",
        mu_pa,
        expected.pa,
        0.01 * expected.pa + 4.0 * sd_pa / (n as f64).sqrt(),
    );
}
