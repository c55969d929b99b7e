//! Trial engines: which instruction set hashes a batch of nonces ([`Engine`], and `Kernel`,
//! an engine whose detection succeeded), and the per-block precomputation they share.
//!
//! Every trial compresses the same 64-byte second block except for the nonce's low word (W7),
//! and within a batch of lanes the nonce's high word (W6) is shared. So everything that does not
//! depend on W7 is computed once per `Plan`: message words W0..W21 and the state after rounds
//! 0..=7 (W7 enters round 7 only through T1, linearly, so the lanes add it afterwards). The
//! SIMD kernels in `pow::lanes` then run rounds 8..=63 for 8 or 16 nonces at once.

use std::fmt;
use std::str::FromStr;

use super::{lanes, Midstate};

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

/// A way to run trials; the fastest one the CPU supports is chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// One nonce at a time through `sha2::compress256` (any CPU).
    Portable,
    /// 8 nonces at once in AVX2 registers (x86-64 with AVX2).
    Avx2,
    /// 16 nonces at once in AVX-512 registers (x86-64 with AVX-512F).
    Avx512,
}

/// Asked for an engine this CPU (or this build's target) cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} mining engine is not supported by this CPU")]
pub struct UnsupportedEngine(pub Engine);

/// A name that is not one of [`Engine::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mining engine {0:?} (expected portable, avx2 or avx512)")]
pub struct UnknownEngine(pub String);

impl Engine {
    /// Every engine, slowest first.
    pub const ALL: [Engine; 3] = [Engine::Portable, Engine::Avx2, Engine::Avx512];

    /// The fastest engine this CPU supports.
    pub fn best() -> Engine {
        Engine::ALL
            .into_iter()
            .rev()
            .find(|e| e.is_supported())
            .unwrap_or(Engine::Portable)
    }

    /// The engine [`Miner::new`](super::Miner::new) uses: [`Engine::best`] in optimised builds.
    ///
    /// Unoptimised (debug) builds use the portable engine instead: the dev profile compiles
    /// `sha2` at opt-level 3, while un-inlined SIMD intrinsics run about 4x slower than it,
    /// which would slow every test that mines. Tests still select the SIMD engines explicitly.
    pub fn preferred() -> Engine {
        if cfg!(debug_assertions) {
            Engine::Portable
        } else {
            Engine::best()
        }
    }

    /// Whether this CPU can run the engine (detected at run time).
    pub fn is_supported(self) -> bool {
        match self {
            Engine::Portable => true,
            Engine::Avx2 => lanes::Avx2::detect().is_some(),
            Engine::Avx512 => lanes::Avx512::detect().is_some(),
        }
    }

    /// Nonces hashed per batch.
    pub fn lanes(self) -> usize {
        match self {
            Engine::Portable => 1,
            Engine::Avx2 => 8,
            Engine::Avx512 => 16,
        }
    }

    /// The engine's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Portable => "portable",
            Engine::Avx2 => "avx2",
            Engine::Avx512 => "avx512",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Engine, UnknownEngine> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| UnknownEngine(s.to_owned()))
    }
}

/// The most lanes any engine runs at once.
pub(super) const MAX_LANES: usize = 16;

/// Final states of one batch, word-major: `states[word][lane]`.
pub(super) type States = [[u32; MAX_LANES]; 8];

/// An engine ready to run: holds the detection proof the SIMD kernels require.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kernel {
    Portable,
    Avx2(lanes::Avx2),
    Avx512(lanes::Avx512),
}

impl Kernel {
    /// Detects `engine`'s instruction set.
    pub(super) fn new(engine: Engine) -> Result<Kernel, UnsupportedEngine> {
        let kernel = match engine {
            Engine::Portable => Some(Kernel::Portable),
            Engine::Avx2 => lanes::Avx2::detect().map(Kernel::Avx2),
            Engine::Avx512 => lanes::Avx512::detect().map(Kernel::Avx512),
        };
        kernel.ok_or(UnsupportedEngine(engine))
    }

    /// The engine this kernel runs.
    pub(super) fn engine(self) -> Engine {
        match self {
            Kernel::Portable => Engine::Portable,
            Kernel::Avx2(_) => Engine::Avx2,
            Kernel::Avx512(_) => Engine::Avx512,
        }
    }

    /// Final states of the first `lanes()` nonces `plan.hi << 32 | lows[i]`.
    #[inline]
    pub(super) fn run(self, midstate: &Midstate, plan: &Plan, lows: &[u32; MAX_LANES]) -> States {
        let mut states = [[0u32; MAX_LANES]; 8];
        match self {
            Kernel::Portable => {
                let nonce = u64::from(plan.hi) << 32 | u64::from(lows[0]);
                for (word, value) in states.iter_mut().zip(midstate.portable_state(nonce)) {
                    word[0] = value;
                }
            }
            Kernel::Avx2(avx2) => {
                let mut eight = [0u32; 8];
                eight.copy_from_slice(&lows[..8]);
                for (word, lanes) in states.iter_mut().zip(avx2.compress(plan, &eight)) {
                    word[..8].copy_from_slice(&lanes);
                }
            }
            Kernel::Avx512(avx512) => states = avx512.compress(plan, lows),
        }
        states
    }
}

/// Lane `lane`'s state out of a word-major batch.
pub(super) fn lane_state(states: &States, lane: usize) -> [u32; 8] {
    states.map(|word| word[lane])
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
        // Padding: the 0x80 byte right after the nonce, and the 768-bit message length.
        w[8] = 0x8000_0000;
        w[15] = 768;
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
