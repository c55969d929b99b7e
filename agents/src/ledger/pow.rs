//! Proof of work: a multi-threaded nonce search costing one SHA-256 compression per trial.
//!
//! The 96-byte header spans two 64-byte SHA-256 blocks and only the last 8 bytes (the nonce)
//! change between trials. So the first block is compressed once per block (the midstate), and
//! each trial patches the nonce into a prepared, already padded second block and compresses it.
//! Threads interleave over the nonce space and poll a shared stop flag every
//! [`POLL_EVERY`] trials, which bounds cancellation latency to well under a millisecond.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use sha2::{compress256, Digest, Sha256};

use super::encoding::{HeaderPrefix, HEADER_LEN, HEADER_MAGIC};

/// Trials between two looks at the stop flags (a few hundred microseconds of work).
pub const POLL_EVERY: u64 = 1024;

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

/// Offset of the nonce inside the second SHA-256 block of the header.
const NONCE_AT: usize = HEADER_LEN - 8 - 64;

type ShaBlock = GenericArray<u8, U64>;

/// A successful search: the nonce and the block hash it yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// The nonce that completes the header.
    pub nonce: u64,
    /// SHA-256 of the complete header.
    pub hash: [u8; 32],
    /// Trials made by all threads together, including the winning one.
    pub trials: u64,
}

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
        let mut block = self.tail;
        block[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_be_bytes());
        let mut state = self.state;
        compress256(&mut state, std::slice::from_ref(&block));
        state_bytes(&state)
    }
}

/// The digest bytes of a final SHA-256 state.
fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Leading zero bits of the digest, read straight from the state words (big-endian order).
#[inline]
fn state_leading_zeros(state: &[u32; 8]) -> u32 {
    let mut bits = 0;
    for word in state {
        bits += word.leading_zeros();
        if *word != 0 {
            break;
        }
    }
    bits
}

/// Outcome of one search, whether it succeeded or was stopped.
struct Search {
    found: Option<(u64, [u8; 32])>,
    trials: u64,
}

/// A proof-of-work miner using a fixed number of threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miner {
    threads: usize,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::all_cores()
    }
}

impl Miner {
    /// A miner with `threads` threads (at least one).
    pub fn new(threads: usize) -> Miner {
        Miner {
            threads: threads.max(1),
        }
    }

    /// A miner with one thread per available core.
    pub fn all_cores() -> Miner {
        Miner::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Number of threads this miner runs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Searches a nonce giving at least `difficulty` leading zero bits; `None` once `cancel`
    /// is set (or, in theory, when the whole nonce space is exhausted). Blocks the caller.
    pub fn mine(
        &self,
        prefix: &HeaderPrefix,
        difficulty: u32,
        cancel: &AtomicBool,
    ) -> Option<Mined> {
        let search = self.search(prefix, difficulty, cancel);
        search.found.map(|(nonce, hash)| Mined {
            nonce,
            hash,
            trials: search.trials,
        })
    }

    fn search(&self, prefix: &HeaderPrefix, difficulty: u32, cancel: &AtomicBool) -> Search {
        let midstate = Midstate::new(prefix);
        let stop = AtomicBool::new(false);
        let found = Mutex::new(None);
        let total = AtomicU64::new(0);
        let step = self.threads as u64;
        std::thread::scope(|scope| {
            for first in 0..step {
                let (midstate, stop, found, total) = (&midstate, &stop, &found, &total);
                scope.spawn(move || {
                    let mut block = midstate.tail;
                    let mut nonce = first;
                    let mut trials = 0u64;
                    'search: loop {
                        for _ in 0..POLL_EVERY {
                            block[NONCE_AT..NONCE_AT + 8].copy_from_slice(&nonce.to_be_bytes());
                            let mut state = midstate.state;
                            compress256(&mut state, std::slice::from_ref(&block));
                            trials += 1;
                            if state_leading_zeros(&state) >= difficulty {
                                let mut slot = found.lock().unwrap_or_else(|e| e.into_inner());
                                // Another thread may have won in the meantime; keep the first.
                                slot.get_or_insert((nonce, state_bytes(&state)));
                                stop.store(true, Ordering::Relaxed);
                                break 'search;
                            }
                            match nonce.checked_add(step) {
                                Some(next) => nonce = next,
                                None => break 'search,
                            }
                        }
                        if stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    total.fetch_add(trials, Ordering::Relaxed);
                });
            }
        });
        Search {
            found: found.into_inner().unwrap_or_else(|e| e.into_inner()),
            trials: total.into_inner(),
        }
    }
}

/// Hash rate measured by [`bench()`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BenchReport {
    /// Threads used.
    pub threads: usize,
    /// Measured duration in seconds.
    pub seconds: f64,
    /// Trials made by all threads.
    pub trials: u64,
    /// `trials / seconds`.
    pub trials_per_sec: f64,
}

/// Header fields of the sample block the benchmark hashes.
fn bench_prefix() -> HeaderPrefix {
    use super::encoding::Hash32;
    HeaderPrefix::new(
        1,
        256,
        &Hash32([0x5a; 32]),
        &Hash32([0xa5; 32]),
        1_795_224_695_123,
    )
}

/// Measures trials per second for `duration` with `threads` threads.
///
/// `naive = false` runs the real miner at difficulty 256 (never met) until a timer cancels it.
/// `naive = true` does it the textbook way per trial: serialise the header, SHA-256 it, hex it
/// and compare the hex against a zero target, to show what the midstate design saves.
pub fn bench(threads: usize, duration: Duration, naive: bool) -> BenchReport {
    let miner = Miner::new(threads);
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let trials = std::thread::scope(|scope| {
        let cancel = &cancel;
        scope.spawn(move || {
            std::thread::sleep(duration);
            cancel.store(true, Ordering::Relaxed);
        });
        if naive {
            naive_search(miner.threads, cancel)
        } else {
            miner.search(&bench_prefix(), 256, cancel).trials
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    BenchReport {
        threads: miner.threads,
        seconds,
        trials,
        trials_per_sec: if seconds > 0.0 {
            trials as f64 / seconds
        } else {
            0.0
        },
    }
}

/// The textbook search loop, for comparison only; runs until `cancel`.
fn naive_search(threads: usize, cancel: &AtomicBool) -> u64 {
    let total = AtomicU64::new(0);
    let target = "0".repeat(64);
    let (previous, data) = ([0x5au8; 32], [0xa5u8; 32]);
    std::thread::scope(|scope| {
        for first in 0..threads as u64 {
            let (total, target) = (&total, &target);
            scope.spawn(move || {
                let mut nonce = first;
                let mut trials = 0u64;
                while !cancel.load(Ordering::Relaxed) {
                    let mut header = Vec::with_capacity(HEADER_LEN);
                    header.extend_from_slice(HEADER_MAGIC);
                    header.extend_from_slice(&1u64.to_be_bytes());
                    header.extend_from_slice(&256u32.to_be_bytes());
                    header.extend_from_slice(&previous);
                    header.extend_from_slice(&data);
                    header.extend_from_slice(&1_795_224_695_123u64.to_be_bytes());
                    header.extend_from_slice(&nonce.to_be_bytes());
                    let digest = Sha256::digest(&header);
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    trials += 1;
                    if hex.starts_with(target.as_str()) {
                        break;
                    }
                    nonce = nonce.wrapping_add(threads as u64);
                }
                total.fetch_add(trials, Ordering::Relaxed);
            });
        }
    });
    total.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::encoding::Hash32;
    use rand::{Rng, SeedableRng};

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
                .mine(&prefix, 12, &AtomicBool::new(false))
                .expect("difficulty 12 is reachable");
            let hash = prefix.hash(mined.nonce);
            assert_eq!(hash.0, mined.hash);
            assert!(hash.leading_zero_bits() >= 12, "{hash}");
            assert!(mined.trials >= 1);
        }
    }

    #[test]
    fn difficulty_zero_accepts_the_first_nonce_tried() {
        let prefix = HeaderPrefix::new(0, 0, &Hash32::ZERO, &Hash32::ZERO, 0);
        let mined = Miner::new(1)
            .mine(&prefix, 0, &AtomicBool::new(false))
            .expect("trivial");
        assert_eq!(mined.nonce, 0);
        assert_eq!(mined.trials, 1);
    }

    #[test]
    fn preset_cancel_returns_none_after_at_most_one_poll_per_thread() {
        let prefix = HeaderPrefix::new(1, 256, &Hash32::ZERO, &Hash32::ZERO, 0);
        let search = Miner::new(2).search(&prefix, 256, &AtomicBool::new(true));
        assert!(search.found.is_none());
        assert!(search.trials <= 2 * POLL_EVERY);
    }
}
