//! `wattchain.toml`: one file for every agent, one section per agent (`[broker]`, `[cabinet]`,
//! `[simulator]`, `[averager]`, `[node]`, `[publisher]`, `[web]`, `[up]`) and the settings
//! they share (`[bus]`, `[ha]`).
//!
//! Every default lives in the sections' `Default` impls, most taken from the library's own
//! configurations (`CabinetConfig::new`, `NodeConfig::default`, ...); the command line only
//! overrides what it is given, and `wattchain generate-config` prints these values
//! ([`super::render`]). Unknown keys are refused with their path and line, so a typo is never
//! silently a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use wattchain_broker::BrokerConfig;

pub use super::sections::{
    AveragerSection, BusSection, CabinetSection, HaSection, NodeSection, PublisherSection,
    SimulatorSection, UpSection, WebSection, DEFAULT_BROKER_URL,
};

/// The sections of the file, in the order `generate-config` prints them.
pub const SECTIONS: &[&str] = &[
    "bus",
    "ha",
    "broker",
    "cabinet",
    "simulator",
    "averager",
    "node",
    "publisher",
    "web",
    "up",
];

/// The whole file; every section and every key is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WattchainConfig {
    /// How every agent reaches the broker, and the topic namespace.
    pub bus: BusSection,
    /// Home Assistant discovery (cabinets and nodes).
    pub ha: HaSection,
    /// The broker (`wattchain broker`, and the one `wattchain up` embeds).
    #[serde(skip_serializing)]
    pub broker: BrokerConfig,
    /// `wattchain cabinet`.
    pub cabinet: CabinetSection,
    /// `wattchain sim`.
    pub simulator: SimulatorSection,
    /// `wattchain averager`.
    pub averager: AveragerSection,
    /// `wattchain node` (and `publisher`).
    pub node: NodeSection,
    /// `wattchain publisher`.
    pub publisher: PublisherSection,
    /// `wattchain web`, and the HTTP API of every process that serves one.
    pub web: WebSection,
    /// `wattchain up` (which also reads the sections of the agents it runs).
    pub up: UpSection,
}

/// Why a configuration file cannot be used.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong kind.
    #[error("{}, line {line}, column {column}: {}{message}", path.display(), key_prefix(key))]
    Parse {
        /// The path given.
        path: PathBuf,
        /// The dotted path of the offending key (`cabinet.period`), when known.
        key: Option<String>,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A broker-only file (the format of `wattchain broker generate-config`) is invalid.
    #[error(transparent)]
    Broker(#[from] wattchain_broker::ConfigError),
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

impl WattchainConfig {
    /// Reads a file. A broker-only file (top-level broker keys, as `wattchain broker
    /// generate-config` prints) is read as the `[broker]` section.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        if is_broker_only(&text) {
            let broker = BrokerConfig::from_file(path)?;
            return Ok(WattchainConfig {
                broker,
                ..WattchainConfig::default()
            });
        }
        let mut config = Self::from_toml(&text, path)?;
        // As the broker does for its own file: a relative users file is beside this one.
        if let Some(users) = &config.broker.users_file {
            if users.is_relative() {
                let dir = path.parent().unwrap_or(Path::new("."));
                config.broker.users_file = Some(dir.join(users));
            }
        }
        Ok(config)
    }

    /// Parses `text`; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, FileError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let start = inner.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            FileError::Parse {
                path: origin.to_owned(),
                key: (!key.is_empty() && key != ".").then_some(key),
                line,
                column,
                message: inner.message().trim_end().to_owned(),
            }
        })
    }
}

/// A file of top-level broker keys rather than sections (only tables at the top level).
fn is_broker_only(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.values().any(|v| !v.is_table()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::Churn;
    use crate::web::HttpListen;

    fn parse(text: &str) -> Result<WattchainConfig, FileError> {
        WattchainConfig::from_toml(text, Path::new("w.toml"))
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_path_and_line() {
        let err =
            parse("[bus]\nroot = \"site\"\n\n[cabinet]\nwindow = 8\nperod = \"2s\"\n").unwrap_err();
        let FileError::Parse { key, line, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(key.as_deref(), Some("cabinet.perod"), "{err}");
        assert_eq!(*line, 6, "{err}");
        let text = err.to_string();
        assert!(text.starts_with("w.toml, line 6"), "{text}");
        assert!(text.contains("unknown field `perod`"), "{text}");
        let section = parse("[cabnet]\nperiod = \"2s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            section.contains("line 1") && section.contains("cabnet"),
            "{section}"
        );
    }

    #[test]
    fn a_bad_duration_is_refused_with_its_key() {
        let err = parse("[cabinet]\nperiod = \"2 parsecs\"\n").unwrap_err();
        let FileError::Parse { key, line, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(key.as_deref(), Some("cabinet.period"), "{err}");
        assert_eq!(*line, 2, "{err}");
    }

    #[test]
    fn a_file_sets_only_what_it_names() {
        let config =
            parse("[cabinet]\nperiod = \"250ms\"\n[up]\nchurn = \"off\"\nhttp = \"off\"\n")
                .unwrap();
        assert_eq!(config.cabinet.period, Duration::from_millis(250));
        assert_eq!(config.up.churn, Churn(None));
        assert_eq!(config.up.http, HttpListen(None));
        let defaults = WattchainConfig::default();
        assert_eq!(config.cabinet.window, defaults.cabinet.window);
        assert_eq!(config.broker, defaults.broker);
        assert_eq!(config.up.nodes, defaults.up.nodes);
    }

    #[test]
    fn a_broker_only_file_is_the_broker_section() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1999\"\n").unwrap();
        let config = WattchainConfig::from_file(&file).unwrap();
        assert_eq!(config.broker.listen, "127.0.0.1:1999".parse().unwrap());
        assert_eq!(config.cabinet, CabinetSection::default());
    }

    #[test]
    fn secrets_are_hidden_from_debug() {
        let mut config = WattchainConfig::default();
        config.bus.password = Some("hunter2".into());
        config.web.http_token = Some("t0ken".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("t0ken"),
            "{shown}"
        );
    }
}
