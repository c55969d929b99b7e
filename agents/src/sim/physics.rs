//! The electrical model of the simulated cabinet: seven lab loads on a 50 Hz supply, two
//! sources with slow drift, and a power meter with noise and the real 750-494's zero offsets.
//!
//! Each load is a series circuit, Z = R + jX with X = ωL (inductive) or −1/(ωC)
//! (capacitive). The loads that are on are in parallel, so their admittances Y = 1/Z add.
//! With the measured source at U volts: I = U·|Y|, S = U²·conj(Y), PA = Re S, PR = Im S,
//! which makes PR positive for inductive and negative for capacitive loads.

use std::f64::consts::PI;

use rand::{rngs::StdRng, Rng};
use rand_distr::{Distribution, StandardNormal};
use tokio::time::Instant;

use crate::regmap::{Measurement, Switches, LOADS};

/// Supply frequency, hertz.
pub const FREQUENCY_HZ: f64 = 50.0;

/// Nominal voltage of source 1 and source 2, volts.
pub const SOURCE_VOLTS: [f64; 2] = [241.0, 236.0];

/// Peak amplitude of each source's slow drift, volts.
pub const DRIFT_VOLTS: f64 = 1.0;

/// Drift periods of source 1 and source 2, seconds (different, so they never move in step).
const DRIFT_PERIOD_S: [f64; 2] = [600.0, 780.0];

/// Meter reading with no load connected: current, amperes (the real cabinet shows ≈ 0.1 A).
pub const OFFSET_I: f64 = 0.1;
/// Meter reading with no load connected: active power, watts.
pub const OFFSET_PA: f64 = -16.0;
/// Meter reading with no load connected: reactive power, var.
pub const OFFSET_PR: f64 = -6.0;

/// Relative standard deviation of the noise on U.
pub const SIGMA_U: f64 = 0.003;
/// Relative standard deviation of the noise on I, PA and PR.
pub const SIGMA_I_P: f64 = 0.005;

/// The reactive part of a load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reactance {
    /// A pure resistor.
    None,
    /// A series inductor, henry.
    Inductor(f64),
    /// A series capacitor, farad.
    Capacitor(f64),
}

/// One switchable load: a resistor in series with an optional inductor or capacitor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Resistance, ohms.
    pub ohms: f64,
    /// The series reactive component.
    pub reactance: Reactance,
}

/// The cabinet's seven loads (≈ 100–600 W at 230 V), indexed like the output card channels:
/// load n (1..=7) at index n − 1.
pub const LOAD_BANK: [Load; LOADS] = [
    // 0: R, 200 W at 230 V.
    Load {
        ohms: 264.5,
        reactance: Reactance::None,
    },
    // 1: R, 400 W at 230 V.
    Load {
        ohms: 132.25,
        reactance: Reactance::None,
    },
    // 2: R, 600 W at 230 V.
    Load {
        ohms: 88.0,
        reactance: Reactance::None,
    },
    // 3: R-L, X = 60 Ω, |Z| = 100 Ω: ≈ 423 W, 317 var at 230 V.
    Load {
        ohms: 80.0,
        reactance: Reactance::Inductor(0.190_985_9),
    },
    // 4: R-L, X = 90 Ω: ≈ 259 W, 156 var at 230 V.
    Load {
        ohms: 150.0,
        reactance: Reactance::Inductor(0.286_478_9),
    },
    // 5: R-C, 20 µF (X ≈ −159 Ω): ≈ 160 W, −212 var at 230 V.
    Load {
        ohms: 120.0,
        reactance: Reactance::Capacitor(20e-6),
    },
    // 6: R-C, 30 µF (X ≈ −106 Ω): ≈ 206 W, −109 var at 230 V.
    Load {
        ohms: 200.0,
        reactance: Reactance::Capacitor(30e-6),
    },
];

impl Load {
    /// Series reactance X at [`FREQUENCY_HZ`], ohms (> 0 inductive, < 0 capacitive).
    pub fn reactance_ohms(&self) -> f64 {
        let omega = 2.0 * PI * FREQUENCY_HZ;
        match self.reactance {
            Reactance::None => 0.0,
            Reactance::Inductor(h) => omega * h,
            Reactance::Capacitor(f) => -1.0 / (omega * f),
        }
    }

    /// Admittance 1/(R + jX) as (conductance G, susceptance B), siemens.
    pub fn admittance(&self) -> (f64, f64) {
        let (r, x) = (self.ohms, self.reactance_ohms());
        let z2 = r * r + x * x;
        (r / z2, -x / z2)
    }
}

/// The reading of an ideal meter (no noise, no drift) for `switches` at `volts`, including
/// the meter's zero offsets.
pub fn ideal_reading(switches: &Switches, volts: f64) -> Measurement {
    let (g, b) = LOAD_BANK
        .iter()
        .zip(switches.loads)
        .filter(|(_, on)| *on)
        .map(|(load, _)| load.admittance())
        .fold((0.0, 0.0), |(g, b), (lg, lb)| (g + lg, b + lb));
    let u2 = volts * volts;
    Measurement {
        u: volts,
        i: volts * g.hypot(b) + OFFSET_I,
        // S = U²·conj(Y) = U²·(G − jB).
        pa: u2 * g + OFFSET_PA,
        pr: -u2 * b + OFFSET_PR,
    }
}

/// Nominal voltage of `source` (1 or 2; anything else reads as source 1).
pub fn nominal_volts(source: u8) -> f64 {
    if source == 2 {
        SOURCE_VOLTS[1]
    } else {
        SOURCE_VOLTS[0]
    }
}

/// The noise-free reading for `switches`: nominal source voltage, no drift.
pub fn expected(switches: &Switches) -> Measurement {
    ideal_reading(switches, nominal_volts(switches.source))
}

/// The simulated meter: drift and noise on top of [`ideal_reading`].
#[derive(Debug)]
pub struct Meter {
    rng: StdRng,
    noise: bool,
    start: Instant,
    drift_phase: [f64; 2],
}

impl Meter {
    /// A meter drawing its noise and drift phases from `rng`; `noise = false` makes every
    /// reading equal [`expected`].
    pub fn new(mut rng: StdRng, noise: bool) -> Self {
        let drift_phase = [
            rng.random_range(0.0..2.0 * PI),
            rng.random_range(0.0..2.0 * PI),
        ];
        Self {
            rng,
            noise,
            start: Instant::now(),
            drift_phase,
        }
    }

    /// One reading for the current switch state.
    pub fn read(&mut self, switches: &Switches) -> Measurement {
        if !self.noise {
            return expected(switches);
        }
        let k = if switches.source == 2 { 1 } else { 0 };
        let t = self.start.elapsed().as_secs_f64();
        let drift = DRIFT_VOLTS * (2.0 * PI * t / DRIFT_PERIOD_S[k] + self.drift_phase[k]).sin();
        let ideal = ideal_reading(switches, SOURCE_VOLTS[k] + drift);
        let mut jitter = |value: f64, sigma: f64| {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            value * (1.0 + sigma * z)
        };
        Measurement {
            u: jitter(ideal.u, SIGMA_U),
            i: jitter(ideal.i, SIGMA_I_P),
            pa: jitter(ideal.pa, SIGMA_I_P),
            pr: jitter(ideal.pr, SIGMA_I_P),
        }
    }
}
