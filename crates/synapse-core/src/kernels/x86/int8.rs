//! INT8 weights (per-row f32 scale, then signed byte codes) against [`Q8Rows`]
//! activations, whose 32-value blocks each have their own scale.
//!
//! Each row is read once per group of [`T`] tokens: every 32 (AVX2) or 64 (AVX-512)
//! codes are loaded once and multiplied with each token's codes, the integer sums of
//! each block scaled by its activation scale into f32 accumulators; the row scale is
//! applied to the final sums.

use super::super::SharedOut;
use crate::dtype::INT8_ROW_HEADER;
use crate::kernels::Isa;
use crate::quant::activation::Q8Rows;
use crate::tensor::WeightTensor;
use std::arch::x86_64::*;
use std::ops::Range;

/// Tokens that share one pass over a row.
const T: usize = 4;

/// Computes rows `rows` of the matmul of INT8 `w` with `acts`, writing `out[t * n + r]`.
///
/// # Safety
/// The CPU has `isa` (Avx2 or Avx512); no other thread writes these rows.
pub(super) unsafe fn matmul_rows(
    isa: Isa,
    w: &WeightTensor,
    acts: &Q8Rows,
    n_tokens: usize,
    rows: Range<usize>,
    out: SharedOut,
    n: usize,
) {
    for r in rows {
        let row = w.row(r);
        let scale = f32::from_le_bytes(row[..INT8_ROW_HEADER].try_into().expect("scale"));
        let codes = &row[INT8_ROW_HEADER..];
        let mut t = 0;
        while t < n_tokens {
            let sums = if t + T <= n_tokens {
                // SAFETY: as the caller guarantees; tokens t..t + T exist.
                unsafe { dot_tokens::<T>(isa, codes, acts, t) }
            } else {
                let mut one = [0f32; T];
                // SAFETY: as above, for token t.
                one[0] = unsafe { dot_tokens::<1>(isa, codes, acts, t)[0] };
                one
            };
            let count = if t + T <= n_tokens { T } else { 1 };
            for (i, &s) in sums[..count].iter().enumerate() {
                // SAFETY: row r is this thread's; (t + i) * n + r is inside `out`.
                unsafe { out.write((t + i) * n + r, scale * s) };
            }
            t += count;
        }
    }
}

/// # Safety
/// The CPU has `isa`; tokens `t0..t0 + N` exist in `acts`; `codes` is one row.
unsafe fn dot_tokens<const N: usize>(isa: Isa, codes: &[u8], acts: &Q8Rows, t0: usize) -> [f32; N] {
    assert_eq!(codes.len(), acts.cols(), "INT8 row length");
    assert!((t0 + N) * acts.cols() <= acts.codes.len(), "tokens exist");
    // SAFETY: the CPU has `isa`, as the caller guarantees; the bounds are checked above.
    unsafe {
        match isa {
            Isa::Avx512 => avx512::<N>(codes, acts, t0),
            _ => avx2::<N>(codes, acts, t0),
        }
    }
}

/// # Safety
/// The CPU has AVX2, FMA and F16C; the row and tokens are in bounds (see `dot_tokens`).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2<const N: usize>(codes: &[u8], acts: &Q8Rows, t0: usize) -> [f32; N] {
    let cols = codes.len();
    let blocks = cols / 32;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..blocks {
        // SAFETY: block b is inside the row.
        let q = unsafe { _mm256_loadu_si256(codes.as_ptr().add(32 * b).cast()) };
        // |q| times the activations with q's sign: `vpmaddubsw` needs one unsigned side.
        let abs_q = _mm256_sign_epi8(q, q);
        for (t, acc) in acc.iter_mut().enumerate() {
            let token = t0 + t;
            // SAFETY: token `token` exists, and block b of its codes.
            let a = unsafe {
                _mm256_loadu_si256(acts.codes.as_ptr().add(token * cols + 32 * b).cast())
            };
            let pairs = _mm256_maddubs_epi16(abs_q, _mm256_sign_epi8(a, q));
            let dot = _mm256_madd_epi16(pairs, ones);
            let d = _mm256_set1_ps(acts.d[token * blocks + b]);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, *acc);
        }
    }
    acc.map(|v| {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    })
}

/// Two blocks per step with `vpdpbusd`, which multiplies unsigned by signed bytes: |q|
/// times the activations negated where q is negative. (Making q unsigned by adding 128
/// instead would leave lanes of `128 * a`, far larger than the dot product, to cancel in
/// f32.)
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; the row and tokens are in bounds.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")]
unsafe fn avx512<const N: usize>(codes: &[u8], acts: &Q8Rows, t0: usize) -> [f32; N] {
    let cols = codes.len();
    let blocks = cols / 32;
    let mut acc = [_mm512_setzero_ps(); N];
    for b in (0..blocks).step_by(2) {
        let two = b + 1 < blocks;
        // The last step of an odd number of blocks reads (and zeroes) only 32 bytes.
        let mask = if two { u64::MAX } else { u32::MAX as u64 };
        // SAFETY: the masked bytes are inside the row; the others are not read.
        let q = unsafe { _mm512_maskz_loadu_epi8(mask, codes.as_ptr().add(32 * b).cast()) };
        let (abs_q, negative) = (_mm512_abs_epi8(q), _mm512_movepi8_mask(q));
        for (t, acc) in acc.iter_mut().enumerate() {
            let token = t0 + t;
            let block = token * blocks + b;
            // SAFETY: as for the weights: the masked bytes are this token's blocks.
            let a = unsafe {
                _mm512_maskz_loadu_epi8(mask, acts.codes.as_ptr().add(token * cols + 32 * b).cast())
            };
            // Activation codes are at least -127, so negating them cannot overflow.
            let signed_a = _mm512_mask_sub_epi8(a, negative, _mm512_setzero_si512(), a);
            let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), abs_q, signed_a);
            let d1 = if two { acts.d[block + 1] } else { 0.0 };
            let d = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(acts.d[block]), _mm512_set1_ps(d1));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, *acc);
        }
    }
    acc.map(|v| _mm512_reduce_add_ps(v))
}
