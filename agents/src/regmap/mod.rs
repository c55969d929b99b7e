//! The Modbus register map: where a cabinet keeps its load coils, its source selector and the
//! four measurements (U, I, PA, PR), and how each measurement is encoded (type, scale, word
//! order).
//!
//! A map is read from TOML (see `agents/maps/*.toml`) and validated once; the built-in default
//! is the simulator's map. The same map drives the client (what to read, how to decode) and the
//! simulator (what to serve, how to encode), so the two can never disagree.

mod codec;
mod parse;

use serde::Deserialize;

pub use codec::{DecodeError, EncodeError, RegisterImage};
pub use parse::RegMapError;

/// Number of switchable loads in the cabinet (750-1500 channels 0..=6). Loads are numbered
/// 1..=7 everywhere a person sees them (logs, errors, docs, `set_load`), as on the cabinet;
/// arrays indexed by load hold load `n` at index `n - 1`.
pub const LOADS: usize = 7;

/// One reading of the power meter, in SI units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Voltage, volts.
    pub u: f64,
    /// Current, amperes.
    pub i: f64,
    /// Active power, watts.
    pub pa: f64,
    /// Reactive power, var (> 0 inductive, < 0 capacitive).
    pub pr: f64,
}

/// The state of the output card: which loads are on, and which source feeds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// `loads[n - 1]` is true when load n (1..=7) is connected.
    pub loads: [bool; LOADS],
    /// The selected source, 1 or 2.
    pub source: u8,
}

impl Default for Switches {
    /// All loads off, source 1: the cabinet's power-on state.
    fn default() -> Self {
        Self {
            loads: [false; LOADS],
            source: 1,
        }
    }
}

/// A request to switch something the cabinet does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// Loads are numbered 1..=7.
    #[error("no load {0}: loads are numbered 1..={LOADS}")]
    NoSuchLoad(usize),
    /// Sources are numbered 1 and 2.
    #[error("no source {0}: sources are 1 and 2")]
    NoSuchSource(u8),
}

/// Which Modbus register table holds the measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Input registers (read with function 4).
    Input,
    /// Holding registers (read with function 3).
    Holding,
}

/// Order of the two 16-bit words of a 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// Most significant word at the lower address (Modbus "big-endian").
    HighFirst,
    /// Least significant word at the lower address (CODESYS DINT/REAL layout).
    LowFirst,
}

/// How one measurement is stored in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// IEEE-754 single precision, two registers.
    F32,
    /// Signed 16-bit, one register.
    I16,
    /// Unsigned 16-bit, one register.
    U16,
    /// Signed 32-bit, two registers.
    I32,
    /// Unsigned 32-bit, two registers.
    U32,
}

impl ValueType {
    /// Number of 16-bit registers the type occupies.
    pub fn words(self) -> u16 {
        match self {
            ValueType::I16 | ValueType::U16 => 1,
            ValueType::F32 | ValueType::I32 | ValueType::U32 => 2,
        }
    }
}

/// The four measured quantities (one definition for the whole crate, in `topics`).
pub use crate::topics::Quantity;

/// Where and how one quantity is stored.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Address of the first register.
    pub address: u16,
    /// Stored type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// value = raw × scale.
    #[serde(default = "unit_scale")]
    pub scale: f64,
}

fn unit_scale() -> f64 {
    1.0
}

/// Coil addresses of the output card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoilMap {
    /// Coil address of each load.
    pub loads: [u16; LOADS],
    /// Coil address of the source selector (off = source 1, on = source 2).
    pub source: u16,
}

/// One contiguous register read: a Modbus request the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterRead {
    /// Table to read.
    pub table: Table,
    /// First address.
    pub address: u16,
    /// Number of registers.
    pub count: u16,
}

/// A validated register map.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    coils: CoilMap,
    table: Table,
    word_order: WordOrder,
    registers: [Register; 4],
}

impl RegisterMap {
    /// Coil addresses of the loads and the source selector.
    pub fn coils(&self) -> &CoilMap {
        &self.coils
    }

    /// The register table holding the measurements.
    pub fn table(&self) -> Table {
        self.table
    }

    /// Word order of 32-bit values.
    pub fn word_order(&self) -> WordOrder {
        self.word_order
    }

    /// Where and how quantity `q` is stored.
    pub fn register(&self, q: Quantity) -> &Register {
        &self.registers[q as usize]
    }

    /// The four quantities with their registers.
    pub fn entries(&self) -> impl Iterator<Item = (Quantity, &Register)> {
        Quantity::ALL.into_iter().zip(self.registers.iter())
    }

    /// True when `address` in the measurement table belongs to a mapped quantity.
    pub fn is_mapped_register(&self, address: u16) -> bool {
        self.entries().any(|(_, r)| {
            address >= r.address
                && u32::from(address) < u32::from(r.address) + u32::from(r.value_type.words())
        })
    }

    /// The fewest contiguous reads that fetch every mapped measurement register: adjacent
    /// registers are merged, so one read when the four are contiguous.
    pub fn read_plan(&self) -> Vec<RegisterRead> {
        let mut spans: Vec<(u32, u32)> = self
            .entries()
            .map(|(_, r)| {
                let start = u32::from(r.address);
                (start, start + u32::from(r.value_type.words()))
            })
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => merged.push((start, end)),
            }
        }
        merged
            .into_iter()
            .map(|(start, end)| RegisterRead {
                table: self.table,
                // Validation guarantees end <= 65536 and at most 8 registers per span.
                address: start as u16,
                count: (end - start) as u16,
            })
            .collect()
    }

    /// Coil reads covering all eight coils: one per run of adjacent addresses.
    pub fn coil_plan(&self) -> Vec<(u16, u16)> {
        let mut addresses: Vec<u16> = self.coils.loads.to_vec();
        addresses.push(self.coils.source);
        addresses.sort_unstable();
        let mut runs: Vec<(u16, u16)> = Vec::new();
        for a in addresses {
            match runs.last_mut() {
                Some((start, count)) if u32::from(*start) + u32::from(*count) == u32::from(a) => {
                    *count += 1
                }
                _ => runs.push((a, 1)),
            }
        }
        runs
    }

    /// The switch state from coil values indexed by address; `None` if a mapped coil is missing.
    pub fn switches_from_coils(&self, coil: impl Fn(u16) -> Option<bool>) -> Option<Switches> {
        let mut loads = [false; LOADS];
        for (slot, &address) in loads.iter_mut().zip(self.coils.loads.iter()) {
            *slot = coil(address)?;
        }
        let source = if coil(self.coils.source)? { 2 } else { 1 };
        Some(Switches { loads, source })
    }
}

#[cfg(test)]
mod tests;
