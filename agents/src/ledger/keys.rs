//! Node identities: Ed25519 keys on disk (PKCS#8 PEM, RFC 8410, mode 0600) and the one
//! signature verification rule both verifiers share (the "Signature" part of the ledger spec).
//!
//! Verification is deliberately stricter than "whatever the library accepts", so that the Rust
//! and Python verifiers agree on every input: `A` and `R` must be canonical encodings and not of
//! small order, `S < L`, and `encode([S]B − [k]A) == R` byte for byte (cofactorless).
//! ed25519-dalek's `verify_strict` does all of this except the canonical check of `A`, which
//! is added here.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::encoding::{sign_bytes, Hash32, PublicKey, SignatureBytes};

/// File name of a node's key inside its data directory.
pub const KEY_FILE: &str = "node.key";

/// Errors reading, writing or using a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {}: {cause}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error (in the message, not a separate source: it is shown once).
        cause: std::io::Error,
    },
    /// The file exists already (keygen never overwrites an identity).
    #[error("key file {} already exists; refusing to overwrite an identity", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read the file: the secret may have leaked.
    #[error(
        "key file {} is readable by group or others (mode {mode:03o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a PKCS#8 PEM Ed25519 private key.
    #[error("key file {} is not a PKCS#8 PEM Ed25519 private key: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
}

/// A node's signing identity.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "NodeKey({})", self.public())
    }
}

impl NodeKey {
    /// The key whose RFC 8032 secret seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random key (the operating system's generator through `rand`).
    pub fn generate() -> NodeKey {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut seed);
        NodeKey::from_seed(seed)
    }

    /// The public key, a block's `producer`.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs raw bytes (pure Ed25519, RFC 8032 §5.1.6).
    pub fn sign(&self, message: &[u8]) -> SignatureBytes {
        SignatureBytes(self.signing.sign(message).to_bytes())
    }

    /// Signs a block hash for chain `chain_id` (`sign_bytes`, tag `WCS1`).
    pub fn sign_block(&self, chain_id: &Hash32, hash: &Hash32) -> SignatureBytes {
        self.sign(&sign_bytes(chain_id, hash))
    }

    /// The key as PKCS#8 PEM text.
    pub fn to_pem(&self) -> String {
        self.signing
            .to_pkcs8_pem(Default::default())
            .map(|pem| pem.to_string())
            // Encoding a 32-byte seed into a fixed DER template cannot fail.
            .unwrap_or_default()
    }

    /// Writes the key to a new file `path` with mode 0600 (never overwrites).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            cause: source,
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(source)
            }
        })?;
        file.write_all(self.to_pem().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file, refusing one that group or others may read.
    pub fn load(path: &Path) -> Result<NodeKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            cause: source,
        };
        let meta = fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::TooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = fs::read_to_string(path).map_err(io)?;
        let signing = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(NodeKey { signing })
    }

    /// Loads `path`, or creates it with a fresh key when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<(NodeKey, bool), KeyError> {
        if path.exists() {
            return NodeKey::load(path).map(|k| (k, false));
        }
        let key = NodeKey::generate();
        key.write_new(path)?;
        Ok((key, true))
    }
}

/// The group order L of Ed25519, little-endian (RFC 8032 §5.1).
const ORDER_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Whether the little-endian scalar `s` is below L.
fn scalar_is_canonical(s: &[u8]) -> bool {
    for i in (0..32).rev() {
        if s[i] != ORDER_L[i] {
            return s[i] < ORDER_L[i];
        }
    }
    false
}

/// Whether the little-endian y of an encoded point (sign bit ignored) is below p = 2^255 − 19.
fn y_is_canonical(point: &[u8; 32]) -> bool {
    // y ≥ p means y ∈ [2^255 − 19, 2^255 − 1]: byte 0 ≥ 0xed, bytes 1..31 all 0xff, and the
    // top byte 0x7f once the sign bit is cleared.
    !(point[0] >= 0xed && point[1..31].iter().all(|&b| b == 0xff) && point[31] & 0x7f == 0x7f)
}

/// Verifies `signature` by `producer` over `message` with the chain's strict rule.
pub fn verify(producer: &PublicKey, message: &[u8], signature: &SignatureBytes) -> bool {
    // Canonical A: decoding then re-encoding gives the same bytes. Only y ≥ p breaks that
    // (x = 0 with the sign bit set is y = ±1: small order, refused below), so the bytes tell.
    if !y_is_canonical(&producer.0) {
        return false;
    }
    let Ok(key) = VerifyingKey::from_bytes(&producer.0) else {
        return false;
    };
    if key.is_weak() {
        return false;
    }
    if !scalar_is_canonical(&signature.0[32..]) {
        return false;
    }
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    // verify_strict: R not of small order, cofactorless, encode(R') == R bytes (so R is canonical).
    key.verify_strict(message, &sig).is_ok()
}

/// Verifies a block signature: `producer` signed `sign_bytes(chain_id, hash)`.
pub fn verify_block(
    chain_id: &Hash32,
    hash: &Hash32,
    producer: &PublicKey,
    signature: &SignatureBytes,
) -> bool {
    verify(producer, &sign_bytes(chain_id, hash), signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, TEST 2 (one-byte message 0x72).
    #[test]
    fn rfc8032_test_vector_2_signs_and_verifies() {
        let seed = super::super::encoding::decode_hex::<32>(
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        )
        .unwrap();
        let key = NodeKey::from_seed(seed);
        assert_eq!(
            key.public().to_hex(),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        );
        let sig = key.sign(&[0x72]);
        assert_eq!(
            sig.to_hex(),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
        assert!(verify(&key.public(), &[0x72], &sig));
        assert!(!verify(&key.public(), &[0x73], &sig));
    }

    #[test]
    fn non_canonical_s_small_order_and_non_canonical_keys_are_refused() {
        let key = NodeKey::from_seed([7; 32]);
        let msg = b"m";
        let sig = key.sign(msg);
        assert!(verify(&key.public(), msg, &sig));
        // S + L is the same scalar mod L but not canonical.
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig.0[32..]);
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s[i]) + u16::from(ORDER_L[i]) + carry;
            s[i] = sum as u8;
            carry = sum >> 8;
        }
        let mut malleated = sig;
        malleated.0[32..].copy_from_slice(&s);
        assert!(!verify(&key.public(), msg, &malleated));
        // The identity point (small order) as public key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(!verify(&PublicKey(identity), msg, &sig));
        // y = p + 1 (non-canonical encoding of y = 1, the identity).
        let mut big = [0xffu8; 32];
        big[0] = 0xee;
        big[31] = 0x7f;
        assert!(!verify(&PublicKey(big), msg, &sig));
    }

    #[test]
    fn the_byte_check_of_y_agrees_with_decode_and_re_encode() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut cases: Vec<[u8; 32]> = (0..2000).map(|_| rng.random()).collect();
        for low in 0xe0..=0xffu8 {
            for top in [0x7f, 0xff] {
                let mut p = [0xffu8; 32];
                p[0] = low;
                p[31] = top;
                cases.push(p);
            }
        }
        for p in cases {
            if let Ok(k) = VerifyingKey::from_bytes(&p) {
                let round_trips = k.to_edwards().compress().to_bytes() == p;
                // A non-round-trip with a canonical y is x = 0 with the sign bit: small order.
                assert!(
                    round_trips || !y_is_canonical(&p) || k.is_weak(),
                    "{p:02x?}"
                );
                assert!(!round_trips || y_is_canonical(&p), "{p:02x?}");
            }
        }
    }

    #[test]
    fn keys_are_written_0600_and_refused_when_others_may_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/node.key");
        let key = NodeKey::generate();
        key.write_new(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        assert_eq!(NodeKey::load(&path).unwrap().public(), key.public());
        assert!(matches!(key.write_new(&path), Err(KeyError::Exists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
            let err = NodeKey::load(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }
}
