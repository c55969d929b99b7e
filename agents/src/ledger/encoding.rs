//! The canonical byte encoding of records and block headers (specified in the "Ledger encoding" section of `topics.md`).
//!
//! This is the one place that decides which bytes are hashed. JSON is only the transport: two
//! JSON spellings of the same block produce the same bytes here, and any change of meaning
//! changes them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::record::Record;

/// Domain tag that opens the records hash input.
pub const RECORDS_MAGIC: &[u8; 4] = b"WCR1";
/// Domain tag that opens the data hash input (version 2: producer and seal bound in).
pub const DATA_MAGIC: &[u8; 4] = b"WCD2";
/// Domain tag that opens every block header (version 2 of the header encoding).
pub const HEADER_MAGIC: &[u8; 4] = b"WCB2";
/// Domain tag of a block signature's message (only blocks use it).
pub const BLOCK_SIGN_MAGIC: &[u8; 4] = b"WCS1";
/// Length of a full block header in bytes.
pub const HEADER_LEN: usize = 96;
/// Length of the header without its trailing nonce: everything a miner holds fixed.
pub const PREFIX_LEN: usize = 88;

/// Why a hex string is not a fixed-length byte value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {digits} lowercase hex digits, got {text:?}")]
pub struct HexError {
    /// Digits required.
    pub digits: usize,
    /// The refused text (cut to 160 characters).
    pub text: String,
}

/// Exactly `2 * N` lowercase hex digits as bytes (the only spelling the chain accepts).
pub fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let fail = || HexError {
        digits: 2 * N,
        text: text.chars().take(160).collect(),
    };
    let b = text.as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if b.len() != 2 * N {
        return Err(fail());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        match (nibble(b[2 * i]), nibble(b[2 * i + 1])) {
            (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
            _ => return Err(fail()),
        }
    }
    Ok(out)
}

/// Defines a fixed-length byte newtype written in JSON as lowercase hex.
macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Parses exactly the right number of lowercase hex digits.
            pub fn from_hex(text: &str) -> Result<$name, HexError> {
                decode_hex(text).map($name)
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                self.to_string()
            }

            /// The first 8 hex digits and an ellipsis, for logs and error messages.
            pub fn short(&self) -> String {
                let mut s = self.to_string();
                s.truncate(8);
                s.push('…');
                s
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name([0; $len])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A 32-byte SHA-256 value, written in JSON as 64 lowercase hex digits.
    Hash32,
    32
);

hex_bytes!(
    /// An Ed25519 public key (RFC 8032 encoding), 64 hex digits: a block's `producer`.
    PublicKey,
    32
);

hex_bytes!(
    /// An Ed25519 signature `R || S` (RFC 8032), 128 hex digits.
    SignatureBytes,
    64
);

impl Hash32 {
    /// The all-zero hash.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// Number of leading zero bits (256 for the zero hash).
    pub fn leading_zero_bits(&self) -> u32 {
        let mut bits = 0;
        for byte in self.0 {
            bits += byte.leading_zeros();
            if byte != 0 {
                break;
            }
        }
        bits
    }
}

impl PublicKey {
    /// The genesis block's producer: 32 zero bytes (no one signs it).
    pub const NONE: PublicKey = PublicKey([0; 32]);
}

impl SignatureBytes {
    /// The genesis block's signature: 64 zero bytes.
    pub const NONE: SignatureBytes = SignatureBytes([0; 64]);
}

/// Appends `str(s)`: u16 BE byte length, then the UTF-8 bytes.
///
/// Callers validate lengths first (cabinet ids are at most 64 bytes, timestamps 24); a longer
/// string is cut at 65535 bytes rather than panicking, and validation rejects it anyway.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    // The slice above is at most u16::MAX long.
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes of one record inside the data hash input.
pub fn encode_record(out: &mut Vec<u8>, record: &Record) {
    put_str(out, &record.cabinet);
    out.extend_from_slice(&record.window.to_be_bytes());
    put_str(out, &record.from);
    put_str(out, &record.to);
    out.extend_from_slice(&record.n.to_be_bytes());
    let a = &record.averages;
    for value in [a.u, a.i, a.pa, a.pr] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    let d = &record.digests;
    for digest in [d.u, d.i, d.pa, d.pr] {
        out.extend_from_slice(&digest.0);
    }
}

/// `records_hash`: SHA-256 over `"WCR1" || u32 BE count || records...`.
pub fn records_hash(records: &[Record]) -> Hash32 {
    let mut bytes = Vec::with_capacity(8 + records.len() * 280);
    bytes.extend_from_slice(RECORDS_MAGIC);
    // Block validation caps the count far below u32::MAX; saturate rather than wrap.
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&count.to_be_bytes());
    for record in records {
        encode_record(&mut bytes, record);
    }
    Hash32(Sha256::digest(&bytes).into())
}

/// `data_hash`: SHA-256 over `"WCD2" || producer || u32 len(seal) || seal || records_hash`,
/// what a header commits to. The producer is inside, so work cannot be re-signed by another.
pub fn data_hash(producer: &PublicKey, seal: &[u8], records_hash: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update(DATA_MAGIC);
    h.update(producer.0);
    let len = u32::try_from(seal.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(seal);
    h.update(records_hash.0);
    Hash32(h.finalize().into())
}

/// The 68 bytes a producer signs: `"WCS1" || chain id || block hash`.
pub fn sign_bytes(chain_id: &Hash32, hash: &Hash32) -> [u8; 68] {
    let mut out = [0u8; 68];
    out[..4].copy_from_slice(BLOCK_SIGN_MAGIC);
    out[4..36].copy_from_slice(&chain_id.0);
    out[36..].copy_from_slice(&hash.0);
    out
}

/// The fixed 88 bytes of a header: everything but the nonce.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix(pub [u8; PREFIX_LEN]);

impl fmt::Debug for HeaderPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderPrefix(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

impl HeaderPrefix {
    /// `"WCB2" || index || difficulty || previous_hash || data_hash || timestamp_ms`, all BE.
    pub fn new(
        index: u64,
        difficulty: u32,
        previous_hash: &Hash32,
        data_hash: &Hash32,
        timestamp_ms: u64,
    ) -> HeaderPrefix {
        let mut p = [0u8; PREFIX_LEN];
        p[0..4].copy_from_slice(HEADER_MAGIC);
        p[4..12].copy_from_slice(&index.to_be_bytes());
        p[12..16].copy_from_slice(&difficulty.to_be_bytes());
        p[16..48].copy_from_slice(&previous_hash.0);
        p[48..80].copy_from_slice(&data_hash.0);
        p[80..88].copy_from_slice(&timestamp_ms.to_be_bytes());
        HeaderPrefix(p)
    }

    /// The full 96-byte header with `nonce` appended.
    pub fn header(&self, nonce: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..PREFIX_LEN].copy_from_slice(&self.0);
        h[PREFIX_LEN..].copy_from_slice(&nonce.to_be_bytes());
        h
    }

    /// The block hash for `nonce`, computed the plain way (one SHA-256 over 96 bytes).
    pub fn hash(&self, nonce: u64) -> Hash32 {
        Hash32(Sha256::digest(self.header(nonce)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_other_spellings() {
        let text = "00ff10a0000000000000000000000000000000000000000000000000000000fe";
        let hash = Hash32::from_hex(text).expect("valid");
        assert_eq!(hash.0[1], 0xff);
        assert_eq!(hash.to_hex(), text);
        assert!(Hash32::from_hex(&text.to_uppercase()).is_err());
        assert!(Hash32::from_hex(&text[1..]).is_err());
        assert!(Hash32::from_hex(&format!("{}g", &text[1..])).is_err());
    }

    #[test]
    fn leading_zero_bits_counts_across_byte_boundaries() {
        let mut h = Hash32::ZERO;
        assert_eq!(h.leading_zero_bits(), 256);
        h.0[0] = 0x80;
        assert_eq!(h.leading_zero_bits(), 0);
        h.0[0] = 0x01;
        assert_eq!(h.leading_zero_bits(), 7);
        h.0[0] = 0;
        h.0[2] = 0x10;
        assert_eq!(h.leading_zero_bits(), 19);
        h.0[2] = 0;
        h.0[31] = 1;
        assert_eq!(h.leading_zero_bits(), 255);
    }
}
