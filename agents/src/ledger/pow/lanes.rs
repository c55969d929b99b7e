//! The miner's only unsafe code: SHA-256 rounds 8..=63 for 8 (AVX2) or 16 (AVX-512) nonces at once.
//!
//! Each lane is one nonce of the same [`Plan`]; lanes differ only in message word W7. The
//! kernel is written once, generic over a [`Lanes`] vector type, and instantiated inside a
//! `#[target_feature]` function per instruction set so every helper inlines into one body.
//! Callers hold a token ([`Avx2`], [`Avx512`]) that only run-time detection hands out, which is
//! what makes the safe `compress` methods sound. Differential tests against `sha2` (unit tests
//! below and `agents/tests/ledger_pow.rs`) are the proof of correctness.

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

#[cfg(not(target_arch = "x86_64"))]
pub(super) use elsewhere::{Avx2, Avx512};

use super::midstate::{Plan, FIRST_VARYING_W, K};

/// A vector of 32-bit lanes with the SHA-256 primitives, one implementation per instruction set.
///
/// # Safety
/// Every method requires the CPU feature of its implementation; only call them from a
/// function compiled with that feature, after run-time detection.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // No SIMD implementation there.
trait Lanes: Copy {
    /// The lanes as plain words, for loading nonces and storing states.
    type Words: Copy + Default;
    unsafe fn splat(x: u32) -> Self;
    unsafe fn load(words: &Self::Words) -> Self;
    unsafe fn store(self, words: &mut Self::Words);
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn big_sigma0(self) -> Self;
    unsafe fn big_sigma1(self) -> Self;
    unsafe fn small_sigma0(self) -> Self;
    unsafe fn small_sigma1(self) -> Self;
    /// `Ch(e, f, g) = (e & f) ^ (!e & g)`.
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self;
    /// `Maj(a, b, c)`: the majority bit.
    unsafe fn maj(a: Self, b: Self, c: Self) -> Self;
}

/// One SHA-256 round; the caller rotates the names so no register moves are needed.
macro_rules! round {
    ($V:ty, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        let t1 = $h.add($e.big_sigma1()).add(<$V>::ch($e, $f, $g).add($kw));
        let t2 = $a.big_sigma0().add(<$V>::maj($a, $b, $c));
        $d = $d.add(t1);
        $h = t1.add(t2);
    };
}

/// The final SHA-256 state of every lane, word-major: `out[word][lane]`.
///
/// # Safety
/// The CPU must support `V`'s instruction set (see [`Lanes`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // No SIMD implementation there.
#[inline(always)]
unsafe fn compress<V: Lanes>(plan: &Plan, lows: &V::Words) -> [V::Words; 8] {
    // SAFETY: the caller guarantees the feature; everything below is register arithmetic on
    // values and plain references, no raw pointers.
    unsafe {
        let w7 = V::load(lows);
        // The last 16 message words, W[t] at index t % 16, starting with W6..W21 for t = 22.
        // Built element by element: a zeroed array would cost a memset per batch.
        let mut ring: [V; 16] = std::array::from_fn(|i| {
            let t = if i < 6 { i + 16 } else { i };
            if t == 7 {
                w7
            } else {
                V::splat(plan.w[t])
            }
        });
        // K[t] + W[t] for round t: a scalar for the words all lanes share, else the schedule.
        macro_rules! kw {
            ($t:expr) => {{
                let t: usize = $t;
                if t < FIRST_VARYING_W {
                    V::splat(K[t].wrapping_add(plan.w[t]))
                } else {
                    let w = ring[(t - 2) % 16]
                        .small_sigma1()
                        .add(ring[(t - 7) % 16])
                        .add(ring[(t - 15) % 16].small_sigma0().add(ring[t % 16]));
                    ring[t % 16] = w;
                    V::splat(K[t]).add(w)
                }
            }};
        }
        let r = plan.after7;
        let (mut a, mut b, mut c, mut d) = (
            V::splat(r[0]).add(w7),
            V::splat(r[1]),
            V::splat(r[2]),
            V::splat(r[3]),
        );
        let (mut e, mut f, mut g, mut h) = (
            V::splat(r[4]).add(w7),
            V::splat(r[5]),
            V::splat(r[6]),
            V::splat(r[7]),
        );
        // Rounds 8..=63 in seven groups of eight; after eight rotations the names line up again.
        for group in 1..8 {
            let t = group * 8;
            round!(V, a, b, c, d, e, f, g, h, kw!(t));
            round!(V, h, a, b, c, d, e, f, g, kw!(t + 1));
            round!(V, g, h, a, b, c, d, e, f, kw!(t + 2));
            round!(V, f, g, h, a, b, c, d, e, kw!(t + 3));
            round!(V, e, f, g, h, a, b, c, d, kw!(t + 4));
            round!(V, d, e, f, g, h, a, b, c, kw!(t + 5));
            round!(V, c, d, e, f, g, h, a, b, kw!(t + 6));
            round!(V, b, c, d, e, f, g, h, a, kw!(t + 7));
        }
        let mut out = [V::Words::default(); 8];
        for ((slot, v), m) in out.iter_mut().zip([a, b, c, d, e, f, g, h]).zip(plan.mid) {
            V::splat(m).add(v).store(slot);
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{compress, Lanes, Plan};

    /// Proof that this CPU runs AVX2; only [`Avx2::detect`] makes one.
    #[derive(Debug, Clone, Copy)]
    pub struct Avx2(());

    impl Avx2 {
        /// `Some` when the CPU supports AVX2.
        pub fn detect() -> Option<Avx2> {
            is_x86_feature_detected!("avx2").then_some(Avx2(()))
        }

        /// Final states of the 8 nonces `plan.hi << 32 | lows[i]`, word-major.
        pub fn compress(self, plan: &Plan, lows: &[u32; 8]) -> [[u32; 8]; 8] {
            // SAFETY: the token exists only if AVX2 was detected.
            unsafe { compress_avx2(plan, lows) }
        }
    }

    /// Proof that this CPU runs AVX-512F; only [`Avx512::detect`] makes one.
    #[derive(Debug, Clone, Copy)]
    pub struct Avx512(());

    impl Avx512 {
        /// `Some` when the CPU supports AVX-512F.
        pub fn detect() -> Option<Avx512> {
            is_x86_feature_detected!("avx512f").then_some(Avx512(()))
        }

        /// Final states of the 16 nonces `plan.hi << 32 | lows[i]`, word-major.
        pub fn compress(self, plan: &Plan, lows: &[u32; 16]) -> [[u32; 16]; 8] {
            // SAFETY: the token exists only if AVX-512F was detected.
            unsafe { compress_avx512(plan, lows) }
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn compress_avx2(plan: &Plan, lows: &[u32; 8]) -> [[u32; 8]; 8] {
        // SAFETY: this function is compiled for AVX2 and only called after detecting it.
        unsafe { compress::<__m256i>(plan, lows) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn compress_avx512(plan: &Plan, lows: &[u32; 16]) -> [[u32; 16]; 8] {
        // SAFETY: this function is compiled for AVX-512F and only called after detecting it.
        unsafe { compress::<__m512i>(plan, lows) }
    }

    /// Rotate right by a literal amount: AVX2 has no rotate, so two shifts and an OR.
    macro_rules! ror256 {
        ($x:expr, $n:literal) => {
            _mm256_or_si256(
                _mm256_srli_epi32::<$n>($x),
                _mm256_slli_epi32::<{ 32 - $n }>($x),
            )
        };
    }

    impl Lanes for __m256i {
        type Words = [u32; 8];
        #[inline(always)]
        unsafe fn splat(x: u32) -> Self {
            _mm256_set1_epi32(x as i32)
        }
        #[inline(always)]
        unsafe fn load(words: &[u32; 8]) -> Self {
            // SAFETY: `words` is 32 readable bytes; loadu has no alignment requirement.
            unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
        }
        #[inline(always)]
        unsafe fn store(self, words: &mut [u32; 8]) {
            // SAFETY: `words` is 32 writable bytes; storeu has no alignment requirement.
            unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), self) }
        }
        #[inline(always)]
        unsafe fn add(self, other: Self) -> Self {
            _mm256_add_epi32(self, other)
        }
        #[inline(always)]
        unsafe fn big_sigma0(self) -> Self {
            let x = self;
            _mm256_xor_si256(
                _mm256_xor_si256(ror256!(x, 2), ror256!(x, 13)),
                ror256!(x, 22),
            )
        }
        #[inline(always)]
        unsafe fn big_sigma1(self) -> Self {
            let x = self;
            _mm256_xor_si256(
                _mm256_xor_si256(ror256!(x, 6), ror256!(x, 11)),
                ror256!(x, 25),
            )
        }
        #[inline(always)]
        unsafe fn small_sigma0(self) -> Self {
            let x = self;
            let r = _mm256_xor_si256(ror256!(x, 7), ror256!(x, 18));
            _mm256_xor_si256(r, _mm256_srli_epi32::<3>(x))
        }
        #[inline(always)]
        unsafe fn small_sigma1(self) -> Self {
            let x = self;
            let r = _mm256_xor_si256(ror256!(x, 17), ror256!(x, 19));
            _mm256_xor_si256(r, _mm256_srli_epi32::<10>(x))
        }
        #[inline(always)]
        unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
            _mm256_xor_si256(g, _mm256_and_si256(e, _mm256_xor_si256(f, g)))
        }
        #[inline(always)]
        unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
            _mm256_or_si256(
                _mm256_and_si256(a, b),
                _mm256_and_si256(c, _mm256_or_si256(a, b)),
            )
        }
    }

    /// `vpternlogd` truth tables over (A, B, C) = (0xF0, 0xCC, 0xAA).
    const XOR3: i32 = 0x96;
    const CH: i32 = 0xCA;
    const MAJ: i32 = 0xE8;

    impl Lanes for __m512i {
        type Words = [u32; 16];
        #[inline(always)]
        unsafe fn splat(x: u32) -> Self {
            _mm512_set1_epi32(x as i32)
        }
        #[inline(always)]
        unsafe fn load(words: &[u32; 16]) -> Self {
            // SAFETY: `words` is 64 readable bytes; loadu has no alignment requirement.
            unsafe { _mm512_loadu_epi32(words.as_ptr().cast()) }
        }
        #[inline(always)]
        unsafe fn store(self, words: &mut [u32; 16]) {
            // SAFETY: `words` is 64 writable bytes; storeu has no alignment requirement.
            unsafe { _mm512_storeu_epi32(words.as_mut_ptr().cast(), self) }
        }
        #[inline(always)]
        unsafe fn add(self, other: Self) -> Self {
            _mm512_add_epi32(self, other)
        }
        #[inline(always)]
        unsafe fn big_sigma0(self) -> Self {
            let x = self;
            _mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<2>(x),
                _mm512_ror_epi32::<13>(x),
                _mm512_ror_epi32::<22>(x),
            )
        }
        #[inline(always)]
        unsafe fn big_sigma1(self) -> Self {
            let x = self;
            _mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<6>(x),
                _mm512_ror_epi32::<11>(x),
                _mm512_ror_epi32::<25>(x),
            )
        }
        #[inline(always)]
        unsafe fn small_sigma0(self) -> Self {
            let x = self;
            _mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<7>(x),
                _mm512_ror_epi32::<18>(x),
                _mm512_srli_epi32::<3>(x),
            )
        }
        #[inline(always)]
        unsafe fn small_sigma1(self) -> Self {
            let x = self;
            _mm512_ternarylogic_epi32::<XOR3>(
                _mm512_ror_epi32::<17>(x),
                _mm512_ror_epi32::<19>(x),
                _mm512_srli_epi32::<10>(x),
            )
        }
        #[inline(always)]
        unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
            _mm512_ternarylogic_epi32::<CH>(e, f, g)
        }
        #[inline(always)]
        unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
            _mm512_ternarylogic_epi32::<MAJ>(a, b, c)
        }
    }
}

/// Targets without x86-64 SIMD: the tokens cannot be made, so the portable engine runs.
#[cfg(not(target_arch = "x86_64"))]
mod elsewhere {
    use super::Plan;

    /// Never constructed off x86-64.
    #[derive(Debug, Clone, Copy)]
    pub enum Avx2 {}

    impl Avx2 {
        /// Always `None` off x86-64.
        pub fn detect() -> Option<Avx2> {
            None
        }

        /// Unreachable: no value of this type exists.
        pub fn compress(self, _: &Plan, _: &[u32; 8]) -> [[u32; 8]; 8] {
            match self {}
        }
    }

    /// Never constructed off x86-64.
    #[derive(Debug, Clone, Copy)]
    pub enum Avx512 {}

    impl Avx512 {
        /// Always `None` off x86-64.
        pub fn detect() -> Option<Avx512> {
            None
        }

        /// Unreachable: no value of this type exists.
        pub fn compress(self, _: &Plan, _: &[u32; 16]) -> [[u32; 16]; 8] {
            match self {}
        }
    }
}
