//! x86-64 kernels with AVX2, FMA and F16C, chosen at run time by `isa()`. Formats without
//! a hand-written kernel here run the portable bodies compiled with these features on.

use super::{quantized_dot_portable, ActRow};
use crate::dtype::DType;
use crate::quant::activation::{BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::as_blocks;
use crate::quant::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0};
use std::arch::x86_64::*;

pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantized_dot(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    match (dtype, a) {
        (DType::Q4_0, ActRow::Q8_0(a)) => dot_q4_0(as_blocks(w), a),
        (DType::Q4_1, ActRow::Q8_1(a)) => dot_q4_1(as_blocks(w), a),
        (DType::Q8_0, ActRow::Q8_0(a)) => dot_q8_0(as_blocks(w), a),
        _ => quantized_dot_portable(dtype, w, a),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Eight i32 sums of products of unsigned bytes `u` (0..=127 here) with signed bytes `s`,
/// as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(u, s);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// As [`dot_u8_i8`] for two signed operands: move the sign of `x` onto `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256 {
    dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// The 32 4-bit codes of a Q4 block in value order (low nibbles, then high nibbles).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let packed = _mm_loadu_si128(qs.as_ptr().cast());
    let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_i8x32(qs: &[i8; 32]) -> __m256i {
    _mm256_loadu_si256(qs.as_ptr().cast())
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0Act]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, a) in w.iter().zip(a) {
        let q = _mm256_sub_epi8(nibbles(&w.qs), _mm256_set1_epi8(8));
        let d = _mm256_set1_ps(w.d.to_f32() * a.d.to_f32());
        acc = _mm256_fmadd_ps(d, dot_i8_i8(q, load_i8x32(&a.qs)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1Act]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0f32;
    for (w, a) in w.iter().zip(a) {
        let d = _mm256_set1_ps(w.d.to_f32() * a.d.to_f32());
        acc = _mm256_fmadd_ps(d, dot_u8_i8(nibbles(&w.qs), load_i8x32(&a.qs)), acc);
        offsets += w.m.to_f32() * a.s.to_f32();
    }
    hsum(acc) + offsets
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0Act]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (w, a) in w.iter().zip(a) {
        let d = _mm256_set1_ps(w.d.to_f32() * a.d.to_f32());
        acc = _mm256_fmadd_ps(d, dot_i8_i8(load_i8x32(&w.qs), load_i8x32(&a.qs)), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let j = i + 8 * k;
            *acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(w.as_ptr().add(j)),
                _mm256_loadu_ps(x.as_ptr().add(j)),
                *acc,
            );
        }
        i += 32;
    }
    let mut sum = hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    while i < n {
        sum += w[i] * x[i];
        i += 1;
    }
    sum
}
