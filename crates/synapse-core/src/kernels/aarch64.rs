//! aarch64 kernels with NEON, chosen at run time by `isa()`. The quantized dot products
//! (written once for NEON and SIMD128 in `shared128.rs`) run over [`Neon`], generic in
//! [`I8Dot`], the signed byte dot product, and are compiled twice: with the `sdot`
//! instruction where the CPU has the dotprod extension, and with widening multiplies
//! (baseline NEON) where it does not.
//!
//! `sdot` is emitted with `asm!`: its intrinsic `vdotq_s32` is still unstable
//! (`stdarch_neon_dotprod`) in the toolchains this crate supports.
//!
//! The helpers are `unsafe fn` because NEON intrinsics are unsafe to call outside a
//! `#[target_feature]` function; apart from `I8Dot::dot` they need nothing beyond NEON,
//! which every aarch64 CPU has.

use super::shared128::{self, quantized_dot, Vec128};
use super::ActRow;
use crate::dtype::DType;
use crate::quant::activation::BlockQ8K;
use crate::quant::blocks::*;
use crate::quant::format::Format;
use half::f16;
use std::arch::aarch64::*;
use std::arch::asm;
use std::marker::PhantomData;

pub fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Dot product with the `sdot` instruction.
///
/// # Safety
/// The CPU must have the dotprod extension.
#[target_feature(enable = "dotprod")]
pub unsafe fn quantized_dot_dotprod(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    quantized_dot::<Neon<Sdot>>(dtype, w, a)
}

/// Dot product with baseline NEON only.
pub fn quantized_dot_neon(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    // SAFETY: NEON is part of the aarch64 baseline and `Widening` needs nothing more.
    unsafe { quantized_dot::<Neon<Widening>>(dtype, w, a) }
}

/// Sixteen signed byte products summed into four i32 lanes and added to `acc`. Which
/// products land in which lane differs between implementations, so callers only ever
/// use the sum of all lanes (or scale all lanes alike).
trait I8Dot {
    /// # Safety
    /// The instructions the implementation uses must exist on this CPU.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// The dotprod extension's `sdot`: lane i gets the products of bytes 4i..4i + 4.
struct Sdot;

impl I8Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        sdot(acc, a, b)
    }
}

/// A separate function so that the assembler sees `sdot` with dotprod enabled; it is
/// inlined into `quantized_dot_dotprod`, which has the same feature.
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: sdot only reads and writes these registers; the caller guarantees dotprod.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Baseline NEON: i16 products (|a * b| <= 128 * 128 fits), added pairwise into i32.
struct Widening;

impl I8Dot for Widening {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let low = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        vpadalq_s16(vpadalq_s16(acc, low), vmull_high_s8(a, b))
    }
}

/// Loads 16 bytes from the start of `s` (bounds-checked by the slice index).
#[inline(always)]
unsafe fn load_u8(s: &[u8]) -> uint8x16_t {
    vld1q_u8(s[..16].as_ptr())
}

#[inline(always)]
unsafe fn load_i8(s: &[i8]) -> int8x16_t {
    vld1q_s8(s[..16].as_ptr())
}

/// The dot product of 32 codes (as two vectors of 16) with 32 activations, in four lanes.
#[inline(always)]
unsafe fn dot32<D: I8Dot>(lo: int8x16_t, hi: int8x16_t, a: &[i8]) -> int32x4_t {
    D::dot(
        D::dot(vdupq_n_s32(0), lo, load_i8(a)),
        hi,
        load_i8(&a[16..]),
    )
}

/// Low and high nibbles of 16 bytes (in Q4_0/Q4_1 blocks, values 0..16 and 16..32), as
/// signed bytes since they are below 16.
#[inline(always)]
unsafe fn nibbles(qs: &[u8]) -> (int8x16_t, int8x16_t) {
    let v = load_u8(qs);
    let lo = vandq_u8(v, vdupq_n_u8(0x0F));
    (
        vreinterpretq_s8_u8(lo),
        vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)),
    )
}

/// The fifth bits of a Q5_0/Q5_1 block: byte j has 0x10 where bit j of `qh` (as a
/// little-endian u32) is set, for values 0..16 and 16..32.
#[inline(always)]
unsafe fn fifth_bits(qh: [u8; 4]) -> (int8x16_t, int8x16_t) {
    const LANE_BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let lane_bit = vld1q_u8(LANE_BIT.as_ptr());
    let expand = |b0: u8, b1: u8| {
        let set = vtstq_u8(vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1)), lane_bit);
        vreinterpretq_s8_u8(vandq_u8(set, vdupq_n_u8(0x10)))
    };
    (expand(qh[0], qh[1]), expand(qh[2], qh[3]))
}

/// Converts an f16 scale with `fcvt`. half's `to_f32` checks for the fp16 extension at
/// run time and calls out of line on every use; half-to-single `fcvt` is baseline.
#[inline(always)]
fn f32_of(h: f16) -> f32 {
    let out: f32;
    // SAFETY: fcvt only reads and writes these registers and is in every aarch64 CPU.
    unsafe {
        asm!(
            "fcvt {out:s}, {h:h}",
            h = in(vreg) h.to_bits(),
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// The kernels' vector operations (see [`Vec128`]) with `D`'s byte dot product.
struct Neon<D>(PhantomData<D>);

impl<D: I8Dot> Vec128 for Neon<D> {
    type Bytes = uint8x16_t;
    type Ints = int32x4_t;
    type Floats = float32x4_t;
    #[inline(always)]
    unsafe fn load(s: &[u8]) -> uint8x16_t {
        load_u8(s)
    }
    #[inline(always)]
    unsafe fn load_i8(s: &[i8]) -> uint8x16_t {
        vreinterpretq_u8_s8(load_i8(s))
    }
    #[inline(always)]
    unsafe fn nibbles(s: &[u8]) -> (uint8x16_t, uint8x16_t) {
        let (lo, hi) = nibbles(s);
        (vreinterpretq_u8_s8(lo), vreinterpretq_u8_s8(hi))
    }
    #[inline(always)]
    unsafe fn and(a: uint8x16_t, mask: u8) -> uint8x16_t {
        vandq_u8(a, vdupq_n_u8(mask))
    }
    #[inline(always)]
    unsafe fn or(a: uint8x16_t, b: uint8x16_t) -> uint8x16_t {
        vorrq_u8(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: uint8x16_t, b: i8) -> uint8x16_t {
        vreinterpretq_u8_s8(vsubq_s8(vreinterpretq_s8_u8(a), vdupq_n_s8(b)))
    }
    #[inline(always)]
    unsafe fn shl<const N: i32>(a: uint8x16_t) -> uint8x16_t {
        vshlq_n_u8::<N>(a)
    }
    #[inline(always)]
    unsafe fn shr<const N: i32>(a: uint8x16_t) -> uint8x16_t {
        vshrq_n_u8::<N>(a)
    }
    #[inline(always)]
    unsafe fn zero() -> int32x4_t {
        vdupq_n_s32(0)
    }
    #[inline(always)]
    unsafe fn dot16(q: uint8x16_t, a: &[i8]) -> int32x4_t {
        D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(q), load_i8(a))
    }
    #[inline(always)]
    unsafe fn dot32(lo: uint8x16_t, hi: uint8x16_t, a: &[i8]) -> int32x4_t {
        dot32::<D>(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), a)
    }
    #[inline(always)]
    unsafe fn mul_add(acc: int32x4_t, x: int32x4_t, s: i32) -> int32x4_t {
        vmlaq_n_s32(acc, x, s)
    }
    #[inline(always)]
    unsafe fn sum(x: int32x4_t) -> i32 {
        vaddvq_s32(x)
    }
    #[inline(always)]
    unsafe fn zero_f32() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn add_scaled(acc: float32x4_t, isum: int32x4_t, scale: f32) -> float32x4_t {
        vfmaq_n_f32(acc, vcvtq_f32_s32(isum), scale)
    }
    #[inline(always)]
    unsafe fn sum_f32(x: float32x4_t) -> f32 {
        vaddvq_f32(x)
    }
    #[inline(always)]
    unsafe fn load_f32(s: &[f32]) -> float32x4_t {
        vld1q_f32(s[..4].as_ptr())
    }
    #[inline(always)]
    unsafe fn mul_add_f32(acc: float32x4_t, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vfmaq_f32(acc, a, b)
    }
    #[inline(always)]
    unsafe fn add_f32(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vaddq_f32(a, b)
    }
    #[inline(always)]
    fn f32_of(h: f16) -> f32 {
        f32_of(h)
    }
    #[inline(always)]
    unsafe fn fifth_bits(qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
        let (lo, hi) = fifth_bits(qh);
        (vreinterpretq_u8_s8(lo), vreinterpretq_u8_s8(hi))
    }
    #[inline(always)]
    unsafe fn k4_scales_and_mins(scales: &[u8; 12], a: &BlockQ8K) -> ([u8; 8], i32) {
        let mut sc = [0u8; 8];
        let mut mins = [0i16; 8];
        for j in 0..8 {
            let (s, m) = scale_min_k4(j, scales);
            sc[j] = s;
            mins[j] = m as i16;
        }
        // Pairwise adds turn the 16 sums of 16 activations into the 8 sums of 32
        // (each at most 32 * 127, so i16 holds them).
        let sub_sums = vpaddq_s16(
            vld1q_s16(a.bsums.as_ptr()),
            vld1q_s16(a.bsums[8..].as_ptr()),
        );
        let mins = vld1q_s16(mins.as_ptr());
        let prod = vmull_s16(vget_low_s16(sub_sums), vget_low_s16(mins));
        (sc, vaddvq_s32(vmlal_high_s16(prod, sub_sums, mins)))
    }
}

// ---------------------------------------------------------------------------------------
// K-quants in panels (with sdot)
// ---------------------------------------------------------------------------------------

/// A K-quant format in the panel layout (see [`crate::quant::k_panels`]), read as two
/// halves of 4 rows: each 32-byte vector of a chunk is two NEON vectors, and `sdot` sums
/// each row's 4 code bytes times the 4 activations every row shares into that row's lane.
trait Panel {
    /// Bytes of one row's super-block.
    const BLOCK: usize;
    /// Values per sub-block (one scale per row).
    const SUB_LEN: usize;
    /// # Safety (all functions)
    /// `c` is a whole chunk; `half` is 0 or 1 and `j`, `v` are in range.
    ///
    /// What a half's sub-blocks share: Q4_K's and Q5_K's four scale groups.
    #[inline(always)]
    unsafe fn scales(c: &[u8], half: usize) -> [uint8x16_t; 4] {
        let top = load_u8(&c[96 + 16 * half..]);
        std::array::from_fn(|g| {
            let low = panel_nibbles(c, 32 + 32 * (g / 2) + 16 * half, g);
            vorrq_u8(low, move_bits(top, 2 * g, 4, 0x30))
        })
    }
    /// Sub-block j's scale per row, and the activation sum its mins (or code offset)
    /// multiply: per row, the i32 `mins * sum` to subtract at scale `dmin` (Q4_K, Q5_K)
    /// or `32 * scale * sum` at scale `d` (Q6_K).
    #[inline(always)]
    unsafe fn sub_scales(
        _c: &[u8],
        groups: &[uint8x16_t; 4],
        _half: usize,
        j: usize,
        a: &BlockQ8K,
    ) -> (int32x4_t, int32x4_t) {
        let sum = a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32;
        let mins = k4_entries(groups[2 + j / 4], j);
        (k4_entries(groups[j / 4], j), vmulq_n_s32(mins, sum))
    }
    /// Codes of activation values `SUB_LEN * j + 4v .. + 4` for the half's 4 rows.
    unsafe fn codes(c: &[u8], half: usize, j: usize, v: usize) -> int8x16_t;
    /// The half's rows' `d`, and the scale of the subtracted sums: `dmin` (Q6_K: `d`).
    fn d(c: &[u8], half: usize) -> (float32x4_t, float32x4_t) {
        (f32x4_of(c, 8 * half), f32x4_of(c, 16 + 8 * half))
    }
}

/// The low (v even) or high (v odd) nibbles of the 16 bytes at `p[at..]`.
#[inline(always)]
unsafe fn panel_nibbles(c: &[u8], at: usize, v: usize) -> uint8x16_t {
    let bytes = load_u8(&c[at..]);
    if v.is_multiple_of(2) {
        vandq_u8(bytes, vdupq_n_u8(0x0F))
    } else {
        vshrq_n_u8::<4>(bytes)
    }
}

/// `x` with each byte's bit `from` moved to bit `to`, under `mask`.
#[inline(always)]
unsafe fn move_bits(x: uint8x16_t, from: usize, to: usize, mask: u8) -> uint8x16_t {
    let shifted = vshlq_u8(x, vdupq_n_s8(to as i8 - from as i8));
    vandq_u8(shifted, vdupq_n_u8(mask))
}

/// f16 values `c[at..]`, 4 of them, as f32.
fn f32x4_of(c: &[u8], at: usize) -> float32x4_t {
    let v: [f32; 4] =
        std::array::from_fn(|i| f32_of(f16::from_le_bytes([c[at + 2 * i], c[at + 2 * i + 1]])));
    // SAFETY: NEON is baseline; `v` holds 4 f32.
    unsafe { vld1q_f32(v.as_ptr()) }
}

/// Entry `4r + j % 4` of a Q4_K/Q5_K scale group for each of 4 rows, as i32 lanes.
#[inline(always)]
unsafe fn k4_entries(group: uint8x16_t, j: usize) -> int32x4_t {
    let e = (j % 4) as u8;
    let pick: [u8; 16] = std::array::from_fn(|i| if i % 4 == 0 { i as u8 + e } else { 0xFF });
    vreinterpretq_s32_u8(vqtbl1q_u8(group, vld1q_u8(pick.as_ptr())))
}

impl Panel for PanelQ4K {
    const BLOCK: usize = BlockQ4K::BLOCK_BYTES;
    const SUB_LEN: usize = 32;
    #[inline(always)]
    unsafe fn codes(c: &[u8], half: usize, j: usize, v: usize) -> int8x16_t {
        vreinterpretq_s8_u8(panel_nibbles(c, 128 + 32 * (4 * j + v / 2) + 16 * half, v))
    }
}

impl Panel for PanelQ5K {
    const BLOCK: usize = BlockQ5K::BLOCK_BYTES;
    const SUB_LEN: usize = 32;
    #[inline(always)]
    unsafe fn codes(c: &[u8], half: usize, j: usize, v: usize) -> int8x16_t {
        let low = panel_nibbles(c, 384 + 32 * (4 * j + v / 2) + 16 * half, v);
        let fifth = move_bits(load_u8(&c[128 + 32 * j + 16 * half..]), v, 4, 0x10);
        vreinterpretq_s8_u8(vorrq_u8(low, fifth))
    }
}

impl Panel for PanelQ6K {
    const BLOCK: usize = BlockQ6K::BLOCK_BYTES;
    const SUB_LEN: usize = 16;
    /// Q6_K's scales are whole bytes, read per sub-block.
    #[inline(always)]
    unsafe fn scales(_: &[u8], _: usize) -> [uint8x16_t; 4] {
        [vdupq_n_u8(0); 4]
    }
    #[inline(always)]
    unsafe fn sub_scales(
        c: &[u8],
        _: &[uint8x16_t; 4],
        half: usize,
        j: usize,
        a: &BlockQ8K,
    ) -> (int32x4_t, int32x4_t) {
        // The half's 4 signed scales, widened to i32.
        let at = 16 + 8 * j + 4 * half;
        let bytes = [c[at], c[at + 1], c[at + 2], c[at + 3], 0, 0, 0, 0];
        let scales = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_u8(vld1_u8(
            bytes.as_ptr(),
        )))));
        (scales, vmulq_n_s32(scales, 32 * a.bsums[j] as i32))
    }
    #[inline(always)]
    unsafe fn codes(c: &[u8], half: usize, j: usize, v: usize) -> int8x16_t {
        let low = panel_nibbles(c, 144 + 32 * (2 * j + v / 2) + 16 * half, v);
        let top = move_bits(load_u8(&c[1168 + 32 * j + 16 * half..]), 2 * v, 4, 0x30);
        vreinterpretq_s8_u8(vorrq_u8(low, top))
    }
    fn d(c: &[u8], half: usize) -> (float32x4_t, float32x4_t) {
        let d = f32x4_of(c, 8 * half);
        (d, d)
    }
}

struct PanelQ4K;
struct PanelQ5K;
struct PanelQ6K;

/// Rows `rows` (whole panels) of the matmul of K-quant weights `w`, in the panel layout,
/// with `acts` (`n_tokens` tokens of Q8_K blocks): `out[t * n + r]`.
///
/// # Safety
/// The CPU has the dotprod extension; no other thread writes these rows of `out`.
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn matmul_panels(
    w: &crate::tensor::WeightTensor,
    acts: &[BlockQ8K],
    n_tokens: usize,
    rows: std::ops::Range<usize>,
    out: super::SharedOut,
    n: usize,
) {
    // SAFETY: the caller guarantees dotprod and that no other thread writes these rows of
    // `out`, all that `panels` needs in every arm.
    unsafe {
        match w.dtype {
            DType::Q4K => panels::<PanelQ4K>(w, acts, n_tokens, rows, out, n),
            DType::Q5K => panels::<PanelQ5K>(w, acts, n_tokens, rows, out, n),
            DType::Q6K => panels::<PanelQ6K>(w, acts, n_tokens, rows, out, n),
            other => unreachable!("{other} has no panel layout"),
        }
    }
}

/// [`matmul_panels`] for format `F`: each panel's chunks meet every token while they are
/// in cache.
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn panels<F: Panel>(
    w: &crate::tensor::WeightTensor,
    acts: &[BlockQ8K],
    n_tokens: usize,
    rows: std::ops::Range<usize>,
    out: super::SharedOut,
    n: usize,
) {
    use crate::quant::k_panels::ROWS;
    let blocks = w.cols / crate::dtype::QK_K;
    let chunk_bytes = ROWS * F::BLOCK;
    let bytes = w.bytes();
    for p in rows.start / ROWS..rows.end / ROWS {
        let panel = &bytes[p * blocks * chunk_bytes..(p + 1) * blocks * chunk_bytes];
        for t in 0..n_tokens {
            let acts = &acts[t * blocks..(t + 1) * blocks];
            for half in 0..2 {
                let mut acc = vdupq_n_f32(0.0);
                for (c, a) in panel.chunks_exact(chunk_bytes).zip(acts) {
                    // SAFETY: `c` is a whole chunk; the CPU has dotprod.
                    let (isum, msum) = unsafe { panel_sums::<F>(c, half, a) };
                    let (d, dmin) = F::d(c, half);
                    acc = vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_n_f32(d, a.d));
                    acc = vfmsq_f32(acc, vcvtq_f32_s32(msum), vmulq_n_f32(dmin, a.d));
                }
                let mut lanes = [0f32; 4];
                vst1q_f32(lanes.as_mut_ptr(), acc);
                for (i, &v) in lanes.iter().enumerate() {
                    // SAFETY: as the caller guarantees.
                    unsafe { out.write(t * n + ROWS * p + 4 * half + i, v) };
                }
            }
        }
    }
}

/// One chunk's integer sums for a half's 4 rows and one token: the codes times scales,
/// and what to subtract (see [`Panel::sub_scales`]).
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn panel_sums<F: Panel>(c: &[u8], half: usize, a: &BlockQ8K) -> (int32x4_t, int32x4_t) {
    // SAFETY: the caller's promise: `c` is a whole chunk, `half` is 0 or 1 and the CPU has
    // dotprod (for `sdot`); the loops keep `j` and `v` in range, and each `four` is read
    // from a 4-byte slice of `qs`.
    unsafe {
        let scales = F::scales(c, half);
        let (mut isum, mut msum) = (vdupq_n_s32(0), vdupq_n_s32(0));
        for j in 0..crate::dtype::QK_K / F::SUB_LEN {
            let (scale, mins) = F::sub_scales(c, &scales, half, j, a);
            let mut dot = vdupq_n_s32(0);
            for v in 0..F::SUB_LEN / 4 {
                let at = F::SUB_LEN * j + 4 * v;
                let four = a.qs[at..at + 4].as_ptr().cast::<i32>().read_unaligned();
                let four = vreinterpretq_s8_s32(vdupq_n_s32(four));
                dot = sdot(dot, F::codes(c, half, j, v), four);
            }
            isum = vmlaq_s32(isum, dot, scale);
            msum = vaddq_s32(msum, mins);
        }
        (isum, msum)
    }
}

pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    // SAFETY: NEON is part of the aarch64 baseline (f32 needs no byte dot product, so
    // either `I8Dot` does).
    unsafe { shared128::dot_f32::<Neon<Widening>>(w, x) }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{isas, magnitude, Acts, Coverage, Rng};
    use super::super::{isa, quantized_dot, quantized_dot_portable, Isa};
    use super::*;
    use crate::dtype::QK_K;
    use crate::quant::Block;

    /// Code bytes: all-equal extremes for the first rows (to hit the largest products),
    /// random after that.
    fn codes<const N: usize>(rng: &mut Rng, row: usize) -> [u8; N] {
        match row {
            0 => [0x00; N],
            1 => [0xFF; N],
            2 => [0x80; N],
            3 => [0x7F; N],
            _ => std::array::from_fn(|_| rng.next() as u8),
        }
    }

    /// A block scale or minimum of either sign (see [`Rng::scale`]).
    fn scale(rng: &mut Rng) -> f16 {
        f16::from_f32(rng.scale())
    }

    /// The bytes of padding-free `#[repr(C)]` blocks, as a GGUF row holds them.
    fn row_bytes<B: Block>(blocks: &[B]) -> &[u8] {
        // SAFETY: the weight blocks are plain bytes and f16s with no padding (their
        // sizes are asserted in blocks.rs) and the length covers exactly the slice.
        unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), std::mem::size_of_val(blocks)) }
    }

    /// A random weight row of `n_blocks` blocks of `dtype`.
    fn weight_row(dtype: DType, n_blocks: usize, row: usize, rng: &mut Rng) -> Vec<u8> {
        // An INT8 row starts with its f32 scale.
        let mut out = match dtype {
            DType::Int8 => rng.scale().to_le_bytes().to_vec(),
            _ => Vec::new(),
        };
        for _ in 0..n_blocks {
            let bytes = match dtype {
                DType::Q4_0 => row_bytes(&[BlockQ4_0 {
                    d: scale(rng),
                    qs: codes(rng, row),
                }])
                .to_vec(),
                DType::Q4_1 => row_bytes(&[BlockQ4_1 {
                    d: scale(rng),
                    m: f16::from_f32(rng.range(-0.5, 0.5)),
                    qs: codes(rng, row),
                }])
                .to_vec(),
                DType::Q5_0 => row_bytes(&[BlockQ5_0 {
                    d: scale(rng),
                    qh: codes(rng, row),
                    qs: codes(rng, row),
                }])
                .to_vec(),
                DType::Q5_1 => row_bytes(&[BlockQ5_1 {
                    d: scale(rng),
                    m: f16::from_f32(rng.range(-0.5, 0.5)),
                    qh: codes(rng, row),
                    qs: codes(rng, row),
                }])
                .to_vec(),
                DType::Q8_0 => row_bytes(&[BlockQ8_0 {
                    d: scale(rng),
                    qs: codes::<32>(rng, row).map(|b| b as i8),
                }])
                .to_vec(),
                DType::Q4K => row_bytes(&[BlockQ4K {
                    d: scale(rng),
                    dmin: scale(rng),
                    scales: codes(rng, row),
                    qs: codes(rng, row),
                }])
                .to_vec(),
                DType::Q5K => row_bytes(&[BlockQ5K {
                    d: scale(rng),
                    dmin: scale(rng),
                    scales: codes(rng, row),
                    qh: codes(rng, row),
                    qs: codes(rng, row),
                }])
                .to_vec(),
                DType::Q6K => row_bytes(&[BlockQ6K {
                    ql: codes(rng, row),
                    qh: codes(rng, row),
                    scales: codes::<16>(rng, row).map(|b| b as i8),
                    d: scale(rng),
                }])
                .to_vec(),
                DType::Int8 => codes::<32>(rng, row).to_vec(),
                _ => unreachable!("{dtype} is not block-quantized"),
            };
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Each format with its largest relative error against the scalar oracle, as a
    /// fraction of the products' magnitude (see [`magnitude`]). The integer sums are exact on both sides; only the
    /// order of the float operations differs.
    const CASES: [(DType, f32); 9] = [
        (DType::Q4_0, 1e-6),
        (DType::Q4_1, 1e-6),
        (DType::Q5_0, 1e-6),
        (DType::Q5_1, 1e-6),
        (DType::Q8_0, 1e-6),
        (DType::Q4K, 1e-6),
        (DType::Q5K, 1e-6),
        (DType::Q6K, 1e-6),
        (DType::Int8, 1e-6),
    ];

    fn check_against_scalar(isa: Isa) {
        let mut rng = Rng(0x5EED);
        for (dtype, tol) in CASES {
            let n_blocks = if dtype.block_len() == QK_K { 3 } else { 12 };
            let k = n_blocks * dtype.block_len();
            let mut worst = 0f32;
            for row in 0..24 {
                let w = weight_row(dtype, n_blocks, row, &mut rng);
                let x: Vec<f32> = match row {
                    // Constant activations quantize to +-127 codes everywhere.
                    0..4 => vec![if row % 2 == 0 { 1.0 } else { -1.0 }; k],
                    _ => (0..k).map(|_| rng.range(-2.0, 2.0)).collect(),
                };
                let acts = Acts::quantize(dtype, &x);
                let got = quantized_dot(isa, dtype, &w, acts.row());
                let want = quantized_dot_portable(dtype, &w, acts.row());
                let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let magnitude = magnitude(dtype, &w, &x) as f32;
                let err = (got - want).abs() / magnitude.max(f32::MIN_POSITIVE);
                assert!(
                    err <= tol,
                    "{isa:?} {dtype} row {row}: got {got}, scalar {want}, relative error {err:e}"
                );
                worst = worst.max(err);
            }
            eprintln!("{isa:?} {dtype}: worst relative error {worst:e} (bound {tol:e})");
        }
    }

    /// Baseline NEON everywhere, and `sdot` where the CPU has dotprod.
    #[test]
    fn neon_kernels_match_scalar() {
        let neon: Vec<Isa> = isas().into_iter().filter(|&i| i != Isa::Scalar).collect();
        let mut covered = Coverage::new("neon_kernels_match_scalar", neon.clone());
        for isa in neon {
            covered.ran(isa);
            check_against_scalar(isa);
        }
        covered.finish();
    }

    #[test]
    fn isa_follows_cpu_features() {
        let want = if std::env::var("SYNAPSE_KERNEL").is_ok_and(|k| k == "scalar") {
            Isa::Scalar
        } else if has_dotprod() {
            Isa::NeonDot
        } else {
            Isa::Neon
        };
        assert_eq!(isa(), want);
    }
}
