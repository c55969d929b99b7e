//! SHA-256 of a block header, split for mining: the midstate after the first 64 bytes, the
//! padded second block, and the nonce-independent work of one nonce high word (`Plan`).
//!
//! Every trial compresses the same 64-byte second block except for the nonce's low word (W7),
//! and within a batch of lanes the nonce's high word (W6) is shared. So everything that does not
//! depend on W7 is computed once per `Plan`: message words W0..W21 and the state after rounds
//! 0..=7 (W7 enters round 7 only through T1, linearly, so the lanes add it afterwards). The
//! SIMD kernels in `pow::lanes` then run rounds 8..=63 for 8 or 16 nonces at once.

use sha2::compress256;
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

use crate::ledger::encoding::{HeaderPrefix, HEADER_LEN, PREFIX_LEN};

/// SHA-256 initial state (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 round constants (FIPS 180-4, 4.2.2).
pub(super) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// First message word that depends on the nonce's low half (W22 = σ1(W20) + W15 + σ0(W7) + W6).
pub(super) const FIRST_VARYING_W: usize = 22;

/// Offset of the nonce inside the second SHA-256 block of the header.
const NONCE_AT: usize = PREFIX_LEN - 64;

/// Message word of the second block that holds the 0x80 padding byte (right after the nonce).
const PAD_WORD: usize = (NONCE_AT + 8) / 4;

type ShaBlock = GenericArray<u8, U64>;

/// The SHA-256 state after a header's first 64 bytes, plus its padded second block.
#[derive(Clone)]
pub struct Midstate {
    state: [u32; 8],
    tail: ShaBlock,
}

impl Midstate {
    /// Compresses the first 64 prefix bytes and prepares `[24 prefix bytes | nonce | padding]`.
    pub fn new(prefix: &HeaderPrefix) -> Midstate {
        let mut state = H0;
        compress256(&mut state, &[ShaBlock::clone_from_slice(&prefix.0[..64])]);
        let mut tail = [0u8; 64];
        tail[..NONCE_AT].copy_from_slice(&prefix.0[64..]);
        // SHA-256 padding for a 96-byte message: 0x80, zeros, then the bit length (768) BE.
        tail[NONCE_AT + 8] = 0x80;
        tail[56..].copy_from_slice(&(HEADER_LEN as u64 * 8).to_be_bytes());
        Midstate {
            state,
            tail: ShaBlock::clone_from_slice(&tail),
        }
    }

    /// The block hash for `nonce` (one compression), as bytes.
    pub fn hash(&self, nonce: u64) -> [u8; 32] {
        state_bytes(&self.portable_state(nonce))
    }

    /// The final state for `nonce` through `sha2::compress256`.
    pub(super) fn portable_state(&self, nonce: u64) -> [u32; 8] {
        let mut block = self.tail;
        block[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_be_bytes());
        let mut state = self.state;
        compress256(&mut state, std::slice::from_ref(&block));
        state
    }

    /// The nonce-independent work for nonces with high word `hi`.
    pub(super) fn plan(&self, hi: u32) -> Plan {
        let mut fixed = [0u32; 6];
        for (word, chunk) in fixed.iter_mut().zip(self.tail[..NONCE_AT].chunks_exact(4)) {
            *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Plan::new(self.state, fixed, hi)
    }
}

/// The digest bytes of a final SHA-256 state.
pub(super) fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Leading zero bits of the digest, read straight from the state words (big-endian order).
#[inline]
pub(super) fn state_leading_zeros(state: &[u32; 8]) -> u32 {
    let mut bits = 0;
    for word in state {
        bits += word.leading_zeros();
        if *word != 0 {
            break;
        }
    }
    bits
}

/// What the lane kernels need for one (midstate, nonce high word): all nonce-independent work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    /// The nonce's high 32 bits this plan was made for (message word W6).
    pub hi: u32,
    /// State after the header's first block, added to the final working variables.
    pub mid: [u32; 8],
    /// Message words W0..W21 (W7 is 0 here: it differs per lane).
    pub w: [u32; FIRST_VARYING_W],
    /// Working variables after round 7 computed with W7 = 0; lanes add W7 to `a` and `e`.
    pub after7: [u32; 8],
}

impl Plan {
    /// Precomputes rounds 0..=7 and the constant message words for nonces `hi << 32 | *`.
    pub fn new(mid: [u32; 8], fixed: [u32; 6], hi: u32) -> Plan {
        let mut w = [0u32; FIRST_VARYING_W];
        w[..6].copy_from_slice(&fixed);
        w[6] = hi;
        // Padding, as `Midstate::new` lays it out: the 0x80 byte right after the nonce opens
        // word 8, and the message length in bits ends the block.
        w[PAD_WORD] = 0x8000_0000;
        w[15] = (HEADER_LEN * 8) as u32;
        for t in 16..FIRST_VARYING_W {
            w[t] = small_sigma1(w[t - 2])
                .wrapping_add(w[t - 7])
                .wrapping_add(small_sigma0(w[t - 15]))
                .wrapping_add(w[t - 16]);
        }
        let mut s = mid;
        for (t, word) in w.iter().enumerate().take(8) {
            round(&mut s, K[t].wrapping_add(*word));
        }
        Plan {
            hi,
            mid,
            w,
            after7: s,
        }
    }
}

/// One SHA-256 round on working variables `s` with `kw = K[t] + W[t]`.
fn round(s: &mut [u32; 8], kw: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(big_sigma1(e))
        .wrapping_add(g ^ (e & (f ^ g)))
        .wrapping_add(kw);
    let t2 = big_sigma0(a).wrapping_add((a & b) | (c & (a | b)));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}
