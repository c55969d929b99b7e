//! Trial engines: which instruction set hashes a batch of nonces ([`Engine`], and `Kernel`,
//! an engine whose detection succeeded). The work they share per block is in `midstate`.

use std::fmt;
use std::str::FromStr;

use super::lanes;
use super::midstate::{state_bytes, Midstate, Plan};

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

impl Midstate {
    /// Hashes of the nonces `hi << 32 | low` for each of `lows`, computed by `engine` in batches
    /// of its lane count (a short last batch is padded and the padding discarded).
    pub fn hash_lanes(
        &self,
        engine: Engine,
        hi: u32,
        lows: &[u32],
    ) -> Result<Vec<[u8; 32]>, UnsupportedEngine> {
        let kernel = Kernel::new(engine)?;
        let plan = self.plan(hi);
        let mut out = Vec::with_capacity(lows.len());
        let mut batch = [0u32; MAX_LANES];
        for chunk in lows.chunks(engine.lanes()) {
            batch[..chunk.len()].copy_from_slice(chunk);
            let states = kernel.run(self, &plan, &batch);
            out.extend((0..chunk.len()).map(|lane| state_bytes(&lane_state(&states, lane))));
        }
        Ok(out)
    }
}
