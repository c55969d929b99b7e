//! Reading a register map from TOML and checking it: the file format, the built-in default
//! and the validation rules, with errors that name what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CoilMap, Register, RegisterMap, Table, WordOrder, LOADS};

/// The built-in simulator map, `agents/maps/sim.toml`.
const DEFAULT_SIM_TOML: &str = include_str!("../../maps/sim.toml");

/// Why a register map was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RegMapError {
    /// The file could not be read.
    #[error("cannot read register map {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has missing/unknown fields.
    #[error("invalid register map TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// Two coils share an address.
    #[error("coil address {address} is used by both {first} and {second}")]
    CoilOverlap {
        /// The shared address.
        address: u16,
        /// First user.
        first: String,
        /// Second user.
        second: String,
    },
    /// Two measurements share a register.
    #[error("{first} and {second} overlap at register {address}")]
    RegisterOverlap {
        /// The shared address.
        address: u16,
        /// First quantity.
        first: &'static str,
        /// Second quantity.
        second: &'static str,
    },
    /// A 32-bit value starts at 65535 and would need register 65536.
    #[error(
        "{quantity} at address {address} needs {words} registers and does not fit below 65536"
    )]
    AddressOutOfRange {
        /// The quantity.
        quantity: &'static str,
        /// Its first address.
        address: u16,
        /// Registers it needs.
        words: u16,
    },
    /// A scale that is zero, NaN or infinite.
    #[error("{quantity}: scale {scale} must be finite and non-zero")]
    BadScale {
        /// The quantity.
        quantity: &'static str,
        /// The rejected scale.
        scale: f64,
    },
}

/// The file format, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    coils: RawCoils,
    measurements: RawMeasurements,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoils {
    loads: [u16; LOADS],
    source: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasurements {
    table: Table,
    #[serde(default = "default_word_order")]
    word_order: WordOrder,
    #[serde(rename = "U")]
    u: Register,
    #[serde(rename = "I")]
    i: Register,
    #[serde(rename = "PA")]
    pa: Register,
    #[serde(rename = "PR")]
    pr: Register,
}

fn default_word_order() -> WordOrder {
    WordOrder::HighFirst
}

impl RegisterMap {
    /// Parses and validates a map from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, RegMapError> {
        let raw: RawMap = toml::from_str(text)?;
        let m = raw.measurements;
        let map = RegisterMap {
            coils: CoilMap {
                loads: raw.coils.loads,
                source: raw.coils.source,
            },
            table: m.table,
            word_order: m.word_order,
            registers: [m.u, m.i, m.pa, m.pr],
        };
        map.validate()?;
        Ok(map)
    }

    /// Reads, parses and validates a map file.
    pub fn from_file(path: &Path) -> Result<Self, RegMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegMapError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// The simulator's map (`agents/maps/sim.toml`): input registers, f32, U@0 I@2 PA@4 PR@6.
    pub fn default_sim() -> Self {
        // The embedded file is covered by a unit test, so this cannot fail at run time.
        Self::from_toml_str(DEFAULT_SIM_TOML).expect("built-in agents/maps/sim.toml is valid")
    }

    /// The built-in simulator map as TOML text (for `generate-config`-style printing).
    pub fn default_sim_toml() -> &'static str {
        DEFAULT_SIM_TOML
    }

    fn validate(&self) -> Result<(), RegMapError> {
        let mut coils: BTreeMap<u16, String> = BTreeMap::new();
        let named = self
            .coils
            .loads
            .iter()
            .enumerate()
            .map(|(k, &a)| (a, format!("load {}", k + 1)))
            .chain(std::iter::once((
                self.coils.source,
                "the source selector".to_owned(),
            )));
        for (address, name) in named {
            if let Some(first) = coils.insert(address, name.clone()) {
                return Err(RegMapError::CoilOverlap {
                    address,
                    first,
                    second: name,
                });
            }
        }

        let mut owners: BTreeMap<u16, &'static str> = BTreeMap::new();
        for (q, reg) in self.entries() {
            if !reg.scale.is_finite() || reg.scale == 0.0 {
                return Err(RegMapError::BadScale {
                    quantity: q.as_str(),
                    scale: reg.scale,
                });
            }
            let words = reg.value_type.words();
            if u32::from(reg.address) + u32::from(words) > 65536 {
                return Err(RegMapError::AddressOutOfRange {
                    quantity: q.as_str(),
                    address: reg.address,
                    words,
                });
            }
            for address in reg.address..reg.address + words {
                if let Some(first) = owners.insert(address, q.as_str()) {
                    return Err(RegMapError::RegisterOverlap {
                        address,
                        first,
                        second: q.as_str(),
                    });
                }
            }
        }
        Ok(())
    }
}
