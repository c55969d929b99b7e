//! Proof of work: a multi-threaded nonce search costing one SHA-256 compression per trial.
//!
//! The 96-byte header spans two 64-byte SHA-256 blocks and only the last 8 bytes (the nonce)
//! change between trials. So the first block is compressed once per block (the midstate), and
//! each trial compresses the already padded second block with its nonce. On x86-64 an
//! [`Engine`] chosen at run time hashes 8 (AVX2) or 16 (AVX-512) nonces per instruction stream,
//! reusing all nonce-independent work ([`engine`]); elsewhere `sha2::compress256` runs one at a
//! time. Each thread takes every `threads`-th batch of consecutive nonces and polls the stop
//! flags every [`POLL_EVERY`] trials, which bounds cancellation latency to well under a
//! millisecond.

pub mod engine;
mod lanes;
mod midstate;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use super::encoding::HeaderPrefix;
use engine::{lane_state, Kernel, MAX_LANES};
pub use engine::{Engine, UnknownEngine, UnsupportedEngine};
pub use midstate::Midstate;
use midstate::{state_bytes, state_leading_zeros};

/// Trials between two looks at the stop flags (tens of microseconds of work).
pub const POLL_EVERY: u64 = 1024;

/// Trials made on the calling thread before the other mining threads start (≈ 0.3 ms with
/// vector lanes): enough for a block of difficulty up to about 12 bits.
const SOLO_TRIALS: u64 = 1 << 14;

/// A successful search: the nonce and the block hash it yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// The nonce that completes the header.
    pub nonce: u64,
    /// SHA-256 of the complete header.
    pub hash: [u8; 32],
    /// Trials (hashes computed) by all threads together, including the winning one.
    pub trials: u64,
}

/// Outcome of one search, whether it succeeded or was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// The winning nonce, or `None` if the search was cancelled (or the nonce space exhausted).
    pub found: Option<Mined>,
    /// Hashes computed by all threads together.
    pub trials: u64,
}

/// A proof-of-work miner using a fixed number of threads and one [`Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miner {
    threads: usize,
    engine: Engine,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::all_cores()
    }
}

impl Miner {
    /// A miner with `threads` threads (at least one) and [`Engine::preferred`].
    pub fn new(threads: usize) -> Miner {
        Miner {
            threads: threads.max(1),
            engine: Engine::preferred(),
        }
    }

    /// A miner with one thread per available core.
    pub fn all_cores() -> Miner {
        Miner::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The same miner running `engine` instead, if this CPU supports it.
    pub fn with_engine(self, engine: Engine) -> Result<Miner, UnsupportedEngine> {
        Kernel::new(engine)?;
        Ok(Miner { engine, ..self })
    }

    /// Number of threads this miner runs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The engine this miner runs.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Searches a nonce giving at least `difficulty` leading zero bits; `None` once `cancel`
    /// fires (or, in theory, when the whole nonce space is exhausted). Blocks the caller.
    pub fn mine(
        &self,
        prefix: &HeaderPrefix,
        difficulty: u32,
        cancel: &CancellationToken,
    ) -> Option<Mined> {
        self.search(prefix, difficulty, cancel).found
    }

    /// Like [`Miner::mine`], but also reports the work done when the search was cancelled.
    pub fn search(
        &self,
        prefix: &HeaderPrefix,
        difficulty: u32,
        cancel: &CancellationToken,
    ) -> Search {
        let midstate = Midstate::new(prefix);
        // `with_engine` checked support; a miner built elsewhere still falls back safely.
        let kernel = Kernel::new(self.engine).unwrap_or(Kernel::Portable);
        let stop = AtomicBool::new(false);
        let found = Mutex::new(None);
        let worker = Worker {
            midstate: &midstate,
            kernel,
            difficulty,
            stop: &stop,
            cancel,
            found: &found,
        };
        // An easy block (the usual case at low difficulty) is found here, on the calling
        // thread, before starting any other: starting threads costs more than its search.
        let lanes = kernel.engine().lanes() as u64;
        let solo_batches = (SOLO_TRIALS / lanes).max(1);
        let mut trials = worker.run(0, 1, solo_batches);
        if !stop.load(Ordering::Relaxed) && !cancel.is_cancelled() {
            let step = self.threads as u64;
            let total = AtomicU64::new(0);
            std::thread::scope(|scope| {
                for t in 0..step {
                    let total = &total;
                    let worker = &worker;
                    scope.spawn(move || {
                        let done = worker.run(solo_batches + t, step, u64::MAX);
                        total.fetch_add(done, Ordering::Relaxed)
                    });
                }
            });
            trials += total.into_inner();
        }
        let found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        Search {
            found: found.map(|(nonce, hash)| Mined {
                nonce,
                hash,
                trials,
            }),
            trials,
        }
    }
}

/// One mining thread's view of a search.
struct Worker<'a> {
    midstate: &'a Midstate,
    kernel: Kernel,
    difficulty: u32,
    stop: &'a AtomicBool,
    cancel: &'a CancellationToken,
    found: &'a Mutex<Option<(u64, [u8; 32])>>,
}

impl Worker<'_> {
    /// Hashes batches `first, first + step, ...` until a win, a stop, `max_batches` batches
    /// or the end of the nonce space; returns the number of hashes computed.
    fn run(&self, first: u64, step: u64, max_batches: u64) -> u64 {
        let lanes = self.kernel.engine().lanes() as u64;
        // The word-0 pre-filter: a hash meeting the difficulty has at least this many leading
        // zeros in its first state word.
        let word0_zeros = self.difficulty.min(32);
        let batches_per_poll = (POLL_EVERY / lanes).max(1);
        let mut plan = self
            .midstate
            .plan((first.saturating_mul(lanes) >> 32) as u32);
        let mut lows = [0u32; MAX_LANES];
        let mut batch = first;
        let mut trials = 0u64;
        let mut left = max_batches;
        'search: loop {
            for _ in 0..batches_per_poll {
                if left == 0 {
                    break 'search;
                }
                left -= 1;
                // Lane counts divide 2^32, so a batch never straddles two high words.
                let Some(base) = batch.checked_mul(lanes) else {
                    break 'search;
                };
                let hi = (base >> 32) as u32;
                if plan.hi != hi {
                    plan = self.midstate.plan(hi);
                }
                for (lane, low) in lows.iter_mut().enumerate() {
                    *low = (base as u32).wrapping_add(lane as u32);
                }
                let states = self.kernel.run(self.midstate, &plan, &lows);
                trials += lanes;
                for lane in 0..lanes as usize {
                    if states[0][lane].leading_zeros() < word0_zeros {
                        continue;
                    }
                    let state = lane_state(&states, lane);
                    if state_leading_zeros(&state) >= self.difficulty {
                        let mut slot = self.found.lock().unwrap_or_else(|e| e.into_inner());
                        // Another thread may have won in the meantime; keep the first.
                        slot.get_or_insert((base + lane as u64, state_bytes(&state)));
                        self.stop.store(true, Ordering::Relaxed);
                        break 'search;
                    }
                }
                match batch.checked_add(step) {
                    Some(next) => batch = next,
                    None => break 'search,
                }
            }
            if self.stop.load(Ordering::Relaxed) || self.cancel.is_cancelled() {
                break;
            }
        }
        trials
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::encoding::Hash32;
    use rand::{Rng, SeedableRng};
    use sha2::{Digest, Sha256};

    #[test]
    fn midstate_hash_equals_plain_sha256_of_the_header() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
        for _ in 0..500 {
            let mut prefix = [0u8; 88];
            rng.fill(&mut prefix[..]);
            let prefix = HeaderPrefix(prefix);
            let nonce: u64 = rng.random();
            let expected: [u8; 32] = Sha256::digest(prefix.header(nonce)).into();
            assert_eq!(Midstate::new(&prefix).hash(nonce), expected);
        }
    }

    #[test]
    fn state_leading_zeros_agrees_with_byte_count() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for shift in 0..256u32 {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes[..]);
            // Clear the first `shift` bits and set the next one.
            for bit in 0..=shift.min(255) {
                let (byte, mask) = ((bit / 8) as usize, 0x80u8 >> (bit % 8));
                if bit < shift {
                    bytes[byte] &= !mask;
                } else {
                    bytes[byte] |= mask;
                }
            }
            let mut state = [0u32; 8];
            for (word, chunk) in state.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
            assert_eq!(state_leading_zeros(&state), shift);
            assert_eq!(Hash32(bytes).leading_zero_bits(), shift);
        }
    }

    #[test]
    fn mined_nonce_meets_the_difficulty_with_any_thread_count() {
        let prefix = HeaderPrefix::new(3, 12, &Hash32([9; 32]), &Hash32([8; 32]), 42);
        for threads in [1, 2, 3] {
            let mined = Miner::new(threads)
                .mine(&prefix, 12, &CancellationToken::new())
                .expect("difficulty 12 is reachable");
            let hash = prefix.hash(mined.nonce);
            assert_eq!(hash.0, mined.hash);
            assert!(hash.leading_zero_bits() >= 12, "{hash}");
            assert!(mined.trials >= 1);
        }
    }

    #[test]
    fn difficulty_zero_accepts_the_first_nonce_tried_by_every_engine() {
        let prefix = HeaderPrefix::new(0, 0, &Hash32::ZERO, &Hash32::ZERO, 0);
        for engine in Engine::ALL.into_iter().filter(|e| e.is_supported()) {
            let miner = Miner::new(1).with_engine(engine).expect("supported");
            let mined = miner
                .mine(&prefix, 0, &CancellationToken::new())
                .expect("trivial");
            assert_eq!(mined.nonce, 0, "{engine}");
            // One batch: the engine hashes all its lanes at once.
            assert_eq!(mined.trials, engine.lanes() as u64, "{engine}");
            assert_eq!(prefix.hash(0).0, mined.hash, "{engine}");
        }
    }

    #[test]
    fn preset_cancel_returns_none_after_at_most_one_poll_per_thread() {
        let prefix = HeaderPrefix::new(1, 256, &Hash32::ZERO, &Hash32::ZERO, 0);
        let search = Miner::new(2).search(&prefix, 256, &{
            let t = CancellationToken::new();
            t.cancel();
            t
        });
        assert!(search.found.is_none());
        assert!(search.trials <= 2 * POLL_EVERY);
    }
}
