//! Several SHA-256 compressions at once with the x86 SHA extensions. `SHA256RNDS2` takes a few
//! cycles to produce its result but can start again sooner, and each round needs the previous
//! one: a single message leaves it waiting most of the time. Interleaving the rounds of
//! independent messages fills those cycles, so three cost about as much as one.
//!
//! The round structure is Intel's (SHA extensions reference, Gulley et al. 2013): the state is
//! kept as the word pairs ABEF and CDGH, each `SHA256RNDS2` does two rounds, and the message
//! schedule is extended four words at a time with `SHA256MSG1`/`SHA256MSG2`.

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_loadu_si128, _mm_set_epi64x,
    _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32,
    _mm_shuffle_epi8, _mm_storeu_si128,
};

/// Whether this CPU has what [`compress`] is compiled for.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse4.1")
        && std::arch::is_x86_feature_detected!("ssse3")
}

/// Round constants, four per group of four rounds.
use crate::crypto::sha256::K;

/// Compresses `blocks[i]` into `states[i]`, the `N` computations interleaved round by round.
/// Every `blocks[i]` must have the same length (extra blocks are ignored).
///
/// # Safety
///
/// The CPU must support `sha`, `sse4.1` and `ssse3` ([`available`]).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[allow(clippy::needless_range_loop)] // stream `i` indexes several arrays in step
pub unsafe fn compress<const N: usize>(states: &mut [[u32; 8]; N], blocks: [&[[u8; 64]]; N]) {
    // SAFETY: the caller guarantees the CPU features the intrinsics need (see # Safety); the
    // raw loads and stores stay inside `states`, `blocks` and `K`, as noted at each. One block
    // for the whole body: on AOSP 15's rustc (1.78) the intrinsics themselves are `unsafe fn`,
    // and Soong's platform lints deny `unsafe_op_in_unsafe_fn`.
    unsafe {
        let count = blocks.iter().map(|b| b.len()).min().unwrap_or(0);
        let bswap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let mut abef = [bswap; N];
        let mut cdgh = [bswap; N];
        for i in 0..N {
            // `states[i]` is 8 words; the loads read words 0..4 and 4..8.
            let (lo, hi) = {
                let p = states[i].as_ptr().cast::<__m128i>();
                (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
            };
            let badc = _mm_shuffle_epi32(lo, 0xB1);
            let hgfe = _mm_shuffle_epi32(hi, 0x1B);
            abef[i] = _mm_alignr_epi8(badc, hgfe, 8);
            cdgh[i] = _mm_blend_epi16(hgfe, badc, 0xF0);
        }
        for n in 0..count {
            let (start_abef, start_cdgh) = (abef, cdgh);
            let mut w = [[bswap; 4]; N];
            for i in 0..N {
                // `n < count <= blocks[i].len()`; a block is 64 bytes, read as 4 x 16.
                {
                    let p = blocks[i][n].as_ptr().cast::<__m128i>();
                    for (j, w) in w[i].iter_mut().enumerate() {
                        *w = _mm_shuffle_epi8(_mm_loadu_si128(p.add(j)), bswap);
                    }
                }
            }
            for group in 0..16 {
                // `group < 16`, so words 4*group..4*group+4 are inside the 64 of `K`.
                let k = _mm_loadu_si128(K.as_ptr().add(4 * group).cast::<__m128i>());
                for i in 0..N {
                    let w = &mut w[i];
                    if group >= 4 {
                        // W[t] from W[t-16], W[t-15], W[t-7] and W[t-2], four at a time.
                        let s0 = _mm_sha256msg1_epu32(w[group % 4], w[(group + 1) % 4]);
                        let s = _mm_add_epi32(
                            s0,
                            _mm_alignr_epi8(w[(group + 3) % 4], w[(group + 2) % 4], 4),
                        );
                        w[group % 4] = _mm_sha256msg2_epu32(s, w[(group + 3) % 4]);
                    }
                    let wk = _mm_add_epi32(w[group % 4], k);
                    cdgh[i] = _mm_sha256rnds2_epu32(cdgh[i], abef[i], wk);
                    abef[i] = _mm_sha256rnds2_epu32(abef[i], cdgh[i], _mm_shuffle_epi32(wk, 0x0E));
                }
            }
            for i in 0..N {
                abef[i] = _mm_add_epi32(abef[i], start_abef[i]);
                cdgh[i] = _mm_add_epi32(cdgh[i], start_cdgh[i]);
            }
        }
        for i in 0..N {
            let feba = _mm_shuffle_epi32(abef[i], 0x1B);
            let dchg = _mm_shuffle_epi32(cdgh[i], 0xB1);
            // As for the loads above.
            {
                let p = states[i].as_mut_ptr().cast::<__m128i>();
                _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
                _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
            }
        }
    }
}
