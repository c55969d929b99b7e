//! Encoding measurements into registers and back, per the map's types, scales and word order.
//!
//! The client decodes what it read; the simulator encodes what it serves. Both go through a
//! [`RegisterImage`] (address → word) so sparse maps and split reads need no special cases.

use std::collections::BTreeMap;

use super::{Measurement, Quantity, Register, RegisterMap, ValueType, WordOrder};

/// Register contents by address, as read from or served to the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterImage(BTreeMap<u16, u16>);

impl RegisterImage {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `words` read starting at `address` (words past 65535 are ignored).
    pub fn insert_slice(&mut self, address: u16, words: &[u16]) {
        for (a, &w) in (address..=u16::MAX).zip(words) {
            self.0.insert(a, w);
        }
    }

    /// An image holding one read's words.
    pub fn from_slice(address: u16, words: &[u16]) -> Self {
        let mut image = Self::new();
        image.insert_slice(address, words);
        image
    }

    /// The word at `address`, if present.
    pub fn get(&self, address: u16) -> Option<u16> {
        self.0.get(&address).copied()
    }
}

/// Why registers could not be turned into a measurement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// A register the map needs was not in the reply.
    #[error("{quantity}: register {address} missing from the reply")]
    Missing {
        /// The quantity.
        quantity: &'static str,
        /// The missing address.
        address: u16,
    },
    /// The value is NaN or infinite (an f32 the PLC never initialised, a broken meter).
    #[error("{quantity}: value {value} is not a finite number")]
    NotFinite {
        /// The quantity.
        quantity: &'static str,
        /// The decoded value.
        value: f64,
    },
}

/// Why a measurement could not be put into registers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The scaled value does not fit the register type (e.g. a negative power as u16).
    #[error("{quantity}: {value} does not fit in {value_type:?} with scale {scale}")]
    OutOfRange {
        /// The quantity.
        quantity: &'static str,
        /// The value in SI units.
        value: f64,
        /// The register type.
        value_type: ValueType,
        /// The scale.
        scale: f64,
    },
}

impl RegisterMap {
    /// Decodes the four quantities from an image of the registers read.
    pub fn decode(&self, image: &RegisterImage) -> Result<Measurement, DecodeError> {
        let mut values = [0.0; 4];
        for ((q, reg), slot) in self.entries().zip(values.iter_mut()) {
            *slot = decode_one(q, reg, self.word_order(), image)?;
        }
        let [u, i, pa, pr] = values;
        Ok(Measurement { u, i, pa, pr })
    }

    /// Decodes one contiguous read of `words` starting at `address`.
    pub fn decode_slice(&self, address: u16, words: &[u16]) -> Result<Measurement, DecodeError> {
        self.decode(&RegisterImage::from_slice(address, words))
    }

    /// Encodes a measurement into the registers the map assigns (what a meter would hold).
    pub fn encode(&self, m: &Measurement) -> Result<RegisterImage, EncodeError> {
        let mut image = RegisterImage::new();
        for ((q, reg), value) in self.entries().zip([m.u, m.i, m.pa, m.pr]) {
            let words = encode_one(q, reg, value)?;
            let ordered = order_words(words, reg.value_type, self.word_order());
            image.insert_slice(reg.address, &ordered[..usize::from(reg.value_type.words())]);
        }
        Ok(image)
    }
}

/// Puts (high, low) into address order.
fn order_words((high, low): (u16, u16), value_type: ValueType, order: WordOrder) -> [u16; 2] {
    match (value_type.words(), order) {
        (1, _) => [low, 0],
        (_, WordOrder::HighFirst) => [high, low],
        (_, WordOrder::LowFirst) => [low, high],
    }
}

/// An f32 as the f64 with the same shortest decimal form (240.87, not 240.8699951171875): the
/// register carries f32 precision, and users read these numbers in JSON.
fn widen(f: f32) -> f64 {
    f.to_string().parse().unwrap_or(f64::from(f))
}

/// `raw × scale`, dividing by the inverse when it is a whole number (scale 0.001 → ÷ 1000), so
/// that 236123 mV reads 236.123 V exactly rather than 236.12300000000002.
fn apply_scale(raw: f64, scale: f64) -> f64 {
    let inverse = 1.0 / scale;
    if inverse.abs() > 1.0 && (inverse - inverse.round()).abs() < 1e-9 {
        raw / inverse.round()
    } else {
        raw * scale
    }
}

fn decode_one(
    q: Quantity,
    reg: &Register,
    order: WordOrder,
    image: &RegisterImage,
) -> Result<f64, DecodeError> {
    let word = |offset: u16| {
        let address = reg.address.wrapping_add(offset);
        image.get(address).ok_or(DecodeError::Missing {
            quantity: q.as_str(),
            address,
        })
    };
    let first = word(0)?;
    let bits32 = || -> Result<u32, DecodeError> {
        let second = word(1)?;
        let (high, low) = match order {
            WordOrder::HighFirst => (first, second),
            WordOrder::LowFirst => (second, first),
        };
        Ok((u32::from(high) << 16) | u32::from(low))
    };
    let raw = match reg.value_type {
        ValueType::U16 => f64::from(first),
        ValueType::I16 => f64::from(first as i16),
        ValueType::U32 => f64::from(bits32()?),
        ValueType::I32 => f64::from(bits32()? as i32),
        ValueType::F32 => widen(f32::from_bits(bits32()?)),
    };
    let value = apply_scale(raw, reg.scale);
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DecodeError::NotFinite {
            quantity: q.as_str(),
            value,
        })
    }
}

/// Returns (high word, low word); 16-bit types use only the low word.
fn encode_one(q: Quantity, reg: &Register, value: f64) -> Result<(u16, u16), EncodeError> {
    let raw = value / reg.scale;
    let out_of_range = || EncodeError::OutOfRange {
        quantity: q.as_str(),
        value,
        value_type: reg.value_type,
        scale: reg.scale,
    };
    let int_in = |min: f64, max: f64| {
        let r = raw.round();
        if r.is_finite() && r >= min && r <= max {
            Ok(r)
        } else {
            Err(out_of_range())
        }
    };
    let split = |bits: u32| ((bits >> 16) as u16, bits as u16);
    Ok(match reg.value_type {
        ValueType::U16 => (0, int_in(0.0, f64::from(u16::MAX))? as u16),
        ValueType::I16 => (
            0,
            int_in(f64::from(i16::MIN), f64::from(i16::MAX))? as i16 as u16,
        ),
        ValueType::U32 => split(int_in(0.0, f64::from(u32::MAX))? as u32),
        ValueType::I32 => split(int_in(f64::from(i32::MIN), f64::from(i32::MAX))? as i32 as u32),
        ValueType::F32 => {
            let f = raw as f32;
            if !f.is_finite() {
                return Err(out_of_range());
            }
            split(f.to_bits())
        }
    })
}
