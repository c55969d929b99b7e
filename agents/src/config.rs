//! What an agent's configuration must satisfy before anything starts: the typed error every
//! `validate()` returns (`CabinetConfig`, `AveragerConfig`, `UpConfig`, `BusOptions`,
//! `HaConfig`), and the checks they share.
//!
//! Validation happens before a connection is opened or a file is written, so a bad value is a
//! clear message at start instead of a panic (a zero poll period used to panic in tokio's
//! `interval`) or a silent misbehaviour later. Keys are named as the command-line flags.
//!
//! - [`file`]: `wattchain.toml`, one section per agent, every default, errors with the key's
//!   path and line.
//! - [`sections`]: the sections, their defaults and the library configurations they make.
//! - [`render`]: the commented file `wattchain generate-config` prints.

pub mod file;
pub mod render;
pub mod sections;

use std::ops::RangeInclusive;
use std::time::Duration;

use thiserror::Error;

use crate::topics::TopicError;
pub use file::{FileError, WattchainConfig};

/// The longest duration any setting accepts: beyond it `Instant + duration` can overflow (and
/// no poll period, deadline or timeout of this system means anything at that scale).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("--{key} must be greater than zero")]
    Zero {
        /// The setting (as its flag, without dashes).
        key: &'static str,
    },
    /// A duration beyond [`MAX_DURATION`].
    #[error("--{key} of {value:?} is longer than the longest accepted, 365 days")]
    TooLong {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: Duration,
    },
    /// A count outside its range.
    #[error("--{key} must be {min}..={max}, not {value}{why}")]
    OutOfRange {
        /// The setting.
        key: &'static str,
        /// The value given.
        value: u64,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
        /// Why the range is what it is (empty, or ": ..." with a reason).
        why: &'static str,
    },
    /// Two settings that contradict each other.
    #[error("--{key}: {reason}")]
    Inconsistent {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A setting without a default, given neither as a flag nor in the configuration file.
    #[error("--{key} (or `{path}` in the config file) is required")]
    Missing {
        /// The setting (as its flag, without dashes).
        key: &'static str,
        /// Its dotted path in `wattchain.toml`.
        path: &'static str,
    },
    /// An identifier, topic root or prefix that cannot be a topic level.
    #[error(transparent)]
    Topic(#[from] TopicError),
}

/// A positive duration of at most [`MAX_DURATION`].
pub fn positive(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::Zero { key });
    }
    at_most_max(key, value)
}

/// A duration (zero allowed) of at most [`MAX_DURATION`].
pub fn at_most_max(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_DURATION {
        return Err(ConfigError::TooLong { key, value });
    }
    Ok(())
}

/// A count within `range`; `why` (empty or `": reason"`) says where the bounds come from.
pub fn within(
    key: &'static str,
    value: usize,
    range: RangeInclusive<usize>,
    why: &'static str,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        key,
        value: value as u64,
        min: *range.start() as u64,
        max: *range.end() as u64,
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_flag_and_the_bound() {
        assert_eq!(
            positive("period", Duration::ZERO).unwrap_err().to_string(),
            "--period must be greater than zero"
        );
        let long = positive("period", MAX_DURATION + Duration::from_secs(1)).unwrap_err();
        assert!(long.to_string().contains("--period"), "{long}");
        let e = within(
            "window",
            10_001,
            1..=10_000,
            ": a task holds at most 10000 values",
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "--window must be 1..=10000, not 10001: a task holds at most 10000 values"
        );
        assert!(within("window", 10_000, 1..=10_000, "").is_ok());
        assert!(positive("period", MAX_DURATION).is_ok());
    }
}
