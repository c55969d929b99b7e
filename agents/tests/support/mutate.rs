//! Seeded generators of hostile payloads: each call mutates a valid message the way a broken or
//! malicious client would (bit flips, truncations, type swaps, missing fields, boundary and
//! non-finite numbers, huge arrays, oversized payloads, deep nesting). This is the stand-in for
//! `cargo fuzz`, which needs a nightly toolchain: the seed makes every failure reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Tokens that JSON writers produce by mistake or attackers on purpose; spliced in as raw text.
const RAW_TOKENS: &[&str] = &[
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    "18446744073709551616",
    "-9223372036854775809",
    "-0",
    "1e-400",
    "0.0000000000000000000000000000001",
    "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"c/1\"",
    "\"$share/x\"",
];

/// Placeholder replaced by a raw token after serialisation.
const MARK: &str = "@@raw@@";

/// A seeded source of hostile variants of valid messages.
pub struct Mutator {
    rng: StdRng,
    /// Payload size that counts as oversized for the target.
    pub oversize: usize,
}

impl Mutator {
    /// A mutator with a fixed seed; `oversize` is the target's payload limit.
    pub fn new(seed: u64, oversize: usize) -> Mutator {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
            oversize,
        }
    }

    /// The generator itself, for choices a test makes alongside the mutation.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// One hostile variant of `valid`, with the name of the mutation applied.
    pub fn mutate(&mut self, valid: &Value) -> (&'static str, Vec<u8>) {
        let mut v = valid.clone();
        let kind = self.rng.random_range(0..14);
        let name = match kind {
            0 => {
                let mut bytes = serde_json::to_vec(&v).unwrap();
                for _ in 0..self.rng.random_range(1..=8) {
                    let i = self.rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << self.rng.random_range(0..8);
                }
                return ("bit-flip", bytes);
            }
            1 => {
                let bytes = serde_json::to_vec(&v).unwrap();
                let cut = self.rng.random_range(0..bytes.len());
                return ("truncate", bytes[..cut].to_vec());
            }
            2 => {
                let n = self.rng.random_range(0..512);
                return ("random-bytes", (0..n).map(|_| self.rng.random()).collect());
            }
            3 => {
                let mut bytes = serde_json::to_vec(&v).unwrap();
                let a = self.rng.random_range(0..bytes.len());
                let b = self
                    .rng
                    .random_range(a..bytes.len().min(a + 64) + 1)
                    .min(bytes.len());
                let chunk = bytes[a..b].to_vec();
                let at = self.rng.random_range(0..=bytes.len());
                bytes.splice(at..at, chunk);
                return ("splice", bytes);
            }
            4 => {
                let target = pick(&mut v, &mut self.rng);
                *target = self.other_type(target);
                "type-swap"
            }
            5 => {
                if let Value::Object(m) = &mut v {
                    let i = self.rng.random_range(0..m.len());
                    let key = m.keys().nth(i).cloned().unwrap();
                    m.remove(&key);
                }
                "missing-field"
            }
            6 => {
                let target = pick(&mut v, &mut self.rng);
                *target = self.boundary_number();
                "boundary-number"
            }
            7 => {
                let target = pick(&mut v, &mut self.rng);
                *target = Value::String(MARK.into());
                let token = RAW_TOKENS[self.rng.random_range(0..RAW_TOKENS.len())];
                let text = serde_json::to_string(&v).unwrap();
                return (
                    "raw-token",
                    text.replacen(&format!("\"{MARK}\""), token, 1).into_bytes(),
                );
            }
            8 => {
                let n = self.rng.random_range(10_001..10_200);
                let huge = Value::Array((0..n).map(Value::from).collect());
                if v.get("values").is_some() && self.rng.random_bool(0.5) {
                    v["values"] = huge;
                } else {
                    *pick(&mut v, &mut self.rng) = huge;
                }
                "huge-array"
            }
            9 => {
                // Rare (1 in 8 of this branch) and spliced as raw bytes: serialising a
                // megabyte string per case would dominate the suite's run time.
                if self.rng.random_bool(0.125) && v.is_object() {
                    let mut bytes = serde_json::to_vec(&v).unwrap();
                    bytes.pop();
                    bytes.extend_from_slice(b",\"pad\":\"");
                    bytes.resize(bytes.len() + self.oversize + 1, b'x');
                    bytes.extend_from_slice(b"\"}");
                    return ("oversized", bytes);
                }
                if let Value::Object(m) = &mut v {
                    m.insert("unknown_field".into(), Value::from(1));
                }
                "unknown-field"
            }
            10 => {
                let depth = self.rng.random_range(100..5_000);
                let mut text = "[".repeat(depth);
                text.push_str(&"]".repeat(depth));
                return ("deep-nesting", text.into_bytes());
            }
            11 => {
                let key = if v.get("window").is_some() {
                    "window"
                } else {
                    "index"
                };
                if let Some(w) = v.get_mut(key) {
                    *w = Value::from(self.rng.random::<u64>());
                }
                "other-id"
            }
            12 => {
                let target = pick(&mut v, &mut self.rng);
                *target = Value::from(self.rng.random_range(-1e6..1e6));
                "random-number"
            }
            _ => {
                let target = pick(&mut v, &mut self.rng);
                let s: String = (0..self.rng.random_range(0..80))
                    .map(|_| char::from(self.rng.random_range(0x20u8..0x7f)))
                    .collect();
                *target = Value::String(s);
                "random-string"
            }
        };
        (name, serde_json::to_vec(&v).unwrap())
    }

    fn other_type(&mut self, v: &Value) -> Value {
        let choices = [
            Value::Null,
            Value::Bool(true),
            Value::from(0),
            Value::from("0"),
            Value::Array(vec![]),
            Value::Object(Default::default()),
        ];
        let mut pick = choices[self.rng.random_range(0..choices.len())].clone();
        if std::mem::discriminant(&pick) == std::mem::discriminant(v) {
            pick = Value::Null;
        }
        pick
    }

    fn boundary_number(&mut self) -> Value {
        let numbers = [
            Value::from(0),
            Value::from(-1),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::from(u32::MAX as u64 + 1),
            Value::from(f64::MAX),
            Value::from(f64::MIN),
            Value::from(f64::MIN_POSITIVE),
            Value::from(-0.0),
            Value::from(1e-300),
        ];
        numbers[self.rng.random_range(0..numbers.len())].clone()
    }
}

/// A random node of `v` (the root, a field, an element, at any depth).
fn pick<'a>(v: &'a mut Value, rng: &mut StdRng) -> &'a mut Value {
    let n = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if n == 0 || rng.random_bool(0.3) {
        return v;
    }
    let i = rng.random_range(0..n);
    match v {
        Value::Object(m) => pick(m.values_mut().nth(i).unwrap(), rng),
        Value::Array(a) => pick(&mut a[i], rng),
        _ => unreachable!("n > 0 only for containers"),
    }
}

/// Tally of mutations applied and how many were refused, for the test's report.
#[derive(Default, Debug)]
pub struct Tally {
    /// Per mutation: (applied, refused).
    pub by_kind: std::collections::BTreeMap<&'static str, (u64, u64)>,
}

impl Tally {
    /// Counts one case.
    pub fn count(&mut self, kind: &'static str, refused: bool) {
        let e = self.by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += refused as u64;
    }

    /// Cases counted.
    pub fn cases(&self) -> u64 {
        self.by_kind.values().map(|e| e.0).sum()
    }

    /// Cases refused.
    pub fn refused(&self) -> u64 {
        self.by_kind.values().map(|e| e.1).sum()
    }
}
