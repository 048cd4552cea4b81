//! wasm32 kernels with SIMD128, chosen at compile time: wasm has no run-time feature
//! detection, and a module that uses SIMD128 anywhere only loads in an engine that has
//! it, so a build with `-C target-feature=+simd128` always runs these.
//!
//! The dot products are written once for NEON and SIMD128, which have the same vector
//! width, over the operations of [`Vec128`] (`shared128.rs`); this file implements them.
//! SIMD128 has no byte dot product (only relaxed SIMD does): [`dot16`] widens the signed
//! bytes to i16 and adds pairs of products with `i32x4.dot_i16x8_s`.
//!
//! The activation quantizers write the blocks that `quant::activation`'s do, bit for bit.

use super::shared128::{self, Act32, Vec128};
use super::{ActRow, SharedOut};
use crate::dtype::{DType, QK_K};
use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::as_blocks;
use crate::quant::blocks::{scale_min_k4, BlockQ4_0, BlockQ4_1, BlockQ8_0};
use crate::tensor::WeightTensor;
use core::arch::wasm32::*;
use half::f16;
use std::ops::Range;

/// Dot product of a quantized weight row with activations of its paired type.
pub fn quantized_dot(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    // SAFETY: the whole build has SIMD128, which is all `Simd128` uses.
    unsafe { shared128::quantized_dot::<Simd128>(dtype, w, a) }
}

/// Rows `rows` of `w` times `n_tokens` rows of activations `acts` into `out` (`out[t * n +
/// r]`), for the 32-value formats whose codes widen to i16 with one load (Q4_0, Q4_1,
/// Q8_0); false for other types. Tiles share work that the row-by-row dot product
/// repeats: in decode, four weight rows share each widened activation block; in
/// prefill, four tokens share each widened weight block.
pub(super) fn matmul_rows(
    w: &WeightTensor,
    acts: ActRow,
    n_tokens: usize,
    rows: Range<usize>,
    out: SharedOut,
) -> bool {
    let k = w.cols;
    match (w.dtype, acts) {
        (DType::Q4_0, ActRow::Q8_0(a)) => tiles::<BlockQ4_0, _>(w, a, k / 32, n_tokens, rows, out),
        (DType::Q4_1, ActRow::Q8_1(a)) => tiles::<BlockQ4_1, _>(w, a, k / 32, n_tokens, rows, out),
        (DType::Q8_0, ActRow::Q8_0(a)) => tiles::<BlockQ8_0, _>(w, a, k / 32, n_tokens, rows, out),
        _ => return false,
    }
    true
}

/// A weight block of 32 values whose codes [`matmul_rows`] widens to i16.
trait Widen32: crate::quant::Block {
    /// Whether values carry an offset (value = code * d + m).
    const OFFSET: bool;
    /// The 32 codes as i16, values 0..8, 8..16, 16..24, 24..32.
    fn widen(&self) -> [v128; 4];
    /// The scale `d` and offset `m` (zero without one).
    fn scales(&self) -> (f16, f16);
}

/// An f16 as f32 without branches (`half`'s software conversion branches on the
/// exponent, which costs more than a block's dot product).
#[inline(always)]
fn f32_of(h: f16) -> f32 {
    crate::quant::f16_to_f32(h.to_bits())
}

/// 8 unsigned bytes at the start of `s`, widened to i16.
#[inline(always)]
fn load_u8x8(s: &[u8]) -> v128 {
    let s = &s[..8];
    // SAFETY: `s` holds 8 bytes, and wasm loads need no alignment.
    unsafe { u16x8_load_extend_u8x8(s.as_ptr()) }
}

/// 8 signed bytes at the start of `s`, widened to i16.
#[inline(always)]
fn load_i8x8(s: &[i8]) -> v128 {
    let s = &s[..8];
    // SAFETY: as in `load_u8x8`.
    unsafe { i16x8_load_extend_i8x8(s.as_ptr()) }
}

/// 32 nibbles (low nibbles are values 0..16, high ones 16..32) as i16.
#[inline(always)]
fn nibbles_i16(qs: &[u8; 16]) -> [v128; 4] {
    let (a, b) = (load_u8x8(qs), load_u8x8(&qs[8..]));
    let mask = i16x8_splat(0x0F);
    [
        v128_and(a, mask),
        v128_and(b, mask),
        u16x8_shr(a, 4),
        u16x8_shr(b, 4),
    ]
}

#[inline(always)]
fn bytes_i16(qs: &[i8; 32]) -> [v128; 4] {
    [
        load_i8x8(qs),
        load_i8x8(&qs[8..]),
        load_i8x8(&qs[16..]),
        load_i8x8(&qs[24..]),
    ]
}

impl Widen32 for BlockQ4_0 {
    const OFFSET: bool = false;
    #[inline(always)]
    fn widen(&self) -> [v128; 4] {
        nibbles_i16(&self.qs).map(|v| i16x8_sub(v, i16x8_splat(8)))
    }
    #[inline(always)]
    fn scales(&self) -> (f16, f16) {
        (self.d, f16::ZERO)
    }
}

impl Widen32 for BlockQ4_1 {
    const OFFSET: bool = true;
    #[inline(always)]
    fn widen(&self) -> [v128; 4] {
        nibbles_i16(&self.qs)
    }
    #[inline(always)]
    fn scales(&self) -> (f16, f16) {
        (self.d, self.m)
    }
}

impl Widen32 for BlockQ8_0 {
    const OFFSET: bool = false;
    #[inline(always)]
    fn widen(&self) -> [v128; 4] {
        bytes_i16(&self.qs)
    }
    #[inline(always)]
    fn scales(&self) -> (f16, f16) {
        (self.d, f16::ZERO)
    }
}

/// The dot product of 32 widened codes with 32 widened activations, in four i32 lanes.
#[inline(always)]
fn dot_i16(w: &[v128; 4], a: &[v128; 4]) -> v128 {
    let low = i32x4_add(i32x4_dot_i16x8(w[0], a[0]), i32x4_dot_i16x8(w[1], a[1]));
    let high = i32x4_add(i32x4_dot_i16x8(w[2], a[2]), i32x4_dot_i16x8(w[3], a[3]));
    i32x4_add(low, high)
}

/// Lane `i`: the sum of the four lanes of `v[i]`, in two rounds of interleaving adds.
#[inline(always)]
fn lane_sums(v: [v128; 4]) -> v128 {
    let low = |a, b| i32x4_shuffle::<0, 4, 1, 5>(a, b);
    let high = |a, b| i32x4_shuffle::<2, 6, 3, 7>(a, b);
    let s01 = i32x4_add(low(v[0], v[1]), high(v[0], v[1]));
    let s23 = i32x4_add(low(v[2], v[3]), high(v[2], v[3]));
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(s01, s23),
        i32x4_shuffle::<2, 3, 6, 7>(s01, s23),
    )
}

/// Four weight blocks' f16 scales as f32 lanes, in three operations: their bits
/// sign-extended, shifted into f32 place with the surplus sign bits masked off, then
/// rebased by 2^112, which is exact for zeros, subnormals and normals. An infinite or NaN
/// scale, which no quantizer writes, comes out finite (about 2^16); the full conversion
/// of [`f32_of`] would cost a third of prefill's speed here.
#[inline(always)]
fn weight_scales(h: impl Fn(usize) -> f16) -> v128 {
    let bits = |l| h(l).to_bits() as i16 as i32;
    let placed = v128_and(
        i32x4_shl(i32x4(bits(0), bits(1), bits(2), bits(3)), 13),
        u32x4_splat(0x8FFF_E000),
    );
    f32x4_mul(placed, f32x4_splat(f32::from_bits(0x7780_0000)))
}

/// Sums of `R` weight rows times `T` activation rows (`blocks` blocks each, `R * T` at
/// most 4) into `out[t][r]`: per block, each row's codes and each token's activations
/// are widened once and meet in `R * T` dot products, whose sums then share one vector
/// (lane `t * R + r`) for the scaling and accumulation, with the weight scales converted
/// together.
#[inline(always)]
fn tile<W: Widen32, A: Act32, const R: usize, const T: usize>(
    w: [&[W]; R],
    a: [(&[A], &[[f32; 2]]); T],
    blocks: usize,
) -> [[f32; R]; T] {
    const { assert!(R * T <= 4) };
    // The row and token of each lane (lanes past `R * T` repeat the last pair).
    let row = |lane: usize| lane.min(R * T - 1) % R;
    let token = |lane: usize| lane.min(R * T - 1) / R;
    // Slices of exactly `blocks` blocks, so that indexing them by `b` needs no checks.
    let w = w.map(|w| &w[..blocks]);
    let a = a.map(|(a, scales)| (&a[..blocks], &scales[..blocks]));
    let (mut acc, mut offsets) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for b in 0..blocks {
        let acts = a.map(|(a, _)| bytes_i16(a[b].qs()));
        let mut dots = [i32x4_splat(0); 4];
        for r in 0..R {
            let codes = w[r][b].widen();
            for t in 0..T {
                dots[t * R + r] = dot_i16(&codes, &acts[t]);
            }
        }
        let (weights, act) = (|l| w[row(l)][b].scales(), |l| a[token(l)].1[b]);
        let d = weight_scales(|l| weights(l).0);
        let da = f32x4(act(0)[0], act(1)[0], act(2)[0], act(3)[0]);
        let sums = f32x4_convert_i32x4(lane_sums(dots));
        acc = f32x4_add(acc, f32x4_mul(sums, f32x4_mul(d, da)));
        if W::OFFSET {
            let m = weight_scales(|l| weights(l).1);
            let sa = f32x4(act(0)[1], act(1)[1], act(2)[1], act(3)[1]);
            offsets = f32x4_add(offsets, f32x4_mul(m, sa));
        }
    }
    let total = f32x4_add(acc, offsets);
    let lane = [
        f32x4_extract_lane::<0>(total),
        f32x4_extract_lane::<1>(total),
        f32x4_extract_lane::<2>(total),
        f32x4_extract_lane::<3>(total),
    ];
    let mut sums = [[0f32; R]; T];
    for (t, sums) in sums.iter_mut().enumerate() {
        for (r, sum) in sums.iter_mut().enumerate() {
            *sum = lane[t * R + r];
        }
    }
    sums
}

/// [`matmul_rows`] for one weight type: four rows at a time for a single token, four
/// tokens at a time otherwise. A remainder of fewer than four repeats its last row (or
/// token) to fill a tile, whose extra sums are dropped: a tile shape of its own for
/// remainders would cost the browser's download more than the few repeated blocks cost
/// time.
fn tiles<W: Widen32, A: Act32>(
    w: &WeightTensor,
    acts: &[A],
    blocks: usize,
    n_tokens: usize,
    rows: Range<usize>,
    out: SharedOut,
) {
    let (n, last_row) = (w.rows, rows.end - 1);
    let row = |r: usize| -> &[W] { as_blocks(w.row(r.min(last_row))) };
    // The activations' scales, converted once rather than once per row.
    let scales: Vec<[f32; 2]> = acts
        .iter()
        .map(|a| [f32_of(a.d()), f32_of(a.s())])
        .collect();
    let act = |t: usize| {
        let t = t.min(n_tokens - 1);
        let blocks = t * blocks..(t + 1) * blocks;
        (&acts[blocks.clone()], &scales[blocks])
    };
    // SAFETY: every call below writes a row in `rows`, which belong to this thread alone,
    // and a token t < n_tokens: an index inside `out`'s n_tokens * n that no other
    // thread writes.
    let put = |t: usize, r: usize, v: f32| unsafe { out.write(t * n + r, v) };
    if n_tokens == 1 {
        for r in rows.clone().step_by(4) {
            let [sums] = tile::<W, A, 4, 1>(
                [row(r), row(r + 1), row(r + 2), row(r + 3)],
                [act(0)],
                blocks,
            );
            for (i, v) in sums.into_iter().enumerate().take(rows.end - r) {
                put(0, r + i, v);
            }
        }
        return;
    }
    for r in rows {
        for t in (0..n_tokens).step_by(4) {
            let sums = tile::<W, A, 1, 4>(
                [row(r)],
                [act(t), act(t + 1), act(t + 2), act(t + 3)],
                blocks,
            );
            for (i, [v]) in sums.into_iter().enumerate().take(n_tokens - t) {
                put(t + i, r, v);
            }
        }
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

/// The kernels' vector operations (see [`Vec128`]).
struct Simd128;

impl Vec128 for Simd128 {
    type Bytes = v128;
    type Ints = v128;
    type Floats = v128;
    #[inline(always)]
    unsafe fn load(s: &[u8]) -> v128 {
        load(s)
    }
    #[inline(always)]
    unsafe fn load_i8(s: &[i8]) -> v128 {
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
    unsafe fn zero_f32() -> v128 {
        f32x4_splat(0.0)
    }
    /// Without fused multiply-add: SIMD128 has none.
    #[inline(always)]
    unsafe fn add_scaled(acc: v128, isum: v128, scale: f32) -> v128 {
        f32x4_add(
            acc,
            f32x4_mul(f32x4_convert_i32x4(isum), f32x4_splat(scale)),
        )
    }
    #[inline(always)]
    unsafe fn sum_f32(x: v128) -> f32 {
        (f32x4_extract_lane::<0>(x) + f32x4_extract_lane::<1>(x))
            + (f32x4_extract_lane::<2>(x) + f32x4_extract_lane::<3>(x))
    }
    #[inline(always)]
    unsafe fn load_f32(s: &[f32]) -> v128 {
        load(s)
    }
    #[inline(always)]
    unsafe fn mul_add_f32(acc: v128, a: v128, b: v128) -> v128 {
        f32x4_add(acc, f32x4_mul(a, b))
    }
    #[inline(always)]
    unsafe fn add_f32(a: v128, b: v128) -> v128 {
        f32x4_add(a, b)
    }
    #[inline(always)]
    fn f32_of(h: f16) -> f32 {
        f32_of(h)
    }
    #[inline(always)]
    unsafe fn fifth_bits(qh: [u8; 4]) -> (v128, v128) {
        fifth_bits(qh)
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
    // SAFETY: as in `quantized_dot`.
    unsafe { shared128::dot_f32::<Simd128>(w, x) }
}

/// Stores `v` in the first 16 bytes of `s` (bounds-checked by the slice index).
#[inline(always)]
fn store<T: Copy>(s: &mut [T], v: v128) {
    let s = &mut s[..16 / size_of::<T>()];
    // SAFETY: `s` holds 16 bytes, and wasm stores need no alignment.
    unsafe { v128_store(s.as_mut_ptr().cast(), v) }
}

/// A row of f16 weights (little-endian bytes) as f32, bit for bit as `half` widens them:
/// eight values per step with integer operations and one exact multiply, where `half`
/// without F16C or the fp16 extension branches on every value. (BF16 needs no kernel:
/// LLVM vectorises `half`'s shift of a bf16 into an f32 by itself.)
pub fn widen_f16(src: &[u8], out: &mut [f32]) {
    assert_eq!(src.len(), 2 * out.len(), "two bytes per value");
    let mut out = out.chunks_exact_mut(8);
    let mut src = src.chunks_exact(16);
    for (o, b) in (&mut out).zip(&mut src) {
        let h = load(b);
        store(o, f32_of_f16_bits(u32x4_extend_low_u16x8(h)));
        store(&mut o[4..], f32_of_f16_bits(u32x4_extend_high_u16x8(h)));
    }
    let rest = src.remainder().chunks_exact(2);
    for (o, b) in out.into_remainder().iter_mut().zip(rest) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// Four f16s (the low 16 bits of each lane) as f32.
#[inline(always)]
fn f32_of_f16_bits(h: v128) -> v128 {
    let magnitude = v128_and(h, u32x4_splat(0x7FFF));
    let shifted = u32x4_shl(magnitude, 13);
    // In f32 place the exponent is off by 127 - 15: multiplying by 2^112 fixes it,
    // exactly, for normals and subnormals alike (wasm flushes no subnormal to zero).
    let finite = f32x4_mul(shifted, f32x4_splat(f32::from_bits(0x7780_0000)));
    // Infinity and NaN: every exponent bit set, the payload kept, a NaN made quiet.
    let nan = v128_and(
        u32x4_gt(magnitude, u32x4_splat(0x7C00)),
        u32x4_splat(0x0040_0000),
    );
    let special = v128_or(v128_or(shifted, u32x4_splat(0x7F80_0000)), nan);
    let is_special = u32x4_ge(magnitude, u32x4_splat(0x7C00));
    let sign = u32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    v128_or(v128_bitselect(special, finite, is_special), sign)
}

/// The largest magnitude in `x` (a multiple of 4 long). `pmax(m, v)` is `m < v ? v : m`,
/// so a NaN leaves `m`, as `f32::max` in the scalar quantizers does.
#[inline(always)]
fn amax(x: &[f32]) -> f32 {
    let m = x
        .chunks_exact(4)
        .fold(f32x4_splat(0.0), |m, v| f32x4_pmax(m, f32x4_abs(load(v))));
    f32x4_extract_lane::<0>(m)
        .max(f32x4_extract_lane::<1>(m))
        .max(f32x4_extract_lane::<2>(m).max(f32x4_extract_lane::<3>(m)))
}

/// The 16 values of `x` times `scale` as i32, as `round_ties_even() as i32` makes them:
/// `nearest` rounds half to even, and the saturating conversion takes NaN to 0.
#[inline(always)]
fn codes16(x: &[f32], scale: v128) -> [v128; 4] {
    core::array::from_fn(|i| {
        i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(load(&x[4 * i..]), scale)))
    })
}

/// The sums of each four of the 16 signed bytes of `q`, exact.
#[inline(always)]
fn sum_bytes(q: v128) -> v128 {
    i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(q))
}

/// `quantize_32` of `quant::activation` (codes `round_ties_even(x / d) as i8` with
/// `d = max|x| / 127`); returns `d` and the sum of the codes.
#[inline(always)]
fn quantize_32(x: &[f32], qs: &mut [i8; 32]) -> (f32, i32) {
    let d = amax(&x[..32]) / 127.0;
    let id = f32x4_splat(if d != 0.0 { 1.0 / d } else { 0.0 });
    let mut sum = i32x4_splat(0);
    for (x, qs) in x.chunks_exact(16).zip(qs.chunks_exact_mut(16)) {
        let q = codes16(x, id);
        // Saturating narrows, as the float-to-i8 `as` saturates: a subnormal `d` can have
        // an infinite inverse.
        let bytes = i8x16_narrow_i16x8(
            i16x8_narrow_i32x4(q[0], q[1]),
            i16x8_narrow_i32x4(q[2], q[3]),
        );
        store(qs, bytes);
        sum = i32x4_add(sum, sum_bytes(bytes));
    }
    (d, sum_i32(sum))
}

/// `quant::activation::quantize_q8_0` with SIMD128.
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0Act]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        block.d = f16::from_f32(quantize_32(x, &mut block.qs).0);
    }
}

/// `quant::activation::quantize_q8_1` with SIMD128.
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1Act]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(32)) {
        let (d, sum) = quantize_32(x, &mut block.qs);
        block.d = f16::from_f32(d);
        block.s = f16::from_f32(sum as f32 * d);
    }
}

/// The factor `quantize_q8_k` scales a block by: the first value of largest magnitude,
/// with its sign, maps to -127, as in GGML. None for a block of zeros.
#[inline(always)]
fn q8_k_iscale(x: &[f32]) -> Option<f32> {
    let amax = amax(x);
    if amax == 0.0 {
        return None;
    }
    x.iter().find(|v| v.abs() == amax).map(|max| -127.0 / max)
}

/// `quant::activation::quantize_q8_k` with SIMD128.
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let Some(iscale) = q8_k_iscale(x) else {
            *block = BlockQ8K::ZERO;
            continue;
        };
        let scale = f32x4_splat(iscale);
        let groups = x.chunks_exact(16).zip(block.qs.chunks_exact_mut(16));
        for ((x, qs), bsum) in groups.zip(&mut block.bsums) {
            let q = codes16(x, scale).map(|q| i32x4_min(q, i32x4_splat(127)));
            // The low byte of each i32, as the scalar `as i8` keeps it: a subnormal maximum
            // makes `iscale` infinite and codes of i32::MIN, which become 0, not -128.
            let low = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>;
            let bytes = i64x2_shuffle::<0, 2>(low(q[0], q[1]), low(q[2], q[3]));
            store(qs, bytes);
            *bsum = sum_i32(sum_bytes(bytes)) as i16;
        }
        block.d = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{llama_cpp_rows, magnitude, random_acts, random_weight, Acts, Rng};
    use super::super::{isa, quantized_dot, quantized_dot_portable, Isa};
    use super::*;
    use crate::quant::activation;
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

    /// Rows of 256 values, each one Q8_K block and eight 32-value blocks: zeros (and -0);
    /// exact ties (127 first makes the scale 1, so 2.5 and -3.5 round to even), with the
    /// outlier positive and negative; outliers of -90 and 90 among small values; large and
    /// tiny magnitudes; subnormals (a scale's inverse overflows, the codes saturate) and
    /// the smallest one alone (a scale of 0); NaNs; infinities; then random rows whose
    /// 32-value blocks have magnitudes from 1e-6 to 1e6.
    fn crafted_rows(rng: &mut Rng) -> Vec<f32> {
        let ties = [127.0, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -126.5];
        let random = |rng: &mut Rng, scale: f32| -> Vec<f32> {
            (0..QK_K).map(|_| rng.range(-1.0, 1.0) * scale).collect()
        };
        let mut outliers = random(rng, 2.0);
        outliers[37] = -90.0;
        outliers[200] = 90.0;
        let subnormals = (0..QK_K)
            .map(|_| {
                let bits = rng.next() as u32;
                f32::from_bits(bits & 0x8000_07FF)
            })
            .collect();
        let mut smallest = vec![0.0; QK_K];
        smallest[3] = -f32::from_bits(1);
        // A NaN in the lane of the largest value, which a NaN-propagating max would lose.
        let mut nans = random(rng, 1.0);
        nans[0] = f32::NAN;
        nans[4] = 7.0;
        nans[101] = f32::NAN;
        let mut infinities = random(rng, 1.0);
        infinities[40] = f32::INFINITY;
        infinities[100] = f32::NEG_INFINITY;
        let mut rows = vec![
            [0.0, -0.0].repeat(QK_K / 2),
            ties.repeat(QK_K / 8),
            ties.map(|v| -v).repeat(QK_K / 8),
            outliers,
            random(rng, 3e38),
            random(rng, 1e20),
            random(rng, 1e-30),
            subnormals,
            smallest,
            nans,
            infinities,
        ];
        for _ in 0..16 {
            rows.push(
                (0..QK_K / 32)
                    .flat_map(|_| {
                        let scale = 10f32.powf(rng.range(-6.0, 6.0));
                        random(rng, scale)[..32].to_vec()
                    })
                    .collect(),
            );
        }
        rows.concat()
    }

    /// The blocks `simd` writes for `x` are those `scalar` does, compared as `bits`. The
    /// SIMD output starts as the blocks of other values, so that one left unwritten fails.
    fn assert_same_blocks<B: Copy, K: PartialEq + std::fmt::Debug>(
        x: &[f32],
        block: (usize, B),
        scalar: fn(&[f32], &mut [B]),
        simd: fn(&[f32], &mut [B]),
        bits: impl Fn(&B) -> K,
    ) {
        let (len, zero) = block;
        let junk: Vec<f32> = (0..x.len()).map(|i| (i % 7) as f32 - 3.0).collect();
        let mut want = vec![zero; x.len() / len];
        let mut got = want.clone();
        scalar(x, &mut want);
        scalar(&junk, &mut got);
        simd(x, &mut got);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let name = std::any::type_name::<B>();
            assert_eq!(bits(a), bits(b), "{name} {i}");
        }
    }

    /// The SIMD128 quantizers write the blocks the scalar ones do (which tests/activation.rs
    /// holds to llama.cpp's), every code, scale and sum, on the crafted rows and the
    /// llama.cpp fixture's rows.
    #[test]
    fn simd128_quantizers_match_the_block_quantizers() {
        let mut x = crafted_rows(&mut Rng(0x0A17));
        x.extend(llama_cpp_rows());
        // 27 crafted rows of 256 values and the fixture's 6 of 512: 312 blocks of 32 and
        // 39 of 256.
        assert_eq!(x.len(), 39 * QK_K);
        assert_same_blocks(
            &x,
            (32, BlockQ8_0Act::ZERO),
            activation::quantize_q8_0,
            quantize_q8_0,
            |b| (b.d.to_bits(), b.qs),
        );
        assert_same_blocks(
            &x,
            (32, BlockQ8_1Act::ZERO),
            activation::quantize_q8_1,
            quantize_q8_1,
            |b| ([b.d, b.s].map(f16::to_bits), b.qs),
        );
        assert_same_blocks(
            &x,
            (QK_K, BlockQ8K::ZERO),
            activation::quantize_q8_k,
            quantize_q8_k,
            |b| (b.d.to_bits(), b.qs, b.bsums),
        );
    }

    /// The widening of F16 rows gives `half`'s f32 bit for bit, for every 16-bit pattern
    /// (zeros of both signs, subnormals, infinities, NaNs with their payloads), in every
    /// lane, through the vector loop and the scalar end alike.
    #[test]
    fn simd128_f16_widening_matches_half() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let bytes: Vec<u8> = all.iter().flat_map(|h| h.to_le_bytes()).collect();
        let want = |h: u16| f16::from_bits(h).to_f32().to_bits();
        // Every pattern, starting at each offset in a vector; then rows of every length up
        // to three vectors and a bit, which end in 0 to 7 scalar values, around infinity.
        for start in 0..8 {
            let mut out = vec![f32::NAN; all.len() - start];
            widen_f16(&bytes[2 * start..], &mut out);
            for (&h, got) in all[start..].iter().zip(&out) {
                assert_eq!(got.to_bits(), want(h), "{h:#06x}");
            }
        }
        for len in 0..28 {
            let mut out = vec![0.0; len];
            widen_f16(&bytes[2 * 0x7BF0..][..2 * len], &mut out);
            let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = all[0x7BF0..][..len].iter().map(|&h| want(h)).collect();
            assert_eq!(got, want, "length {len}");
        }
    }

    #[test]
    fn isa_is_simd128() {
        assert_eq!(isa(), Isa::Simd128);
    }
}
