//! AVX2 kernels (with FMA and F16C), for x86 CPUs without the AVX-512 this crate uses.
//!
//! Integer kernels work on 32 codes (one block, or one K-quant sub-block) at a time:
//! `vpmaddubsw` multiplies unsigned weight codes by signed activation codes and sums
//! pairs into i16 (the codes are small enough not to saturate), `vpmaddwd` sums those
//! into i32, with K-quant sub-block scales as its multipliers. Formats whose values are
//! `d * (q - OFFSET)` keep `q` unsigned and take `OFFSET * a` back at i16 precision.

use super::{Acts, Q8Out, Rows, SharedOut};
use crate::dtype::{DType, QK_K};
use crate::quant::activation::{BlockQ8K, Q8Rows};
use crate::quant::blocks::{
    BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use crate::quant::format::Format;
use crate::quant::k_panels::ROWS as PANEL_ROWS;
use crate::tensor::{Layout, WeightTensor};
use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::ops::Range;

/// Tile shape: 16 registers hold 2 x 4 accumulators and what feeds them.
const R: usize = 2;
const T: usize = 4;

/// Computes rows `rows` of the matmul of `w` with `acts` (see [`super::matmul`]).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; no other thread writes these rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn matmul_rows(
    w: &WeightTensor,
    acts: Acts,
    n_tokens: usize,
    rows: Range<usize>,
    out: SharedOut,
    n: usize,
) {
    let w_rows = Rows::new(w);
    // SAFETY: the caller guarantees AVX2, FMA and F16C and that no other thread writes
    // these rows of `out`, all that the kernels of every arm below need.
    unsafe {
        if w.layout == Layout::Interleaved {
            return match (w.dtype, acts) {
                (DType::Q4K, Acts::Q8K(a)) => {
                    PanelTile::<Q4K>::new(w, a).run(rows, n_tokens, out, n)
                }
                (DType::Q5K, Acts::Q8K(a)) => {
                    PanelTile::<Q5K>::new(w, a).run(rows, n_tokens, out, n)
                }
                (DType::Q6K, Acts::Q8K(a)) => {
                    PanelTile::<Q6K>::new(w, a).run(rows, n_tokens, out, n)
                }
                (DType::Q4_0, Acts::Q8(a)) => {
                    Q32Panels::<Q4_0>::new(w, a).run(rows, n_tokens, out, n)
                }
                (DType::Q4_1, Acts::Q8(a)) => {
                    Q32Panels::<Q4_1>::new(w, a).run(rows, n_tokens, out, n)
                }
                (DType::Q8_0, Acts::Q8(a)) => {
                    Q32Panels::<Q8_0>::new(w, a).run(rows, n_tokens, out, n)
                }
                _ => unreachable!("{} has no AVX2 panel kernel", w.dtype),
            };
        }
        match (w.dtype, acts) {
            (DType::Q4_0, Acts::Q8(a)) => {
                run(&Q32Tile::<Q4_0>::new(w_rows, a), rows, n_tokens, out, n)
            }
            (DType::Q4_1, Acts::Q8(a)) => {
                run(&Q32Tile::<Q4_1>::new(w_rows, a), rows, n_tokens, out, n)
            }
            (DType::Q5_0, Acts::Q8(a)) => {
                run(&Q32Tile::<Q5_0>::new(w_rows, a), rows, n_tokens, out, n)
            }
            (DType::Q5_1, Acts::Q8(a)) => {
                run(&Q32Tile::<Q5_1>::new(w_rows, a), rows, n_tokens, out, n)
            }
            (DType::Q8_0, Acts::Q8(a)) => {
                run(&Q32Tile::<Q8_0>::new(w_rows, a), rows, n_tokens, out, n)
            }
            (DType::Q4K, Acts::Q8K(a)) => run(
                &KTile::<Q4K>::new(w_rows, w.cols, a),
                rows,
                n_tokens,
                out,
                n,
            ),
            (DType::Q5K, Acts::Q8K(a)) => run(
                &KTile::<Q5K>::new(w_rows, w.cols, a),
                rows,
                n_tokens,
                out,
                n,
            ),
            (DType::Q6K, Acts::Q8K(a)) => run(
                &KTile::<Q6K>::new(w_rows, w.cols, a),
                rows,
                n_tokens,
                out,
                n,
            ),
            (DType::F32, Acts::F32(x)) => run(
                &FloatTile::<F32>::new(w_rows, w.cols, x),
                rows,
                n_tokens,
                out,
                n,
            ),
            (DType::F16, Acts::F32(x)) => run(
                &FloatTile::<F16>::new(w_rows, w.cols, x),
                rows,
                n_tokens,
                out,
                n,
            ),
            (DType::BF16, Acts::F32(x)) => run(
                &FloatTile::<BF16>::new(w_rows, w.cols, x),
                rows,
                n_tokens,
                out,
                n,
            ),
            _ => unreachable!("activations are prepared for the weight type {}", w.dtype),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tiles
// ---------------------------------------------------------------------------------------

/// Tokens per pass over a thread's rows: their activations stay in cache while every
/// row tile of the pass reads them.
const TOKEN_CHUNK: usize = 32;

/// A matmul kernel for one weight format and one ISA.
trait Tile {
    /// `[t][r]` is the dot product of weight row `r0 + r` with token `t0 + t`.
    ///
    /// # Safety
    /// The CPU has the kernel's ISA; the rows and tokens exist.
    unsafe fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; R]; T];
}

/// Runs `kernel` over weight rows `rows` and tokens `0..n_tokens`, writing
/// `out[t * n + r]` for an output of `n` values per token, in tiles of [`R`] rows by
/// [`T`] tokens (rows and tokens left over run in tiles of one row or one token).
///
/// # Safety
/// The CPU has the kernel's ISA; no other thread writes these rows of `out`.
unsafe fn run<K: Tile>(kernel: &K, rows: Range<usize>, n_tokens: usize, out: SharedOut, n: usize) {
    // One token: single rows, each read as one sequential stream (interleaved rows
    // defeat the hardware prefetchers).
    if n_tokens == 1 {
        for r in rows {
            // SAFETY: as the caller guarantees.
            unsafe { put(out, n, r, 0, kernel.tile::<1, 1>(r, 0)) };
        }
        return;
    }
    for chunk in (0..n_tokens).step_by(TOKEN_CHUNK) {
        let tokens = chunk..(chunk + TOKEN_CHUNK).min(n_tokens);
        let mut r = rows.start;
        while r + R <= rows.end {
            // SAFETY: as the caller guarantees; rows `r..r + R` lie inside `rows`.
            unsafe { row_tile::<K, R>(kernel, r, tokens.clone(), out, n) };
            r += R;
        }
        for r in r..rows.end {
            // SAFETY: as the caller guarantees; row `r` lies inside `rows`.
            unsafe { row_tile::<K, 1>(kernel, r, tokens.clone(), out, n) };
        }
    }
}

/// Rows `r..r + ROWS` times `tokens`, in tiles of [`T`] tokens and then single tokens.
///
/// # Safety
/// As for [`run`], with the rows inside the caller's.
unsafe fn row_tile<K: Tile, const ROWS: usize>(
    kernel: &K,
    r: usize,
    tokens: Range<usize>,
    out: SharedOut,
    n: usize,
) {
    let full = tokens.end - tokens.len() % T;
    for t in (tokens.start..full).step_by(T) {
        // SAFETY: as the caller guarantees; tokens `t..t + T` end by `full`, inside `tokens`.
        unsafe { put(out, n, r, t, kernel.tile::<ROWS, T>(r, t)) };
    }
    for t in full..tokens.end {
        // SAFETY: as the caller guarantees; token `t` lies inside `tokens`.
        unsafe { put(out, n, r, t, kernel.tile::<ROWS, 1>(r, t)) };
    }
}

/// Writes a tile's results to `out[t * n + r]`.
///
/// # Safety
/// The indices are in bounds and no other thread writes them.
unsafe fn put<const R: usize, const T: usize>(
    out: SharedOut,
    n: usize,
    r0: usize,
    t0: usize,
    tile: [[f32; R]; T],
) {
    for (t, values) in tile.iter().enumerate() {
        for (r, &v) in values.iter().enumerate() {
            // SAFETY: as the caller guarantees.
            unsafe { out.write((t0 + t) * n + r0 + r, v) };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The sums of a tile's accumulators.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce<const R: usize, const T: usize>(acc: &[[__m256; R]; T]) -> [[f32; R]; T] {
    let mut out = [[0f32; R]; T];
    for (o, a) in out.iter_mut().zip(acc) {
        for (o, &a) in o.iter_mut().zip(a) {
            *o = hsum(a);
        }
    }
    out
}

/// An f16 as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { p.cast::<i16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits)))
}

/// The 32 4-bit codes of 16 bytes, low nibbles then high nibbles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    let packed = unsafe { _mm_loadu_si128(p.cast()) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(packed), packed);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// Adds 16 to the 32 codes whose bit is set in the little-endian u32 `qh` (bit v for value v).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fifth_bits(q: __m256i, qh: *const u8) -> __m256i {
    // SAFETY: the caller guarantees four readable bytes.
    let bits = unsafe { qh.cast::<i32>().read_unaligned() };
    // Byte v takes byte v / 8 of qh, then keeps bit v % 8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    _mm256_or_si256(q, _mm256_and_si256(set, _mm256_set1_epi8(16)))
}

// ---------------------------------------------------------------------------------------
// 32-value block formats against Q8Rows
// ---------------------------------------------------------------------------------------

/// A 32-value block format, decoded one block at a time.
trait Q32 {
    /// Bytes per block.
    const BLOCK: usize;
    /// Values are `d * (q - OFFSET)` with unsigned codes q; 0 for the others.
    const OFFSET: u8;
    /// Values are `d * q + m`.
    const HAS_M: bool = false;
    /// Codes are signed bytes (Q8_0): too large for `vpmaddubsw` with an offset.
    const SIGNED: bool = false;
    /// The block's codes, `d` and `m` (0 where the format has none).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; the block is readable.
    unsafe fn decode(p: *const u8) -> (__m256i, f32, f32);
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;
struct Q8_0;

impl Q32 for Q4_0 {
    const BLOCK: usize = BlockQ4_0::BLOCK_BYTES;
    const OFFSET: u8 = 8;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: the caller guarantees the block: d, then 16 code bytes.
        unsafe { (nibbles(p.add(2)), load_f16(p), 0.0) }
    }
}

impl Q32 for Q4_1 {
    const BLOCK: usize = BlockQ4_1::BLOCK_BYTES;
    const OFFSET: u8 = 0;
    const HAS_M: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: the caller guarantees the block: d, m, then 16 code bytes.
        unsafe { (nibbles(p.add(4)), load_f16(p), load_f16(p.add(2))) }
    }
}

impl Q32 for Q5_0 {
    const BLOCK: usize = BlockQ5_0::BLOCK_BYTES;
    const OFFSET: u8 = 16;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: the caller guarantees the block: d, qh, then 16 code bytes.
        unsafe { (fifth_bits(nibbles(p.add(6)), p.add(2)), load_f16(p), 0.0) }
    }
}

impl Q32 for Q5_1 {
    const BLOCK: usize = BlockQ5_1::BLOCK_BYTES;
    const OFFSET: u8 = 0;
    const HAS_M: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: the caller guarantees the block: d, m, qh, then 16 code bytes.
        unsafe {
            (
                fifth_bits(nibbles(p.add(8)), p.add(4)),
                load_f16(p),
                load_f16(p.add(2)),
            )
        }
    }
}

impl Q32 for Q8_0 {
    const BLOCK: usize = BlockQ8_0::BLOCK_BYTES;
    const OFFSET: u8 = 0;
    const SIGNED: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode(p: *const u8) -> (__m256i, f32, f32) {
        // SAFETY: the caller guarantees the block: d, then 32 code bytes.
        unsafe { (_mm256_loadu_si256(p.add(2).cast()), load_f16(p), 0.0) }
    }
}

/// Q4_0 .. Q8_0 weights times [`Q8Rows`] activations.
struct Q32Tile<'a, F> {
    w: Rows<'a>,
    acts: &'a Q8Rows,
    format: PhantomData<F>,
}

impl<'a, F: Q32> Q32Tile<'a, F> {
    fn new(w: Rows<'a>, acts: &'a Q8Rows) -> Self {
        Q32Tile {
            w,
            acts,
            format: PhantomData,
        }
    }
}

impl<F: Q32> Tile for Q32Tile<'_, F> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; R]; T] {
        let cols = self.acts.cols();
        let blocks = cols / 32;
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        for b in 0..blocks {
            let mut w = [(_mm256_setzero_si256(), 0f32, 0f32); R];
            for (r, w) in w.iter_mut().enumerate() {
                // SAFETY: the caller guarantees the row; block b is inside it.
                *w = unsafe { F::decode(self.w.row(r0 + r).add(b * F::BLOCK)) };
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                let (t, block) = (t0 + t, (t0 + t) * blocks + b);
                // SAFETY: token t exists; block b's codes are inside its row.
                let a = unsafe {
                    _mm256_loadu_si256(self.acts.codes.as_ptr().add(t * cols + 32 * b).cast())
                };
                let da = self.acts.d[block];
                // Each of the 8 lanes gets an eighth of `m * s`.
                let s = _mm256_set1_ps(self.acts.s[block] * 0.125);
                let offset = _mm256_maddubs_epi16(_mm256_set1_epi8(F::OFFSET as i8), a);
                for (acc, &(q, d, m)) in acc.iter_mut().zip(&w) {
                    let pairs = if F::SIGNED {
                        _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q))
                    } else if F::OFFSET != 0 {
                        _mm256_sub_epi16(_mm256_maddubs_epi16(q, a), offset)
                    } else {
                        _mm256_maddubs_epi16(q, a)
                    };
                    let dot = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * da), *acc);
                    if F::HAS_M {
                        *acc = _mm256_fmadd_ps(_mm256_set1_ps(m), s, *acc);
                    }
                }
            }
        }
        reduce(&acc)
    }
}

// ---------------------------------------------------------------------------------------
// K-quants against Q8_K
// ---------------------------------------------------------------------------------------

/// A K-quant format, read one block at a time in eight steps of 32 codes. Each step is
/// unpacked just before its products, so a block's codes never leave the registers
/// (unpacking a whole block first spills 16 vectors to the stack, and those stores, not
/// the memory reads, then bound decode).
trait QK {
    /// Bytes per block.
    const BLOCK: usize;
    /// The mins term is taken from the integer sum, at scale `d` (Q6_K's code offset);
    /// otherwise it has its own scale `dmin`.
    const MINS_AT_D: bool = false;
    /// What the block at `p` shares across its steps.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; the block is readable.
    unsafe fn block(p: *const u8) -> KBlock;
    /// Step `s`'s 32 unsigned codes, and the i16 multipliers of its 16 code pairs (its
    /// sub-block scales).
    ///
    /// # Safety
    /// As for [`QK::block`], with `b` read from that block and `s < 8`.
    unsafe fn step(b: &KBlock, s: usize) -> (__m256i, __m256i);
}

/// A K-quant block being read: what its steps share.
struct KBlock {
    p: *const u8,
    /// The sub-block scales, in the format's own arrangement.
    scales: __m256i,
    /// Q5_K's fifth bits (32 bytes: bit j of byte l for value l of sub-block j).
    high: __m256i,
    /// The weight of each of the activations' 16-value sums, subtracted.
    mins: __m256i,
    /// Scale of the mins term (unless `MINS_AT_D`).
    dmin: f32,
    /// Scale of the codes.
    d: f32,
}

/// The 6-bit scales and mins of a Q4_K/Q5_K block (see `scale_min_k4`), as bytes
/// `[scale 0..8, min 0..8]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales_and_mins_k4(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 12 readable bytes.
    let [u0, u1, u2] = unsafe { p.cast::<[u32; 3]>().read_unaligned() }.map(u32::from_le);
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const TOP2: u32 = 0x0303_0303;
    _mm_set_epi32(
        (((u2 >> 4) & LOW4) | (((u1 >> 6) & TOP2) << 4)) as i32,
        (u1 & LOW6) as i32,
        ((u2 & LOW4) | (((u0 >> 6) & TOP2) << 4)) as i32,
        (u0 & LOW6) as i32,
    )
}

/// The shared part of a Q4_K or Q5_K block; `high` is Q5_K's fifth bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_k4(p: *const u8, high: __m256i) -> KBlock {
    // SAFETY: the caller guarantees the block: d and dmin at 0, scales at 4.
    unsafe {
        let sm = scales_and_mins_k4(p.add(4));
        // Each 16-value sum takes its sub-block's min: [m0, m0, m1, m1, ..].
        let mins = _mm_shuffle_epi8(
            sm,
            _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8),
        );
        KBlock {
            p,
            // The eight scales as i16, in both 128-bit lanes.
            scales: _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm)),
            high,
            mins: _mm256_cvtepu8_epi16(mins),
            dmin: load_f16(p.add(2)),
            d: load_f16(p),
        }
    }
}

/// Step `s` of a Q4_K or Q5_K block whose codes are at `qs`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn step_k4(b: &KBlock, qs: usize, s: usize) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees AVX2 and the block's 128 code bytes at `qs`.
    unsafe {
        // 32 code bytes hold sub-block 2i in their low nibbles and 2i + 1 in their high.
        let v = _mm256_loadu_si256(b.p.add(qs + 32 * (s / 2)).cast());
        let v = if s % 2 == 1 {
            _mm256_srli_epi16::<4>(v)
        } else {
            v
        };
        // Sub-block s's scale in every i16 lane: one in-register shuffle of the widened
        // scales (broadcasting each from memory costs several moves).
        let scale = _mm256_shuffle_epi8(b.scales, _mm256_set1_epi16(0x0100 + 0x0202 * s as i16));
        (_mm256_and_si256(v, _mm256_set1_epi8(0x0F)), scale)
    }
}

struct Q4K;
struct Q5K;
struct Q6K;

impl QK for Q4K {
    const BLOCK: usize = BlockQ4K::BLOCK_BYTES;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block(p: *const u8) -> KBlock {
        // SAFETY: the caller guarantees the block.
        unsafe { block_k4(p, _mm256_setzero_si256()) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn step(b: &KBlock, s: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller guarantees the block; Q4_K's codes are at 16.
        unsafe { step_k4(b, 16, s) }
    }
}

impl QK for Q5K {
    const BLOCK: usize = BlockQ5K::BLOCK_BYTES;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block(p: *const u8) -> KBlock {
        // SAFETY: the caller guarantees the block; Q5_K's fifth bits are at 16.
        unsafe { block_k4(p, _mm256_loadu_si256(p.add(16).cast())) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn step(b: &KBlock, s: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller guarantees the block; Q5_K's codes are at 48.
        let (q, scale) = unsafe { step_k4(b, 48, s) };
        // Bit s of each byte moved to bit 4 (a 16-bit shift by at most 4 keeps every
        // byte's bit 4 inside that byte).
        let bit = if s <= 4 {
            _mm256_sll_epi16(b.high, _mm_cvtsi32_si128(4 - s as i32))
        } else {
            _mm256_srl_epi16(b.high, _mm_cvtsi32_si128(s as i32 - 4))
        };
        (
            _mm256_or_si256(q, _mm256_and_si256(bit, _mm256_set1_epi8(16))),
            scale,
        )
    }
}

impl QK for Q6K {
    const BLOCK: usize = BlockQ6K::BLOCK_BYTES;
    const MINS_AT_D: bool = true;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block(p: *const u8) -> KBlock {
        // SAFETY: the caller guarantees the block: ql at 0 (128 bytes), qh at 128 (64),
        // 16 signed scales at 192, d at 208.
        unsafe {
            let scales = _mm_loadu_si128(p.add(192).cast());
            KBlock {
                p,
                scales: _mm256_castsi128_si256(scales),
                high: _mm256_setzero_si256(),
                // Codes are q - 32 with q unsigned: take 32 * scale * (16-value sum) back.
                mins: _mm256_slli_epi16::<5>(_mm256_cvtepi8_epi16(scales)),
                dmin: 0.0,
                d: load_f16(p.add(208)),
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn step(b: &KBlock, step: usize) -> (__m256i, __m256i) {
        // Step 4h + k holds values 128h + 32k .. + 32: the low nibbles of ql bytes
        // 64h + 32(k % 2) .. + 32 for k < 2, their high nibbles for k >= 2, and bits
        // 2k, 2k + 1 of qh bytes 32h .. 32h + 32 as bits 4 and 5.
        let (h, k) = (step / 4, step % 4);
        // SAFETY: the caller guarantees the block.
        let (ql, qh) = unsafe {
            (
                _mm256_loadu_si256(b.p.add(64 * h + 32 * (k % 2)).cast()),
                _mm256_loadu_si256(b.p.add(128 + 32 * h).cast()),
            )
        };
        let ql = if k >= 2 {
            _mm256_srli_epi16::<4>(ql)
        } else {
            ql
        };
        let top = _mm256_slli_epi16::<4>(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k as i32)));
        let q = _mm256_or_si256(
            _mm256_and_si256(ql, _mm256_set1_epi8(0x0F)),
            _mm256_and_si256(top, _mm256_set1_epi8(0x30)),
        );
        // Scales 2 step and 2 step + 1, eight times each, widened to i16: the first
        // fills the low 128-bit lane, the second the high one.
        let g = 2 * step as u8;
        let pick = _mm_set_epi64x(i64::from_ne_bytes([g + 1; 8]), i64::from_ne_bytes([g; 8]));
        let scale = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(_mm256_castsi256_si128(b.scales), pick));
        (q, scale)
    }
}

/// K-quant weights times [`BlockQ8K`] activations.
struct KTile<'a, F> {
    w: Rows<'a>,
    blocks: usize,
    acts: &'a [BlockQ8K],
    format: PhantomData<F>,
}

impl<'a, F: QK> KTile<'a, F> {
    fn new(w: Rows<'a>, cols: usize, acts: &'a [BlockQ8K]) -> Self {
        KTile {
            w,
            blocks: cols / QK_K,
            acts,
            format: PhantomData,
        }
    }
}

impl<F: QK> Tile for KTile<'_, F> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; R]; T] {
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        for b in 0..self.blocks {
            let acts: [&BlockQ8K; T] =
                std::array::from_fn(|t| &self.acts[(t0 + t) * self.blocks + b]);
            for r in 0..R {
                // SAFETY: the caller guarantees row r0 + r; block b is inside it.
                let w = unsafe { F::block(self.w.row(r0 + r).add(b * F::BLOCK)) };
                let mut isum = [_mm256_setzero_si256(); T];
                for s in 0..8 {
                    // SAFETY: `w` is this block's, and s < 8.
                    let (q, scale) = unsafe { F::step(&w, s) };
                    for (isum, a) in isum.iter_mut().zip(&acts) {
                        // SAFETY: step s's 32 codes are inside `qs`.
                        let codes = unsafe { _mm256_loadu_si256(a.qs.as_ptr().add(32 * s).cast()) };
                        let pairs = _mm256_maddubs_epi16(q, codes);
                        *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(pairs, scale));
                    }
                }
                for ((acc, mut isum), a) in acc.iter_mut().zip(isum).zip(&acts) {
                    // SAFETY: `bsums` is 16 i16s.
                    let bsums = unsafe { _mm256_loadu_si256(a.bsums.as_ptr().cast()) };
                    let mins = _mm256_madd_epi16(w.mins, bsums);
                    let acc = &mut acc[r];
                    if F::MINS_AT_D {
                        isum = _mm256_sub_epi32(isum, mins);
                    } else {
                        let dmin = _mm256_set1_ps(-w.dmin * a.d);
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), dmin, *acc);
                    }
                    *acc =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(w.d * a.d), *acc);
                }
            }
        }
        reduce(&acc)
    }
}

// ---------------------------------------------------------------------------------------
// K-quants in panels against Q8_K
// ---------------------------------------------------------------------------------------

/// A K-quant format in the panel layout (see [`crate::quant::k_panels`]): how a chunk,
/// the super-blocks of a panel's 8 rows, yields each sub-block's scales and codes. Every
/// vector holds the 8 rows in its 8 lanes of 32 bits.
trait Panel {
    /// Bytes of one row's super-block.
    const BLOCK: usize;
    /// Values per sub-block (which has one scale per row).
    const SUB_LEN: usize;
    /// Code vectors per sub-block: 8 rows by `SUB_LEN` values, 32 codes a vector.
    const VECTORS: usize = Self::SUB_LEN / 4;
    /// Code vectors whose `vpmaddubsw` products one i16 sum holds: each product pair is
    /// at most 2 * 127 * (largest code), and 32767 bounds the sum.
    const GROUP: usize;
    /// The mins term is `32 * scale * sums`, at the codes' scale `d` (Q6_K's offset);
    /// otherwise it has its own scale `dmin`.
    const MINS_AT_D: bool = false;
    /// # Safety (all functions)
    /// The CPU has AVX2, FMA and F16C; `c` is a whole chunk; `j` and `v` are in range.
    ///
    /// What a chunk's sub-blocks share: Q4_K's and Q5_K's four scale groups (see
    /// [`k4_scales`]).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(c: *const u8) -> [__m256i; 4] {
        // SAFETY: as the trait requires.
        unsafe { k4_scales(c) }
    }
    /// Sub-block j's multipliers, as i16 pairs per row: of its codes' pair sums (the
    /// row's scale twice), and of the activations' 16-value sums at [`Panel::sums_at`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sub_scales(_c: *const u8, scales: &[__m256i; 4], j: usize) -> (__m256i, __m256i) {
        (k4_pairs(scales[j / 4], j), k4_pairs(scales[2 + j / 4], j))
    }
    /// Code vector v of sub-block j: unsigned codes of activation values
    /// `SUB_LEN * j + 4 * v .. + 4` (the same four for every row).
    unsafe fn codes(c: *const u8, j: usize, v: usize) -> __m256i;
    /// The rows' `d` and `dmin`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn d(c: *const u8) -> (__m256, __m256) {
        // SAFETY: as the trait requires: 16 f16 at the chunk's start.
        unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(c.cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(c.add(16).cast())),
            )
        }
    }

    /// The first of the two 16-value activation sums sub-block j's mins multiply.
    fn sums_at(j: usize) -> usize {
        (Self::SUB_LEN * j / 16) & !1
    }
}

/// `x` with each byte's bit `from` moved to bit `to` (a 16-bit shift: bits that cross into
/// the other byte of a pair are the caller's to mask away).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn move_bit(x: __m256i, from: usize, to: usize) -> __m256i {
    if to >= from {
        _mm256_sll_epi16(x, _mm_cvtsi32_si128((to - from) as i32))
    } else {
        _mm256_srl_epi16(x, _mm_cvtsi32_si128((from - to) as i32))
    }
}

/// The low (v even) or high (v odd) nibbles of the 32 code bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibble_codes(p: *const u8, v: usize) -> __m256i {
    // SAFETY: the caller has AVX2 and 32 readable bytes at `p`.
    unsafe {
        let bytes = _mm256_loadu_si256(p.cast());
        _mm256_and_si256(move_bit(bytes, 4 * (v % 2), 0), _mm256_set1_epi8(0x0F))
    }
}

/// `vpshufb` controls that put byte `b` of each 128-bit lane into the i16 lanes of a
/// row's pair as the 16-bit values given: `low` for the first i16, `high` for the second
/// (`Some(true)`: the byte itself, `Some(false)`: the byte as the high half of the i16,
/// `None`: zero), row r's byte being `rows[r % 4]`.
const fn pair_pick(rows: [u8; 4], low: Option<bool>, high: Option<bool>) -> [u8; 32] {
    let mut pick = [0x80u8; 32];
    let mut i = 0;
    while i < 8 {
        let b = rows[i % 4];
        let halves = [low, high];
        let mut h = 0;
        while h < 2 {
            let at = 4 * i + 2 * h;
            match halves[h] {
                Some(true) => pick[at] = b,
                Some(false) => pick[at + 1] = b,
                None => {}
            }
            h += 1;
        }
        i += 1;
    }
    pick
}

/// Controls taking Q4_K/Q5_K scale group entry `4r + j % 4` (row r's value for
/// sub-block j; rows 4..8 are the second 128-bit lane's) twice into row r's i16 pair.
static K4_PAIRS: [[u8; 32]; 4] = {
    let mut picks = [[0u8; 32]; 4];
    let mut j = 0;
    while j < 4 {
        let e = j as u8;
        picks[j] = pair_pick([e, 4 + e, 8 + e, 12 + e], Some(true), Some(true));
        j += 1;
    }
    picks
};

/// Controls taking Q6_K scale byte r (of 8 in each 64-bit lane) into the high halves of
/// row r's i16 pair: both halves, the first only, the second only.
static Q6_PAIRS: [[u8; 32]; 3] = {
    let (r, tail) = ([0, 1, 2, 3], [4, 5, 6, 7]);
    let mut picks = [
        pair_pick(r, Some(false), Some(false)),
        pair_pick(r, Some(false), None),
        pair_pick(r, None, Some(false)),
    ];
    // Rows 4..8 read bytes 4..8 of the second lane.
    let mut k = 0;
    while k < 3 {
        let upper = match k {
            0 => pair_pick(tail, Some(false), Some(false)),
            1 => pair_pick(tail, Some(false), None),
            _ => pair_pick(tail, None, Some(false)),
        };
        let mut i = 16;
        while i < 32 {
            picks[k][i] = upper[i];
            i += 1;
        }
        k += 1;
    }
    picks
};

/// Loads a `vpshufb` control.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn control(pick: &[u8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes.
    unsafe { _mm256_loadu_si256(pick.as_ptr().cast()) }
}

/// The i16 pairs of a Q4_K/Q5_K scale group for sub-block j (see [`K4_PAIRS`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_pairs(group: __m256i, j: usize) -> __m256i {
    _mm256_shuffle_epi8(group, control(&K4_PAIRS[j % 4]))
}

/// The four scale groups of a Q4_K/Q5_K chunk (scales of sub-blocks 0..4, 4..8, mins
/// 0..4, 4..8), from their planes of low 4 and top 2 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales(c: *const u8) -> [__m256i; 4] {
    // SAFETY: the caller has AVX2 and the chunk.
    unsafe {
        let low = [
            _mm256_loadu_si256(c.add(32).cast()),
            _mm256_loadu_si256(c.add(64).cast()),
        ];
        let top = _mm256_loadu_si256(c.add(96).cast());
        let mut groups = [_mm256_setzero_si256(); 4];
        for (g, group) in groups.iter_mut().enumerate() {
            let low =
                _mm256_and_si256(move_bit(low[g / 2], 4 * (g % 2), 0), _mm256_set1_epi8(0x0F));
            let top = _mm256_and_si256(move_bit(top, 2 * g, 4), _mm256_set1_epi8(0x30));
            *group = _mm256_or_si256(low, top);
        }
        groups
    }
}

impl Panel for Q4K {
    const BLOCK: usize = BlockQ4K::BLOCK_BYTES;
    const SUB_LEN: usize = 32;
    const GROUP: usize = 8;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(c: *const u8, j: usize, v: usize) -> __m256i {
        // SAFETY: as the trait requires; the codes start at 128.
        unsafe { nibble_codes(c.add(128 + 32 * (4 * j + v / 2)), v) }
    }
}

impl Panel for Q5K {
    const BLOCK: usize = BlockQ5K::BLOCK_BYTES;
    const SUB_LEN: usize = 32;
    const GROUP: usize = 4;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(c: *const u8, j: usize, v: usize) -> __m256i {
        // SAFETY: as the trait requires; the fifth bits start at 128, the codes at 384.
        unsafe {
            let low = nibble_codes(c.add(384 + 32 * (4 * j + v / 2)), v);
            let high = _mm256_loadu_si256(c.add(128 + 32 * j).cast());
            let fifth = _mm256_and_si256(move_bit(high, v, 4), _mm256_set1_epi8(0x10));
            _mm256_or_si256(low, fifth)
        }
    }
}

impl Panel for Q6K {
    const BLOCK: usize = BlockQ6K::BLOCK_BYTES;
    const SUB_LEN: usize = 16;
    const GROUP: usize = 2;
    const MINS_AT_D: bool = true;
    /// Q6_K's scales are whole bytes, read per sub-block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(_: *const u8) -> [__m256i; 4] {
        [_mm256_setzero_si256(); 4]
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sub_scales(c: *const u8, _: &[__m256i; 4], j: usize) -> (__m256i, __m256i) {
        // SAFETY: as the trait requires; sub-block j's 8 signed scales are at 16 + 8j.
        unsafe {
            let bytes = _mm256_set1_epi64x(c.add(16 + 8 * j).cast::<i64>().read_unaligned());
            // Each scale into the high byte of an i16, then shifted down with its sign:
            // twice per row for the codes, once for the sums (the first of the pair for
            // even j, the second for odd j).
            let widen = |k: usize| {
                _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(bytes, control(&Q6_PAIRS[k])))
            };
            (widen(0), widen(1 + j % 2))
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn codes(c: *const u8, j: usize, v: usize) -> __m256i {
        // SAFETY: as the trait requires; the low bits start at 144, the top bits at 1168.
        unsafe {
            let low = nibble_codes(c.add(144 + 32 * (2 * j + v / 2)), v);
            let top = _mm256_loadu_si256(c.add(1168 + 32 * j).cast());
            let top = _mm256_and_si256(move_bit(top, 2 * v, 4), _mm256_set1_epi8(0x30));
            _mm256_or_si256(low, top)
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn d(c: *const u8) -> (__m256, __m256) {
        // SAFETY: as the trait requires.
        let d = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(c.cast())) };
        (d, _mm256_setzero_ps())
    }
}

/// Tokens per panel tile in prefill: each code vector, unpacked once, meets this many.
const PANEL_TOKENS: usize = 4;

/// A matmul kernel over weights in panels of 8 rows, the lanes of every vector.
trait PanelKernel {
    /// Lane r of `[t]` is the dot product of row `8p + r` with token `t0 + t`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; the panel and the tokens exist.
    unsafe fn tile<const T: usize>(&self, p: usize, t0: usize) -> [__m256; T];

    /// Writes rows `rows` (whole panels) by tokens `0..n_tokens` to `out[t * n + r]`, in
    /// tiles of one panel by [`PANEL_TOKENS`] tokens (then single tokens).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; no other thread writes these rows of `out`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run(&self, rows: Range<usize>, n_tokens: usize, out: SharedOut, n: usize) {
        debug_assert!(rows.start.is_multiple_of(PANEL_ROWS) && rows.end.is_multiple_of(PANEL_ROWS));
        let panels = rows.start / PANEL_ROWS..rows.end / PANEL_ROWS;
        for chunk in (0..n_tokens).step_by(TOKEN_CHUNK) {
            let tokens = chunk..(chunk + TOKEN_CHUNK).min(n_tokens);
            for p in panels.clone() {
                let full = tokens.end - tokens.len() % PANEL_TOKENS;
                for t in (tokens.start..full).step_by(PANEL_TOKENS) {
                    // SAFETY: as the caller guarantees; panel `p` lies inside `rows`, and
                    // tokens `t..t + PANEL_TOKENS` end by `full`, inside `0..n_tokens`.
                    unsafe { put_panel(out, n, p, t, self.tile::<PANEL_TOKENS>(p, t)) };
                }
                for t in full..tokens.end {
                    // SAFETY: as the caller guarantees; panel `p` lies inside `rows`, and
                    // token `t` inside `0..n_tokens`.
                    unsafe { put_panel(out, n, p, t, self.tile::<1>(p, t)) };
                }
            }
        }
    }
}

/// How far ahead of the chunk being read the panel kernels prefetch, in bytes: a few
/// chunks, the distance that measured best on Zen 3 (one to eight KiB were tried).
const PREFETCH_AHEAD: usize = 4096;

/// K-quant weights in panels times [`BlockQ8K`] activations: tiles of one panel (8 rows,
/// the lanes of every vector) by up to [`PANEL_TOKENS`] tokens.
struct PanelTile<'a, F> {
    bytes: &'a [u8],
    blocks: usize,
    acts: &'a [BlockQ8K],
    format: PhantomData<F>,
}

impl<'a, F: Panel> PanelTile<'a, F> {
    fn new(w: &'a WeightTensor, acts: &'a [BlockQ8K]) -> Self {
        PanelTile {
            bytes: w.bytes(),
            blocks: w.cols / QK_K,
            acts,
            format: PhantomData,
        }
    }
}

impl<F: Panel> PanelKernel for PanelTile<'_, F> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const T: usize>(&self, p: usize, t0: usize) -> [__m256; T] {
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..self.blocks {
            let chunk = (p * self.blocks + b) * PANEL_ROWS * F::BLOCK;
            let c = self.bytes[chunk..chunk + PANEL_ROWS * F::BLOCK].as_ptr();
            let acts: [&BlockQ8K; T] =
                std::array::from_fn(|t| &self.acts[(t0 + t) * self.blocks + b]);
            // SAFETY: `c` is a whole chunk (sliced above); this fn has AVX2, FMA and F16C.
            let scales = unsafe { F::scales(c) };
            let (mut isum, mut msum) = ([_mm256_setzero_si256(); T], [_mm256_setzero_si256(); T]);
            for j in 0..QK_K / F::SUB_LEN {
                // Prefetch the bytes a sub-block ahead of this one, so that the memory
                // reads overlap the arithmetic (the hardware prefetchers alone leave
                // decode well short of the bandwidth).
                let share = PANEL_ROWS * F::BLOCK * F::SUB_LEN / QK_K;
                for line in 0..share.div_ceil(64) + 1 {
                    let ahead = c.wrapping_add(PREFETCH_AHEAD + j * share + 64 * line);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                }
                // SAFETY: `c` is a whole chunk and `j` < QK_K / SUB_LEN, one of its
                // sub-blocks; this fn has AVX2, FMA and F16C.
                let (scale, mins) = unsafe { F::sub_scales(c, &scales, j) };
                let mut part = [_mm256_setzero_si256(); T];
                for v in 0..F::VECTORS {
                    // SAFETY: as for `sub_scales`, and `v` < VECTORS, a code vector of
                    // sub-block `j`.
                    let q = unsafe { F::codes(c, j, v) };
                    for (part, a) in part.iter_mut().zip(&acts) {
                        // SAFETY: the four codes are inside `qs`.
                        let four = unsafe {
                            a.qs.as_ptr()
                                .add(F::SUB_LEN * j + 4 * v)
                                .cast::<i32>()
                                .read_unaligned()
                        };
                        let products = _mm256_maddubs_epi16(q, _mm256_set1_epi32(four));
                        *part = _mm256_add_epi16(*part, products);
                    }
                    if (v + 1) % F::GROUP == 0 {
                        for (isum, part) in isum.iter_mut().zip(&mut part) {
                            *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(*part, scale));
                            *part = _mm256_setzero_si256();
                        }
                    }
                }
                for (msum, a) in msum.iter_mut().zip(&acts) {
                    // SAFETY: the two sums are inside `bsums`.
                    let sums = unsafe {
                        a.bsums
                            .as_ptr()
                            .add(F::sums_at(j))
                            .cast::<i32>()
                            .read_unaligned()
                    };
                    *msum =
                        _mm256_add_epi32(*msum, _mm256_madd_epi16(mins, _mm256_set1_epi32(sums)));
                }
            }
            // SAFETY: `c` is a whole chunk (sliced above); this fn has AVX2, FMA and F16C.
            let (d, dmin) = unsafe { F::d(c) };
            for (t, acc) in acc.iter_mut().enumerate() {
                let ad = _mm256_set1_ps(acts[t].d);
                if F::MINS_AT_D {
                    let sum = _mm256_sub_epi32(isum[t], _mm256_slli_epi32::<5>(msum[t]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, ad), *acc);
                } else {
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(d, ad), *acc);
                    let dmin = _mm256_mul_ps(dmin, ad);
                    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum[t]), dmin, *acc);
                }
            }
        }
        acc
    }
}

/// Writes a panel tile's results to `out[t * n + 8p + r]`.
///
/// # Safety
/// The indices are in bounds and no other thread writes them.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn put_panel<const T: usize>(
    out: SharedOut,
    n: usize,
    p: usize,
    t0: usize,
    tile: [__m256; T],
) {
    for (t, &v) in tile.iter().enumerate() {
        let mut lanes = [0f32; PANEL_ROWS];
        // SAFETY: `lanes` holds 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        for (r, &x) in lanes.iter().enumerate() {
            // SAFETY: as the caller guarantees.
            unsafe { out.write((t0 + t) * n + PANEL_ROWS * p + r, x) };
        }
    }
}

// ---------------------------------------------------------------------------------------
// 32-value formats in panels against Q8Rows
// ---------------------------------------------------------------------------------------

/// Q4_0, Q4_1 and Q8_0 weights in the interleaved layout (see
/// [`crate::quant::interleave`]) times [`Q8Rows`] activations: 16 rows a panel, read as
/// two panels of 8 (each 64-byte vector of a chunk is two AVX2 vectors, lane r holding 4
/// code bytes of row r).
struct Q32Panels<'a, F> {
    bytes: &'a [u8],
    blocks: usize,
    acts: &'a Q8Rows,
    format: PhantomData<F>,
}

impl<'a, F: Q32> Q32Panels<'a, F> {
    fn new(w: &'a WeightTensor, acts: &'a Q8Rows) -> Self {
        Q32Panels {
            bytes: w.bytes(),
            blocks: w.cols / 32,
            acts,
            format: PhantomData,
        }
    }
}

impl<F: Q32> PanelKernel for Q32Panels<'_, F> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const T: usize>(&self, p: usize, t0: usize) -> [__m256; T] {
        use crate::quant::interleave::ROWS;
        // Panel p of 8 rows is half p % 2 of the layout's panel p / 2.
        let (panel, half) = (p / 2, p % 2);
        let chunk_bytes = ROWS * F::BLOCK;
        // A block is its 2-byte fields (d, and m where the format has one), then codes.
        let code_bytes = F::BLOCK - if F::HAS_M { 4 } else { 2 };
        let cols = self.acts.cols();
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..self.blocks {
            let at = (panel * self.blocks + b) * chunk_bytes;
            let c = self.bytes[at..at + chunk_bytes].as_ptr();
            // Row r's 2-byte fields: d at 16 * code bytes + 2r, then m 32 bytes on.
            let fields = ROWS * code_bytes + 16 * half;
            // SAFETY: the chunk is in bounds, as sliced above; so are the tokens' blocks.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(PREFETCH_AHEAD).cast());
                _mm_prefetch::<_MM_HINT_T0>(c.wrapping_add(PREFETCH_AHEAD + 64).cast());
                let d = _mm256_cvtph_ps(_mm_loadu_si128(c.add(fields).cast()));
                let ones = _mm256_set1_epi16(1);
                let (mut isum, mut part) =
                    ([_mm256_setzero_si256(); T], [_mm256_setzero_si256(); T]);
                for j in 0..code_bytes / 4 {
                    let w = _mm256_loadu_si256(c.add(64 * j + 32 * half).cast());
                    let acts = |t: usize, i: usize| {
                        let a = self
                            .acts
                            .codes
                            .as_ptr()
                            .add((t0 + t) * cols + 32 * b + 4 * j + i);
                        _mm256_set1_epi32(a.cast::<i32>().read_unaligned())
                    };
                    if F::SIGNED {
                        // |w| times a with w's sign; two such products can reach
                        // 2 * 127 * 127, so each vector's pairs go to i32 at once.
                        let magnitude = _mm256_sign_epi8(w, w);
                        for (t, isum) in isum.iter_mut().enumerate() {
                            let pairs =
                                _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(acts(t, 0), w));
                            *isum = _mm256_add_epi32(*isum, _mm256_madd_epi16(pairs, ones));
                        }
                    } else {
                        // Byte k holds value k (low nibble) and k + 16 (high); the block's
                        // 32 products of 4-bit codes fit one i16 sum.
                        let low = _mm256_and_si256(w, _mm256_set1_epi8(0x0F));
                        let high =
                            _mm256_and_si256(_mm256_srli_epi16::<4>(w), _mm256_set1_epi8(0x0F));
                        for (t, part) in part.iter_mut().enumerate() {
                            let pairs = _mm256_add_epi16(
                                _mm256_maddubs_epi16(low, acts(t, 0)),
                                _mm256_maddubs_epi16(high, acts(t, 16)),
                            );
                            *part = _mm256_add_epi16(*part, pairs);
                        }
                    }
                }
                if !F::SIGNED {
                    for (isum, part) in isum.iter_mut().zip(part) {
                        *isum = _mm256_madd_epi16(part, ones);
                    }
                }
                let m =
                    F::HAS_M.then(|| _mm256_cvtph_ps(_mm_loadu_si128(c.add(fields + 32).cast())));
                for (t, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
                    let block = (t0 + t) * self.blocks + b;
                    // d * (q - OFFSET) . a = d * (q . a - OFFSET * sum(a)).
                    let offset = _mm256_set1_epi32(F::OFFSET as i32 * self.acts.sum[block]);
                    let dot = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, offset));
                    *acc = _mm256_fmadd_ps(
                        dot,
                        _mm256_mul_ps(d, _mm256_set1_ps(self.acts.d[block])),
                        *acc,
                    );
                    if let Some(m) = m {
                        *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(self.acts.s[block]), *acc);
                    }
                }
            }
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------
// Float weights against f32 activations
// ---------------------------------------------------------------------------------------

/// A float weight type, read 8 values at a time.
trait Float {
    /// Bytes per value.
    const SIZE: usize;
    /// Loads 8 values at `p` as f32.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; the values are readable.
    unsafe fn load(p: *const u8) -> __m256;
    /// One value as f32 (for a row's last `cols % 8`).
    fn scalar(bytes: &[u8]) -> f32;
}

struct F32;
struct F16;
struct BF16;

impl Float for F32 {
    const SIZE: usize = 4;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> __m256 {
        // SAFETY: as the caller guarantees.
        unsafe { _mm256_loadu_ps(p.cast()) }
    }
    fn scalar(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl Float for F16 {
    const SIZE: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> __m256 {
        // SAFETY: as the caller guarantees.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
    }
    fn scalar(b: &[u8]) -> f32 {
        half::f16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}

impl Float for BF16 {
    const SIZE: usize = 2;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> __m256 {
        // SAFETY: as the caller guarantees.
        let v = unsafe { _mm_loadu_si128(p.cast()) };
        // A bf16 is the top half of an f32.
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)))
    }
    fn scalar(b: &[u8]) -> f32 {
        half::bf16::from_le_bytes([b[0], b[1]]).to_f32()
    }
}

/// Float weights times f32 activations.
struct FloatTile<'a, F> {
    w: Rows<'a>,
    cols: usize,
    x: &'a [f32],
    format: PhantomData<F>,
}

impl<'a, F: Float> FloatTile<'a, F> {
    fn new(w: Rows<'a>, cols: usize, x: &'a [f32]) -> Self {
        FloatTile {
            w,
            cols,
            x,
            format: PhantomData,
        }
    }
}

impl<F: Float> Tile for FloatTile<'_, F> {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const R: usize, const T: usize>(&self, r0: usize, t0: usize) -> [[f32; R]; T] {
        let cols = self.cols;
        let full = cols - cols % 8;
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        for i in (0..full).step_by(8) {
            let mut w = [_mm256_setzero_ps(); R];
            for (r, w) in w.iter_mut().enumerate() {
                // SAFETY: values i..i + 8 are inside the row.
                *w = unsafe { F::load(self.w.row(r0 + r).add(i * F::SIZE)) };
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: values i..i + 8 are inside token t0 + t's row of `x`.
                let x = unsafe { _mm256_loadu_ps(self.x.as_ptr().add((t0 + t) * cols + i)) };
                for (acc, &w) in acc.iter_mut().zip(&w) {
                    *acc = _mm256_fmadd_ps(w, x, *acc);
                }
            }
        }
        let mut out = reduce(&acc);
        for (t, out) in out.iter_mut().enumerate() {
            let x = &self.x[(t0 + t) * cols..(t0 + t + 1) * cols];
            for (r, out) in out.iter_mut().enumerate() {
                let row = &self.w.bytes[(r0 + r) * self.w.row_bytes..][..cols * F::SIZE];
                for i in full..cols {
                    *out += F::scalar(&row[i * F::SIZE..]) * x[i];
                }
            }
        }
        out
    }
}

/// The dot products of four f32 weight rows with `x`, which is read once for all four.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_f32_x4(w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    let n = x.len();
    assert!(w.iter().all(|w| w.len() == n), "row lengths");
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut i = 0;
    while i + 16 <= n {
        for h in 0..2 {
            let j = i + 8 * h;
            // SAFETY: j + 8 <= n, inside `x` and every row.
            let xv = unsafe { _mm256_loadu_ps(x.as_ptr().add(j)) };
            for (row, acc) in w.iter().zip(&mut acc) {
                // SAFETY: as above.
                let wv = unsafe { _mm256_loadu_ps(row.as_ptr().add(j)) };
                acc[h] = _mm256_fmadd_ps(wv, xv, acc[h]);
            }
        }
        i += 16;
    }
    std::array::from_fn(|r| {
        let tail: f32 = w[r][i..].iter().zip(&x[i..]).map(|(a, b)| a * b).sum();
        hsum(_mm256_add_ps(acc[r][0], acc[r][1])) + tail
    })
}

// ---------------------------------------------------------------------------------------
// Activation quantizers
// ---------------------------------------------------------------------------------------

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn abs(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// Rounds to f16 precision (to nearest even), as storing an f16 would.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_f16(x: f32) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
        _mm_set_ss(x),
    )))
}

/// Packs four vectors of eight i32 (each within i8) into 32 bytes, in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_i8(q: [__m256i; 4]) -> __m256i {
    // The packs work within 128-bit lanes; the permute puts the dwords back in order.
    let packed = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Quantizes rows of 32-value blocks as `quantize_q8_1` does, into [`Q8Rows`]' arrays.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8(x: &[f32], out: Q8Out) {
    let blocks = x.chunks_exact(32).zip(out.codes.chunks_exact_mut(32));
    let scales = out
        .d
        .iter_mut()
        .zip(out.s.iter_mut())
        .zip(out.sum.iter_mut());
    for ((x, codes), ((d, s), sum_out)) in blocks.zip(scales) {
        let mut v = [_mm256_setzero_ps(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            // SAFETY: `x` is 32 long.
            *v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) };
        }
        let amax = hmax(_mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        ));
        let scale = amax / 127.0;
        let inv = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
        let mut q = [_mm256_setzero_si256(); 4];
        for (q, &v) in q.iter_mut().zip(&v) {
            // The default rounding (MXCSR) is to nearest even.
            *q = _mm256_cvtps_epi32(_mm256_mul_ps(v, inv));
        }
        // SAFETY: `codes` is 32 long.
        unsafe { _mm256_storeu_si256(codes.as_mut_ptr().cast(), pack_i8(q)) };
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let sum = hsum(_mm256_cvtepi32_ps(sum));
        *d = round_f16(scale);
        *s = round_f16(sum * scale);
        // The codes' sum (at most 32 * 127) is exact in f32.
        *sum_out = sum as i32;
    }
}

/// Quantizes `x` to Q8_K blocks as `quantize_q8_k` does.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut amax = _mm256_setzero_ps();
        for i in (0..QK_K).step_by(8) {
            // SAFETY: `x` is 256 long.
            amax = _mm256_max_ps(amax, abs(unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) }));
        }
        let amax = hmax(amax);
        if amax == 0.0 {
            *block = BlockQ8K::ZERO;
            continue;
        }
        // The first value of largest magnitude, with its sign, maps to -127.
        let first = *x
            .iter()
            .find(|v| v.abs() == amax)
            .expect("the maximum is one of the values");
        let iscale = _mm256_set1_ps(-127.0 / first);
        for (g, codes) in block.qs.chunks_exact_mut(32).enumerate() {
            let mut q = [_mm256_setzero_si256(); 4];
            for (i, q) in q.iter_mut().enumerate() {
                // SAFETY: values 32g + 8i .. + 8 are inside `x`.
                let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(32 * g + 8 * i)) };
                *q = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(v, iscale)),
                    _mm256_set1_epi32(127),
                );
            }
            // SAFETY: `codes` is 32 long.
            unsafe { _mm256_storeu_si256(codes.as_mut_ptr().cast(), pack_i8(q)) };
            for (half, q) in q.chunks_exact(2).enumerate() {
                let sum = hsum(_mm256_cvtepi32_ps(_mm256_add_epi32(q[0], q[1])));
                block.bsums[2 * g + half] = sum as i16;
            }
        }
        block.d = 1.0 / (-127.0 / first);
    }
}
