//! What the 128-bit SIMD kernels share, NEON's (`aarch64.rs`) and SIMD128's (`wasm.rs`):
//! the K-quant dot products, written once over [`Vec128`], and smaller helpers.

use crate::dtype::QK_K;
use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::blocks::{BlockQ4K, BlockQ5K, BlockQ6K};
use half::f16;

/// The activation blocks the 32-value formats pair with, as the 128-bit kernels read
/// them: 32 codes and their scale.
pub(super) trait Act32 {
    fn qs(&self) -> &[i8; 32];
    fn d(&self) -> f16;
}

macro_rules! act32 {
    ($($ty:ty),*) => {$(
        impl Act32 for $ty {
            #[inline(always)]
            fn qs(&self) -> &[i8; 32] {
                &self.qs
            }
            #[inline(always)]
            fn d(&self) -> f16 {
                self.d
            }
        }
    )*};
}

act32!(BlockQ8_0Act, BlockQ8_1Act);

/// `w` and `x` (cut to the shorter one's length) as pairs of 16-float chunks, and
/// the dot product of the floats after the last whole chunk: what the 128-bit
/// kernels' `dot_f32` loops over, four vectors at a time.
#[inline(always)]
pub(super) fn chunks16<'a>(
    w: &'a [f32],
    x: &'a [f32],
) -> (impl Iterator<Item = (&'a [f32], &'a [f32])>, f32) {
    let n = w.len().min(x.len());
    let (w, x) = (w[..n].chunks_exact(16), x[..n].chunks_exact(16));
    let tail = w
        .remainder()
        .iter()
        .zip(x.remainder())
        .map(|(a, b)| a * b)
        .sum();
    (w.zip(x), tail)
}

/// The 128-bit vector operations the K-quant loops are written over.
///
/// # Safety (every function)
/// The instructions the implementation uses must exist on this CPU.
pub(super) trait Vec128 {
    /// 16 bytes.
    type Bytes: Copy;
    /// 4 i32 lanes.
    type Ints: Copy;
    unsafe fn load(s: &[u8]) -> Self::Bytes;
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
    fn f32_of(h: f16) -> f32;
    /// The 6-bit scales of a Q4_K/Q5_K block and `sum(min_j * activation sum of
    /// sub-block j)`.
    unsafe fn k4_scales_and_mins(scales: &[u8; 12], a: &BlockQ8K) -> ([u8; 8], i32);
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

/// # Safety
/// `V`'s instructions must exist on this CPU.
#[inline(always)]
pub(super) unsafe fn dot_q4_k<V: Vec128>(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    dot_k4::<V, _, _>(w, a, |w| (w.d, w.dmin, &w.scales, &w.qs), |_| |codes| codes)
}

/// # Safety
/// `V`'s instructions must exist on this CPU.
#[inline(always)]
pub(super) unsafe fn dot_q5_k<V: Vec128>(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
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

/// # Safety
/// `V`'s instructions must exist on this CPU.
#[inline(always)]
pub(super) unsafe fn dot_q6_k<V: Vec128>(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
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
