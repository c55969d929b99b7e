//! The cabinet's energy total: active energy imported, integrated from PA, kept in the data
//! directory so that it survives restarts and crashes.
//!
//! **Rule.** Between two successive readings at monotonic times t0 < t1 with powers p0 and p1,
//! the total grows by the trapezoid `(max(p0, 0) + max(p1, 0)) / 2 × (t1 − t0)`:
//! - *negative power* counts as zero: the total is energy taken from the supply, never
//!   decreasing (a negative PA is the meter's no-load offset or energy fed back);
//! - *gaps*: an interval longer than [`GAP_PERIODS`] poll periods (the PLC unreachable, polls
//!   failing, the agent stopped) adds nothing — the total under-counts what it did not see
//!   rather than invent it;
//! - *restarts*: the first reading after a start has no predecessor, so a restart is a gap,
//!   and the total continues from the value saved on disk.
//!
//! **Durability.** `energy.json` is replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory) every save interval and at a clean stop. Only saved values are
//! published, so the published total never decreases, even across `kill -9`; a crash loses at
//! most the energy integrated since the last save.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::time::Instant;

use crate::messages::{now_ts, parse_ts, EnergyTotal};

/// File name of the saved total inside the data directory.
pub const ENERGY_FILE: &str = "energy.json";

/// An interval between two readings longer than this many poll periods is a gap.
pub const GAP_PERIODS: u32 = 3;

/// Errors of the energy file.
#[derive(Debug, Error)]
pub enum EnergyError {
    /// The file or its directory could not be read or written.
    #[error("energy file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but is not a saved total: it was damaged (writes are atomic).
    #[error("energy file {path} is damaged ({reason}); move it away to start the total from zero")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// What `energy.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    /// The total, Wh.
    energy_wh: f64,
    /// When the total started from zero.
    since: String,
}

/// Integrates PA into an energy total and saves it.
#[derive(Debug)]
pub struct EnergyMeter {
    path: PathBuf,
    total_wh: f64,
    saved: Saved,
    last: Option<(Instant, f64)>,
    max_gap: Duration,
}

impl EnergyMeter {
    /// Opens the total saved in `dir` (or starts one at zero, saved at once); readings come
    /// every `period`.
    pub fn open(dir: &Path, period: Duration) -> Result<EnergyMeter, EnergyError> {
        let path = dir.join(ENERGY_FILE);
        let io = |source| EnergyError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let saved = match fs::read(&path) {
            Ok(bytes) => {
                let corrupt = |reason: String| EnergyError::Corrupt {
                    path: path.clone(),
                    reason,
                };
                let saved: Saved =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                if !(saved.energy_wh.is_finite() && saved.energy_wh >= 0.0) {
                    return Err(corrupt(format!("energy_wh {}", saved.energy_wh)));
                }
                parse_ts("since", &saved.since).map_err(|e| corrupt(e.to_string()))?;
                saved
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let saved = Saved {
                    energy_wh: 0.0,
                    since: now_ts(),
                };
                write_atomically(&path, &saved)?;
                saved
            }
            Err(e) => return Err(io(e)),
        };
        Ok(EnergyMeter {
            path,
            total_wh: saved.energy_wh,
            saved,
            last: None,
            max_gap: period.saturating_mul(GAP_PERIODS),
        })
    }

    /// Adds the energy since the previous reading (see the module's rule) and remembers this one.
    pub fn add(&mut self, at: Instant, pa_watts: f64) {
        if !pa_watts.is_finite() {
            return;
        }
        let p = pa_watts.max(0.0);
        if let Some((t0, p0)) = self.last {
            let dt = at.saturating_duration_since(t0);
            if !dt.is_zero() && dt <= self.max_gap {
                self.total_wh += (p0 + p) / 2.0 * dt.as_secs_f64() / 3600.0;
            }
        }
        self.last = Some((at, p));
    }

    /// The total integrated so far (saved or not), kWh.
    pub fn total_kwh(&self) -> f64 {
        self.total_wh / 1000.0
    }

    /// Saves the total (on tokio's blocking pool, like the outbox's fsync).
    pub async fn save(&mut self) -> Result<(), EnergyError> {
        let saved = Saved {
            energy_wh: self.total_wh,
            since: self.saved.since.clone(),
        };
        let (path, s) = (self.path.clone(), saved.clone());
        tokio::task::spawn_blocking(move || write_atomically(&path, &s))
            .await
            .map_err(|e| EnergyError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })??;
        self.saved = saved;
        Ok(())
    }

    /// The last saved total as the message published for `cabinet`.
    pub fn message(&self, cabinet: &str) -> EnergyTotal {
        EnergyTotal {
            cabinet: cabinet.to_string(),
            energy_kwh: self.saved.energy_wh / 1000.0,
            since: self.saved.since.clone(),
            ts: now_ts(),
        }
    }
}

/// Replaces `path` with `saved`: a reader (or a restart after a crash) sees the old file or
/// the new one, never a mix.
fn write_atomically(path: &Path, saved: &Saved) -> Result<(), EnergyError> {
    let tmp = path.with_extension("json.tmp");
    let io = |source| EnergyError::Io {
        path: tmp.clone(),
        source,
    };
    let json = serde_json::to_vec(saved).expect("a saved total always serialises");
    {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn constant_power_for_an_hour_is_its_energy_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut meter = EnergyMeter::open(dir.path(), SECOND).unwrap();
        let t0 = Instant::now();
        for s in 0..=3600 {
            meter.add(t0 + SECOND * s, 1000.0);
        }
        assert!(
            (meter.total_kwh() - 1.0).abs() < 1e-9,
            "{}",
            meter.total_kwh()
        );
        assert_eq!(
            meter.message("c1").energy_kwh,
            0.0,
            "published only once saved"
        );
        meter.save().await.unwrap();
        assert!((meter.message("c1").energy_kwh - 1.0).abs() < 1e-9);
        let since = meter.message("c1").since;
        drop(meter);

        let mut again = EnergyMeter::open(dir.path(), SECOND).unwrap();
        assert!(
            (again.total_kwh() - 1.0).abs() < 1e-9,
            "continues after a restart"
        );
        assert_eq!(again.message("c1").since, since);
        // The first reading after a restart starts a new interval: nothing is added for the
        // time the agent was away.
        again.add(t0 + SECOND * 100_000, 1000.0);
        assert!((again.total_kwh() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn trapezoids_between_readings_with_negative_power_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut meter = EnergyMeter::open(dir.path(), SECOND).unwrap();
        let t0 = Instant::now();
        meter.add(t0, 0.0);
        meter.add(t0 + SECOND * 2, 3600.0); // (0 + 3600)/2 W × 2 s = 1 Wh
        assert!((meter.total_kwh() * 1000.0 - 1.0).abs() < 1e-9);
        meter.add(t0 + SECOND * 3, -16.0); // (3600 + 0)/2 × 1 s = 0.5 Wh
        meter.add(t0 + SECOND * 4, -16.0); // nothing: no import
        assert!((meter.total_kwh() * 1000.0 - 1.5).abs() < 1e-9);
    }

    #[test]
    fn a_gap_longer_than_three_periods_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut meter = EnergyMeter::open(dir.path(), SECOND).unwrap();
        let t0 = Instant::now();
        meter.add(t0, 3600.0);
        meter.add(t0 + SECOND * 3, 3600.0); // 3 periods: still integrated, 3 Wh
        meter.add(t0 + SECOND * 7, 3600.0); // 4 periods: a gap
        meter.add(t0 + SECOND * 8, 3600.0); // 1 Wh
        assert!((meter.total_kwh() * 1000.0 - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_damaged_file_is_refused_by_name_instead_of_restarting_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(ENERGY_FILE),
            b"{\"energy_wh\":12.5,\"since\"",
        )
        .unwrap();
        let err = EnergyMeter::open(dir.path(), SECOND).unwrap_err();
        assert!(matches!(err, EnergyError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(ENERGY_FILE), "{err}");
        fs::write(
            dir.path().join(ENERGY_FILE),
            b"{\"energy_wh\":-1,\"since\":\"2026-11-21T10:00:00.000Z\"}",
        )
        .unwrap();
        assert!(EnergyMeter::open(dir.path(), SECOND).is_err());
    }
}
