//! What the 128-bit SIMD kernels share, NEON's (`aarch64.rs`) and SIMD128's (`wasm.rs`):
//! the quantized and f32 dot products, written once over the vector operations of
//! [`Vec128`].

use super::ActRow;
use crate::dtype::{DType, QK_K};
use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::as_blocks;
use crate::quant::blocks::*;
use crate::quant::int8_row;
use half::f16;

/// The activation blocks the 32-value formats pair with, as the 128-bit kernels read
/// them: 32 codes and their scale.
pub(super) trait Act32 {
    fn qs(&self) -> &[i8; 32];
    fn d(&self) -> f16;
    /// `d * sum(qs)` where the block type keeps it (Q8_1), for weights with an offset.
    fn s(&self) -> f16 {
        f16::ZERO
    }
}

/// Implements [`Act32`] for block types with `qs` and `d` fields (and `s`, if named).
macro_rules! act32 {
    ($ty:ty $(, $s:ident)?) => {
        impl Act32 for $ty {
            #[inline(always)]
            fn qs(&self) -> &[i8; 32] {
                &self.qs
            }
            #[inline(always)]
            fn d(&self) -> f16 {
                self.d
            }
            $(
                #[inline(always)]
                fn s(&self) -> f16 {
                    self.$s
                }
            )?
        }
    };
}

act32!(BlockQ8_0Act);
act32!(BlockQ8_1Act, s);

/// The dot product of two f32 rows (to the shorter one's length): four vectors of
/// products at a time, so that consecutive adds do not wait on each other.
///
/// # Safety
/// `V`'s instructions must exist on this CPU.
#[inline(always)]
pub(super) unsafe fn dot_f32<V: Vec128>(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (w[..n].chunks_exact(16), x[..n].chunks_exact(16));
    let tail: f32 = w
        .remainder()
        .iter()
        .zip(x.remainder())
        .map(|(a, b)| a * b)
        .sum();
    let mut acc = [V::zero_f32(); 4];
    for (wv, xv) in w.zip(x) {
        for (k, acc) in acc.iter_mut().enumerate() {
            *acc = V::mul_add_f32(*acc, V::load_f32(&wv[4 * k..]), V::load_f32(&xv[4 * k..]));
        }
    }
    let sum = V::add_f32(V::add_f32(acc[0], acc[1]), V::add_f32(acc[2], acc[3]));
    V::sum_f32(sum) + tail
}

/// The 128-bit vector operations the dot products are written over.
///
/// # Safety (every function)
/// The instructions the implementation uses must exist on this CPU.
pub(super) trait Vec128 {
    /// 16 bytes.
    type Bytes: Copy;
    /// 4 i32 lanes.
    type Ints: Copy;
    /// 4 f32 lanes.
    type Floats: Copy;
    /// The 16 bytes at the start of `s`.
    unsafe fn load(s: &[u8]) -> Self::Bytes;
    unsafe fn load_i8(s: &[i8]) -> Self::Bytes;
    /// Low and high nibbles of the 16 bytes at the start of `s`.
    unsafe fn nibbles(s: &[u8]) -> (Self::Bytes, Self::Bytes);
    /// `a` with each byte ANDed with `mask`.
    unsafe fn and(a: Self::Bytes, mask: u8) -> Self::Bytes;
    unsafe fn or(a: Self::Bytes, b: Self::Bytes) -> Self::Bytes;
    /// `a` minus `b` in each (signed) byte.
    unsafe fn sub(a: Self::Bytes, b: i8) -> Self::Bytes;
    /// Each byte shifted left by `N`.
    unsafe fn shl<const N: i32>(a: Self::Bytes) -> Self::Bytes;
    /// Each byte shifted right by `N` (logically).
    unsafe fn shr<const N: i32>(a: Self::Bytes) -> Self::Bytes;
    unsafe fn zero() -> Self::Ints;
    /// The products of 16 signed codes with the 16 activations at the start of `a`,
    /// summed into four lanes. Which products land in which lane differs between
    /// implementations, so callers only use the sum of the lanes (or scale all alike).
    unsafe fn dot16(q: Self::Bytes, a: &[i8]) -> Self::Ints;
    /// [`Vec128::dot16`] of 32 codes (as two vectors) with 32 activations.
    unsafe fn dot32(lo: Self::Bytes, hi: Self::Bytes, a: &[i8]) -> Self::Ints;
    /// `acc + x * s` in each lane.
    unsafe fn mul_add(acc: Self::Ints, x: Self::Ints, s: i32) -> Self::Ints;
    unsafe fn sum(x: Self::Ints) -> i32;
    unsafe fn zero_f32() -> Self::Floats;
    /// `acc + scale * isum` in each lane.
    unsafe fn add_scaled(acc: Self::Floats, isum: Self::Ints, scale: f32) -> Self::Floats;
    unsafe fn sum_f32(x: Self::Floats) -> f32;
    /// The 4 floats at the start of `s`.
    unsafe fn load_f32(s: &[f32]) -> Self::Floats;
    /// `acc + a * b` in each lane.
    unsafe fn mul_add_f32(acc: Self::Floats, a: Self::Floats, b: Self::Floats) -> Self::Floats;
    unsafe fn add_f32(a: Self::Floats, b: Self::Floats) -> Self::Floats;
    fn f32_of(h: f16) -> f32;
    /// The fifth bits of a Q5_0/Q5_1 block: byte j has 0x10 where bit j of `qh` (as a
    /// little-endian u32) is set, for values 0..16 and 16..32.
    unsafe fn fifth_bits(qh: [u8; 4]) -> (Self::Bytes, Self::Bytes);
    /// The 6-bit scales of a Q4_K/Q5_K block and `sum(min_j * activation sum of
    /// sub-block j)`.
    unsafe fn k4_scales_and_mins(scales: &[u8; 12], a: &BlockQ8K) -> ([u8; 8], i32);
}

/// Dot product of a quantized weight row with activations of its paired type, with `V`'s
/// instructions.
///
/// # Safety
/// `V`'s instructions must exist on this CPU.
#[inline(always)]
pub(super) unsafe fn quantized_dot<V: Vec128>(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    match (dtype, a) {
        (DType::Q4_0, ActRow::Q8_0(a)) => dot_q4_0::<V>(as_blocks(w), a),
        (DType::Q4_1, ActRow::Q8_1(a)) => dot_q4_1::<V>(as_blocks(w), a),
        (DType::Q5_0, ActRow::Q8_0(a)) => dot_q5_0::<V>(as_blocks(w), a),
        (DType::Q5_1, ActRow::Q8_1(a)) => dot_q5_1::<V>(as_blocks(w), a),
        (DType::Q8_0, ActRow::Q8_0(a)) => dot_q8_0::<V>(as_blocks(w), a),
        (DType::Q4K, ActRow::Q8K(a)) => dot_q4_k::<V>(as_blocks(w), a),
        (DType::Q5K, ActRow::Q8K(a)) => dot_q5_k::<V>(as_blocks(w), a),
        (DType::Q6K, ActRow::Q8K(a)) => dot_q6_k::<V>(as_blocks(w), a),
        (DType::Int8, ActRow::Q8_0(a)) => dot_int8::<V>(w, a),
        // Activations pair with their weights' type (see `Precision::activation_type`).
        _ => unreachable!("no dot product of {dtype} weights with these activations"),
    }
}

/// The 32 codes of a 5-bit block minus `offset`, as two vectors.
#[inline(always)]
unsafe fn codes_5bit<V: Vec128>(qs: &[u8; 16], qh: [u8; 4], offset: i8) -> (V::Bytes, V::Bytes) {
    let (lo, hi) = V::nibbles(qs);
    let (h0, h1) = V::fifth_bits(qh);
    (V::sub(V::or(lo, h0), offset), V::sub(V::or(hi, h1), offset))
}

/// The loop of the 32-value formats: each weight block's 32 signed codes (as two vectors
/// of 16) and scale, as `block(w)` gives them, dotted with its activation block's at the
/// product of the scales; `per_block(w, a)` runs on each pair of blocks too.
#[inline(always)]
unsafe fn dot_blocks<V: Vec128, W, A: Act32>(
    w: &[W],
    a: &[A],
    block: impl Fn(&W) -> ((V::Bytes, V::Bytes), f16),
    mut per_block: impl FnMut(&W, &A),
) -> f32 {
    let mut acc = V::zero_f32();
    for (w, a) in w.iter().zip(a) {
        let ((lo, hi), d) = block(w);
        let scale = V::f32_of(d) * V::f32_of(a.d());
        acc = V::add_scaled(acc, V::dot32(lo, hi, a.qs()), scale);
        per_block(w, a);
    }
    V::sum_f32(acc)
}

/// [`dot_blocks`] for the formats with an offset `m(w)` (value = q * d + m): plus each
/// block's `m` times its activations' `s`.
#[inline(always)]
unsafe fn dot_blocks_offset<V: Vec128, W>(
    w: &[W],
    a: &[BlockQ8_1Act],
    block: impl Fn(&W) -> ((V::Bytes, V::Bytes), f16),
    m: impl Fn(&W) -> f16,
) -> f32 {
    let mut offsets = 0f32;
    let dot = dot_blocks::<V, _, _>(w, a, block, |w, a| {
        offsets += V::f32_of(m(w)) * V::f32_of(a.s())
    });
    dot + offsets
}

#[inline(always)]
unsafe fn dot_q4_0<V: Vec128>(w: &[BlockQ4_0], a: &[BlockQ8_0Act]) -> f32 {
    let block = |w: &BlockQ4_0| {
        let (lo, hi) = V::nibbles(&w.qs);
        ((V::sub(lo, 8), V::sub(hi, 8)), w.d)
    };
    dot_blocks::<V, _, _>(w, a, block, |_, _| {})
}

#[inline(always)]
unsafe fn dot_q4_1<V: Vec128>(w: &[BlockQ4_1], a: &[BlockQ8_1Act]) -> f32 {
    dot_blocks_offset::<V, _>(w, a, |w| (V::nibbles(&w.qs), w.d), |w| w.m)
}

#[inline(always)]
unsafe fn dot_q5_0<V: Vec128>(w: &[BlockQ5_0], a: &[BlockQ8_0Act]) -> f32 {
    let block = |w: &BlockQ5_0| (codes_5bit::<V>(&w.qs, w.qh, 16), w.d);
    dot_blocks::<V, _, _>(w, a, block, |_, _| {})
}

#[inline(always)]
unsafe fn dot_q5_1<V: Vec128>(w: &[BlockQ5_1], a: &[BlockQ8_1Act]) -> f32 {
    let block = |w: &BlockQ5_1| (codes_5bit::<V>(&w.qs, w.qh, 0), w.d);
    dot_blocks_offset::<V, _>(w, a, block, |w| w.m)
}

#[inline(always)]
unsafe fn dot_q8_0<V: Vec128>(w: &[BlockQ8_0], a: &[BlockQ8_0Act]) -> f32 {
    let codes = |w: &BlockQ8_0| (V::load_i8(&w.qs), V::load_i8(&w.qs[16..]));
    dot_blocks::<V, _, _>(w, a, |w| (codes(w), w.d), |_, _| {})
}

/// An INT8 row: blocks of 32 codes at their activation block's scale, then the row scale.
#[inline(always)]
unsafe fn dot_int8<V: Vec128>(w: &[u8], a: &[BlockQ8_0Act]) -> f32 {
    let (scale, codes) = int8_row(w);
    let mut acc = V::zero_f32();
    for (q, a) in codes.chunks_exact(32).zip(a) {
        let isum = V::dot32(V::load_i8(q), V::load_i8(&q[16..]), &a.qs);
        acc = V::add_scaled(acc, isum, V::f32_of(a.d));
    }
    scale * V::sum_f32(acc)
}

/// The loop Q4_K and Q5_K share: per block (its `d`, `dmin`, scales and 4-bit codes as
/// `parts` gives them), the 6-bit scales and mins, then each pair of sub-blocks from the
/// low (even) and high (odd) nibbles of 32 bytes of codes. `fifth_bits(w)` gives what
/// completes each pair's codes in turn, `[lo0, lo1, hi0, hi1]`: Q5_K's fifth bits.
#[inline(always)]
unsafe fn dot_k4<V: Vec128, W, F: FnMut([V::Bytes; 4]) -> [V::Bytes; 4]>(
    w: &[W],
    a: &[BlockQ8K],
    parts: impl Fn(&W) -> (f16, f16, &[u8; 12], &[u8; QK_K / 2]),
    fifth_bits: impl Fn(&W) -> F,
) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let (d, dmin, scales, qs) = parts(w);
        let (sc, mins) = V::k4_scales_and_mins(scales, a);
        let mut complete = fifth_bits(w);
        let mut acc = V::zero();
        // Each 32 bytes hold sub-block 2 * pair in low nibbles, 2 * pair + 1 in high.
        for (pair, (q, act)) in qs.chunks_exact(32).zip(a.qs.chunks_exact(64)).enumerate() {
            let (lo0, hi0) = V::nibbles(q);
            let (lo1, hi1) = V::nibbles(&q[16..]);
            let [lo0, lo1, hi0, hi1] = complete([lo0, lo1, hi0, hi1]);
            let even = V::dot32(lo0, lo1, act);
            let odd = V::dot32(hi0, hi1, &act[32..]);
            acc = V::mul_add(acc, even, sc[2 * pair] as i32);
            acc = V::mul_add(acc, odd, sc[2 * pair + 1] as i32);
        }
        let scaled = V::sum(acc);
        sum += a.d * V::f32_of(d) * scaled as f32 - a.d * V::f32_of(dmin) * mins as f32;
    }
    sum
}

#[inline(always)]
unsafe fn dot_q4_k<V: Vec128>(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    dot_k4::<V, _, _>(w, a, |w| (w.d, w.dmin, &w.scales, &w.qs), |_| |codes| codes)
}

#[inline(always)]
unsafe fn dot_q5_k<V: Vec128>(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    let code = |nib: V::Bytes, high: V::Bytes| V::or(nib, V::and(high, 0x10));
    // Bit 2 * pair of qh[l] is the fifth bit of value l of the even sub-block, the next
    // bit that of the odd one; shift both right by 2 per pair.
    let fifth_bits = |w: &BlockQ5K| {
        let (mut qh0, mut qh1) = (V::load(&w.qh), V::load(&w.qh[16..]));
        move |[lo0, lo1, hi0, hi1]: [V::Bytes; 4]| {
            let codes = [
                code(lo0, V::shl::<4>(qh0)),
                code(lo1, V::shl::<4>(qh1)),
                code(hi0, V::shl::<3>(qh0)),
                code(hi1, V::shl::<3>(qh1)),
            ];
            qh0 = V::shr::<2>(qh0);
            qh1 = V::shr::<2>(qh1);
            codes
        }
    };
    dot_k4::<V, _, _>(w, a, |w| (w.d, w.dmin, &w.scales, &w.qs), fifth_bits)
}

#[inline(always)]
unsafe fn dot_q6_k<V: Vec128>(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut acc = V::zero();
        // Each half of 128 values: value l + 32k (l < 32) has its low 4 bits in ql[l]
        // (k = 0, 2: low, high nibble) or ql[l + 32] (k = 1, 3), and its top 2 bits at
        // bits 2k, 2k + 1 of qh[l]. Scale g covers values 16g..16g + 16.
        for half in 0..2 {
            let ql = &w.ql[64 * half..];
            let qh = &w.qh[32 * half..];
            let act = &a.qs[128 * half..];
            let qh = [V::load(qh), V::load(&qh[16..])];
            for (g, &scale) in w.scales[8 * half..8 * half + 8].iter().enumerate() {
                let (k, second) = (g / 2, g % 2);
                let ql = V::load(&ql[32 * (k % 2) + 16 * second..]);
                let low = if k < 2 {
                    V::and(ql, 0x0F)
                } else {
                    V::shr::<4>(ql)
                };
                let h = qh[second];
                let high = match k {
                    0 => V::shl::<4>(h),
                    1 => V::shl::<2>(h),
                    2 => h,
                    _ => V::shr::<2>(h),
                };
                let q = V::sub(V::or(low, V::and(high, 0x30)), 32);
                acc = V::mul_add(acc, V::dot16(q, &act[16 * g..]), scale as i32);
            }
        }
        sum += V::f32_of(w.d) * a.d * V::sum(acc) as f32;
    }
    sum
}
