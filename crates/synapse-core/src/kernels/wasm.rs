//! wasm32 kernels with SIMD128, chosen at compile time: wasm has no run-time feature
//! detection, and a module that uses SIMD128 anywhere only loads in an engine that has
//! it, so a build with `-C target-feature=+simd128` always runs these.
//!
//! SIMD128 has no byte dot product (only relaxed SIMD does): [`dot16`] widens the signed
//! bytes to i16 and adds pairs of products with `i32x4.dot_i16x8_s`. Otherwise the
//! kernels follow the NEON ones (`aarch64.rs`), which have the same vector width.

use super::shared128::{chunks16, dot_q4_k, dot_q5_k, dot_q6_k, Act32, Vec128};
use super::{quantized_dot_portable, ActRow};
use crate::dtype::DType;
use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::as_blocks;
use crate::quant::blocks::*;
use crate::quant::int8_row;
use core::arch::wasm32::*;
use half::f16;

/// Dot product of a quantized weight row with activations of its paired type.
pub fn quantized_dot(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    match (dtype, a) {
        (DType::Q4_0, ActRow::Q8_0(a)) => dot_q4_0(as_blocks(w), a),
        (DType::Q4_1, ActRow::Q8_1(a)) => dot_q4_1(as_blocks(w), a),
        (DType::Q5_0, ActRow::Q8_0(a)) => dot_q5_0(as_blocks(w), a),
        (DType::Q5_1, ActRow::Q8_1(a)) => dot_q5_1(as_blocks(w), a),
        (DType::Q8_0, ActRow::Q8_0(a)) => dot_q8_0(as_blocks(w), a),
        // SAFETY: the whole build has SIMD128, which is all `Simd128` uses.
        (DType::Q4K, ActRow::Q8K(a)) => unsafe { dot_q4_k::<Simd128>(as_blocks(w), a) },
        // SAFETY: as above.
        (DType::Q5K, ActRow::Q8K(a)) => unsafe { dot_q5_k::<Simd128>(as_blocks(w), a) },
        // SAFETY: as above.
        (DType::Q6K, ActRow::Q8K(a)) => unsafe { dot_q6_k::<Simd128>(as_blocks(w), a) },
        (DType::Int8, ActRow::Q8_0(a)) => dot_int8(w, a),
        _ => quantized_dot_portable(dtype, w, a),
    }
}

/// The first 16 bytes of `s` as a vector (bounds-checked by the slice index).
#[inline(always)]
fn load<T: Copy>(s: &[T]) -> v128 {
    let s = &s[..16 / size_of::<T>()];
    // SAFETY: `s` holds 16 bytes, and wasm loads need no alignment.
    unsafe { v128_load(s.as_ptr().cast()) }
}

/// `acc` plus the sixteen products of signed bytes `a` and `b`, in four i32 lanes (each
/// the sum of four products). Callers only use the sum of the lanes, or scale all alike.
#[inline(always)]
fn dot16(acc: v128, a: v128, b: v128) -> v128 {
    let low = i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), i16x8_extend_low_i8x16(b));
    let high = i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), i16x8_extend_high_i8x16(b));
    i32x4_add(acc, i32x4_add(low, high))
}

/// The dot product of 32 codes (as two vectors of 16) with 32 activations, in four lanes.
#[inline(always)]
fn dot32(lo: v128, hi: v128, a: &[i8]) -> v128 {
    dot16(dot16(i32x4_splat(0), lo, load(a)), hi, load(&a[16..]))
}

#[inline(always)]
fn sum_f32(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

#[inline(always)]
fn sum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// Low and high nibbles of 16 bytes (in Q4_0/Q4_1 blocks, values 0..16 and 16..32).
#[inline(always)]
fn nibbles(qs: &[u8]) -> (v128, v128) {
    let v = load(qs);
    (v128_and(v, u8x16_splat(0x0F)), u8x16_shr(v, 4))
}

/// The fifth bits of a Q5_0/Q5_1 block: byte j has 0x10 where bit j of `qh` (as a
/// little-endian u32) is set, for values 0..16 and 16..32.
#[inline(always)]
fn fifth_bits(qh: [u8; 4]) -> (v128, v128) {
    const LANE_BIT: v128 = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    // Byte b0 in the low 8 lanes and b1 in the high 8, each lane tested for its own bit.
    let expand = |b0: u8, b1: u8| {
        let bytes = u64x2(
            b0 as u64 * 0x0101_0101_0101_0101,
            b1 as u64 * 0x0101_0101_0101_0101,
        );
        let set = u8x16_eq(v128_and(bytes, LANE_BIT), LANE_BIT);
        v128_and(set, u8x16_splat(0x10))
    };
    (expand(qh[0], qh[1]), expand(qh[2], qh[3]))
}

/// The 32 codes of a 5-bit block minus `offset`, as two vectors.
#[inline(always)]
fn codes_5bit(qs: &[u8; 16], qh: [u8; 4], offset: i8) -> (v128, v128) {
    let (lo, hi) = nibbles(qs);
    let (h0, h1) = fifth_bits(qh);
    let off = i8x16_splat(offset);
    (
        i8x16_sub(v128_or(lo, h0), off),
        i8x16_sub(v128_or(hi, h1), off),
    )
}

/// Adds `scale * (lanes of isum)` to `acc` in f32 lanes (SIMD128 has no fused multiply-add).
#[inline(always)]
fn add_scaled(acc: v128, isum: v128, scale: f32) -> v128 {
    f32x4_add(
        acc,
        f32x4_mul(f32x4_convert_i32x4(isum), f32x4_splat(scale)),
    )
}

/// The loop of the 32-value formats: each weight block's 32 signed codes (as two vectors
/// of 16) and scale, as `block(w)` gives them, dotted with its activation block's at the
/// product of the scales; `per_block(w, a)` runs on each pair of blocks too.
#[inline(always)]
fn dot_blocks<W, A: Act32>(
    w: &[W],
    a: &[A],
    block: impl Fn(&W) -> ((v128, v128), f16),
    mut per_block: impl FnMut(&W, &A),
) -> f32 {
    let mut acc = f32x4_splat(0.0);
    for (w, a) in w.iter().zip(a) {
        let ((lo, hi), d) = block(w);
        acc = add_scaled(acc, dot32(lo, hi, a.qs()), d.to_f32() * a.d().to_f32());
        per_block(w, a);
    }
    sum_f32(acc)
}

/// [`dot_blocks`] for the formats with an offset `m(w)` (value = q * d + m): plus each
/// block's `m` times its activations' `s`.
#[inline(always)]
fn dot_blocks_offset<W>(
    w: &[W],
    a: &[BlockQ8_1Act],
    block: impl Fn(&W) -> ((v128, v128), f16),
    m: impl Fn(&W) -> f16,
) -> f32 {
    let mut offsets = 0f32;
    let dot = dot_blocks(w, a, block, |w, a| offsets += m(w).to_f32() * a.s.to_f32());
    dot + offsets
}

fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0Act]) -> f32 {
    let block = |w: &BlockQ4_0| {
        let (lo, hi) = nibbles(&w.qs);
        let eight = i8x16_splat(8);
        ((i8x16_sub(lo, eight), i8x16_sub(hi, eight)), w.d)
    };
    dot_blocks(w, a, block, |_, _| {})
}

fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1Act]) -> f32 {
    dot_blocks_offset(w, a, |w| (nibbles(&w.qs), w.d), |w| w.m)
}

fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0Act]) -> f32 {
    dot_blocks(w, a, |w| (codes_5bit(&w.qs, w.qh, 16), w.d), |_, _| {})
}

fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1Act]) -> f32 {
    dot_blocks_offset(w, a, |w| (codes_5bit(&w.qs, w.qh, 0), w.d), |w| w.m)
}

fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0Act]) -> f32 {
    dot_blocks(w, a, |w| ((load(&w.qs), load(&w.qs[16..])), w.d), |_, _| {})
}

/// An INT8 row: blocks of 32 codes at their activation block's scale, then the row scale.
fn dot_int8(w: &[u8], a: &[BlockQ8_0Act]) -> f32 {
    let (scale, codes) = int8_row(w);
    let mut acc = f32x4_splat(0.0);
    for (q, a) in codes.chunks_exact(32).zip(a) {
        acc = add_scaled(acc, dot32(load(q), load(&q[16..]), &a.qs), a.d.to_f32());
    }
    scale * sum_f32(acc)
}

/// The K-quant kernels' vector operations (see [`Vec128`]).
struct Simd128;

impl Vec128 for Simd128 {
    type Bytes = v128;
    type Ints = v128;
    #[inline(always)]
    unsafe fn load(s: &[u8]) -> v128 {
        load(s)
    }
    #[inline(always)]
    unsafe fn nibbles(s: &[u8]) -> (v128, v128) {
        nibbles(s)
    }
    #[inline(always)]
    unsafe fn and(a: v128, mask: u8) -> v128 {
        v128_and(a, u8x16_splat(mask))
    }
    #[inline(always)]
    unsafe fn or(a: v128, b: v128) -> v128 {
        v128_or(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: v128, b: i8) -> v128 {
        i8x16_sub(a, i8x16_splat(b))
    }
    #[inline(always)]
    unsafe fn shl<const N: i32>(a: v128) -> v128 {
        u8x16_shl(a, N as u32)
    }
    #[inline(always)]
    unsafe fn shr<const N: i32>(a: v128) -> v128 {
        u8x16_shr(a, N as u32)
    }
    #[inline(always)]
    unsafe fn zero() -> v128 {
        i32x4_splat(0)
    }
    #[inline(always)]
    unsafe fn dot16(q: v128, a: &[i8]) -> v128 {
        dot16(i32x4_splat(0), q, load(a))
    }
    #[inline(always)]
    unsafe fn dot32(lo: v128, hi: v128, a: &[i8]) -> v128 {
        dot32(lo, hi, a)
    }
    #[inline(always)]
    unsafe fn mul_add(acc: v128, x: v128, s: i32) -> v128 {
        i32x4_add(acc, i32x4_mul(x, i32x4_splat(s)))
    }
    #[inline(always)]
    unsafe fn sum(x: v128) -> i32 {
        sum_i32(x)
    }
    #[inline(always)]
    fn f32_of(h: f16) -> f32 {
        h.to_f32()
    }
    #[inline(always)]
    unsafe fn k4_scales_and_mins(scales: &[u8; 12], a: &BlockQ8K) -> ([u8; 8], i32) {
        let mut sc = [0u8; 8];
        // Each min twice: it multiplies both 16-activation sums of its sub-block (each sum at
        // most 16 * 128 in magnitude, so the i16 products' pair sums fit i32).
        let mut mins = [0i16; 16];
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, scales);
            sc[j] = s;
            mins[2 * j..2 * j + 2].fill(m as i16);
        }
        let low = i32x4_dot_i16x8(load(&a.bsums), load(&mins));
        let high = i32x4_dot_i16x8(load(&a.bsums[8..]), load(&mins[8..]));
        (sc, sum_i32(i32x4_add(low, high)))
    }
}

pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let (chunks, tail) = chunks16(w, x);
    // Four accumulators, so that consecutive adds do not wait on each other.
    let mut acc = [f32x4_splat(0.0); 4];
    for (wv, xv) in chunks {
        for (k, acc) in acc.iter_mut().enumerate() {
            let product = f32x4_mul(load(&wv[4 * k..]), load(&xv[4 * k..]));
            *acc = f32x4_add(*acc, product);
        }
    }
    sum_f32(f32x4_add(
        f32x4_add(acc[0], acc[1]),
        f32x4_add(acc[2], acc[3]),
    )) + tail
}

#[cfg(test)]
mod tests {
    use super::super::tests::{magnitude, random_acts, random_weight, Acts, Rng};
    use super::super::{isa, quantized_dot, Isa};
    use super::*;
    use crate::dtype::QK_K;
    // These run under Node (scripts/test-wasm.sh): `#[test]` is wasm-bindgen-test's.
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Every quantized format's SIMD128 dot product against the scalar oracle, relative to
    /// the products' magnitude (see [`magnitude`]). Weights: rows of one extreme code byte
    /// (0x00, 0xFF, 0x80, 0x7F), then random rows, with scales and minimums of both signs
    /// (see [`random_weight`]); each meets activations of all +1 and all -1 (codes of
    /// +-127 everywhere), one with an outlier, and a constant. The integer sums are exact
    /// on both sides; only the order of the float operations differs.
    #[test]
    fn simd128_dots_match_scalar() {
        let mut rng = Rng(0x5EED);
        let mut checked = 0;
        for dtype in DType::ALL.into_iter().filter(|d| d.is_quantized()) {
            // An odd number of 32-value blocks; several K-quant super-blocks.
            let n_blocks = if dtype.block_len() == QK_K { 3 } else { 13 };
            let (rows, cols) = (12, n_blocks * dtype.block_len());
            let w = random_weight(dtype, rows, cols, &mut rng);
            let mut x = random_acts(4, cols, &mut rng);
            x[..cols].fill(1.0);
            x[3 * cols..].fill(-1.0);
            let mut worst = 0f32;
            for r in 0..rows {
                for (t, x) in x.chunks_exact(cols).enumerate() {
                    let acts = Acts::quantize(dtype, x);
                    let got = quantized_dot(Isa::Simd128, dtype, w.row(r), acts.row());
                    let want = quantized_dot_portable(dtype, w.row(r), acts.row());
                    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                    let magnitude = magnitude(dtype, w.row(r), &x) as f32;
                    let err = (got - want).abs() / magnitude.max(f32::MIN_POSITIVE);
                    assert!(
                        err <= 1e-6,
                        "{dtype} row {r} token {t}: got {got}, scalar {want}, relative error {err:e}"
                    );
                    worst = worst.max(err);
                    checked += 1;
                }
            }
            eprintln!("Simd128 {dtype}: worst relative error {worst:e}");
        }
        assert_eq!(checked, 9 * 12 * 4);
    }

    #[test]
    fn isa_is_simd128() {
        assert_eq!(isa(), Isa::Simd128);
    }
}
