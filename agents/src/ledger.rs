//! ledger (placeholder until the ledger branch lands).
use sha2::{Digest, Sha256};
/// SHA-256 over the values as big-endian f64, lowercase hex.
pub fn digest_hex(values: &[f64]) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_be_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
