//! AVX-512 kernels: F, BW and VL, VNNI's `vpdpbusd` (64 unsigned-by-signed byte products
//! summed into 16 i32 lanes, lane i taking bytes 4i..4i + 4) and VBMI's byte permutes.
//!
//! Weight codes are used unsigned: a format whose values are `d * (q - OFFSET)` keeps
//! `q`, and the `OFFSET * sum(a)` that adds is taken back exactly, as the integer sum's
//! starting value. Two kernel shapes:
//! - single rows (decode, and rows left over by the panels): each row is read as one
//!   sequential stream, four blocks (or one K-quant block) per step, against the token's
//!   activations arranged once to match; 16 rows' sums are reduced together;
//! - panels (prefill): 16 rows packed together against tiles of 8 tokens (see the
//!   "Panels" section).
//!
//! Q4_0, Q4_1 and Q8_0 weights interleaved at load (see `quant::interleave`) skip both
//! the per-row decoding and the packing: see the "Interleaved weights" section.

use super::{lane_bytes, Acts, Lanes, Q8Out, Rows, SharedOut};
use crate::dtype::{DType, QK_K};
use crate::quant::activation::{BlockQ8K, Q8Rows};
use crate::quant::blocks::*;
use crate::quant::format::Format;
use crate::tensor::{Layout, WeightTensor};
use std::arch::x86_64::*;
use std::marker::PhantomData;
use std::mem::offset_of;
use std::ops::Range;

/// Computes rows `rows` of the matmul of `w` with `acts` (see [`super::matmul`]). When
/// [`uses_panels`], whole groups of 16 rows run as packed panels
/// against `tiles` (the activations as [`pack_tokens`] packed them); other rows run one
/// row and one token at a time, each row read as one sequential stream.
///
/// # Safety
/// The CPU has the features `has_avx512` checks; no other thread writes these rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
pub(super) unsafe fn matmul_rows(
    w: &WeightTensor,
    acts: Acts,
    tiles: &[Lanes],
    n_tokens: usize,
    rows: Range<usize>,
    out: SharedOut,
    n: usize,
) {
    let interleaved = w.layout == Layout::Interleaved;
    let panel_end = if uses_panels(w.dtype, n_tokens) {
        rows.start + rows.len() / PANEL_ROWS * PANEL_ROWS
    } else {
        rows.start
    };
    let job = Job {
        w: Rows::new(w),
        cols: w.cols,
        tiles,
        n_tokens,
        rows,
        panel_end,
        out,
        n,
    };
    // SAFETY: the caller guarantees the AVX-512 features and that no other thread writes
    // these rows of `out`, all that the kernels of every arm below need.
    unsafe {
        match (w.dtype, acts) {
            (DType::Q4_0, Acts::Q8(a)) if interleaved => q32_interleaved::<Q4_0>(&job, a),
            (DType::Q4_1, Acts::Q8(a)) if interleaved => q32_interleaved::<Q4_1>(&job, a),
            (DType::Q8_0, Acts::Q8(a)) if interleaved => q32_interleaved::<Q8_0>(&job, a),
            (DType::Q4_0, Acts::Q8(a)) => q32::<Q4_0>(&job, a),
            (DType::Q4_1, Acts::Q8(a)) => q32::<Q4_1>(&job, a),
            (DType::Q5_0, Acts::Q8(a)) => q32::<Q5_0>(&job, a),
            (DType::Q5_1, Acts::Q8(a)) => q32::<Q5_1>(&job, a),
            (DType::Q8_0, Acts::Q8(a)) => q32::<Q8_0>(&job, a),
            (DType::Q4K, Acts::Q8K(a)) => qk::<Q4K, 8>(&job, a),
            (DType::Q5K, Acts::Q8K(a)) => qk::<Q5K, 8>(&job, a),
            (DType::Q6K, Acts::Q8K(a)) => qk::<Q6K, 4>(&job, a),
            (DType::F32, Acts::F32(x)) => float::<F32>(&job, x),
            (DType::F16, Acts::F32(x)) => float::<F16>(&job, x),
            (DType::BF16, Acts::F32(x)) => float::<BF16>(&job, x),
            _ => unreachable!("activations are prepared for the weight type {}", w.dtype),
        }
    }
}

/// One thread's share of a matmul.
struct Job<'a> {
    w: Rows<'a>,
    cols: usize,
    tiles: &'a [Lanes],
    n_tokens: usize,
    rows: Range<usize>,
    /// Rows `rows.start..panel_end` (a multiple of [`PANEL_ROWS`]) run as panels.
    panel_end: usize,
    out: SharedOut,
    n: usize,
}

impl Job<'_> {
    /// The bytes of the panel at `r0` if it is one of this job's (else none): the panel
    /// kernels prefetch the next panel's rows while they compute one (see [`Ahead`]).
    fn panel_bytes(&self, r0: usize) -> &[u8] {
        if r0 < self.panel_end {
            &self.w.bytes[r0 * self.w.row_bytes..(r0 + PANEL_ROWS) * self.w.row_bytes]
        } else {
            &[]
        }
    }

    /// Writes the results of the rows that do not run as panels, from their accumulators
    /// `row(r, t)`.
    ///
    /// # Safety
    /// As for [`matmul_rows`].
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn single_rows(&self, row: impl Fn(usize, usize) -> __m512) {
        let (rows, tokens) = (self.panel_end..self.rows.end, 0..self.n_tokens);
        // SAFETY: as the caller guarantees.
        unsafe { single_rows(rows, tokens, self.out, self.n, row) };
    }
}

/// Bytes to load into the L2 cache a few lines per step of a loop of `steps` steps:
/// packing reads 16 rows at once, a pattern the hardware prefetchers miss, and a burst of
/// prefetches would stall on the misses in flight, while spread over a panel's work they
/// overlap its multiply-adds.
struct Ahead<'a> {
    bytes: &'a [u8],
    per_step: usize,
}

impl<'a> Ahead<'a> {
    fn new(bytes: &'a [u8], steps: usize) -> Ahead<'a> {
        let per_step = bytes.len().div_ceil(64).div_ceil(steps.max(1));
        Ahead { bytes, per_step }
    }

    const NONE: Ahead<'static> = Ahead {
        bytes: &[],
        per_step: 0,
    };

    /// Prefetches the lines of step `step`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    fn step(&self, step: usize) {
        for line in self
            .bytes
            .chunks(64)
            .skip(step * self.per_step)
            .take(self.per_step)
        {
            _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Loads the first `n` (at most 64) bytes at `p` and zeroes the rest; reads nothing else.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn load_bytes(p: *const u8, n: usize) -> __m512i {
    let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    // SAFETY: the caller guarantees `n` readable bytes at `p`; masked-off bytes are not read.
    unsafe { _mm512_maskz_loadu_epi8(mask, p.cast()) }
}

/// Loads a 64-byte table of indices or constants.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn table(t: &[u8; 64]) -> __m512i {
    // SAFETY: `t` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(t.as_ptr().cast()) }
}

/// The lane-pair pattern `[0; 8] ++ [1; 8]`: one scale per 32-code block of a 64-code step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn pair_index() -> __m512i {
    _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
}

// ---------------------------------------------------------------------------------------
// 32-value block formats against Q8Rows
// ---------------------------------------------------------------------------------------

/// A 32-value block format, decoded four blocks at a time.
trait Q32 {
    /// Bytes per block.
    const BLOCK: usize;
    /// Values are `d * (q - OFFSET)`; 0 for the formats with an offset `m` instead.
    const OFFSET: u8;
    /// Values are `d * q + m`.
    const HAS_M: bool = false;
    /// Decodes the first `n` (1 to 4) of the four blocks at `p`.
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the `n` blocks are readable.
    unsafe fn decode4(p: *const u8, n: usize) -> Decoded4;
}

/// Four decoded blocks (missing ones zero) as unsigned codes, split by value: 128-bit
/// block j of `q[0]` holds values 0..16 of block j, of `q[1]` values 16..32, so that
/// lanes 4j..4j + 4 belong to block j (`vpdpbusd` lane i takes codes 4i..4i + 4); `d`
/// and `m` hold block j's numbers in those lanes.
#[derive(Clone, Copy)]
struct Decoded4 {
    q: [__m512i; 2],
    d: __m512,
    m: __m512,
}

/// The bytes `vpermt2b` and `vpermt2w` index for four `block`-byte blocks at `p`: 64 at
/// `p`, then 64 ending where the blocks end, both cut to the first `n` blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn load4(p: *const u8, block: usize, n: usize) -> (__m512i, __m512i) {
    let (len, second) = (n * block, 4 * block - 64);
    // SAFETY: the caller guarantees `n` readable blocks; only bytes below `len` are read.
    unsafe {
        (
            load_bytes(p, len.min(64)),
            load_bytes(p.add(second), len.saturating_sub(second)),
        )
    }
}

/// Index into the pair [`load4`] returns of byte `x` of the four blocks, in units of
/// `unit` bytes (1 for `vpermt2b`, 2 for `vpermt2w`).
const fn index4(block: usize, x: usize, unit: usize) -> usize {
    if x + unit <= 64 {
        x / unit
    } else {
        (64 + x - (4 * block - 64)) / unit
    }
}

/// `vpermt2b` indices bringing to byte i of 128-bit block j the byte at `field + i + skip`
/// of block j, or with `by_eight` at `field + i / 8 + skip` (the byte holding value
/// i + 8 * skip's fifth bit).
const fn split_index(block: usize, field: usize, by_eight: bool, skip: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        let within = if by_eight { (i % 16) / 8 } else { i % 16 };
        idx[i] = index4(block, (i / 16) * block + field + within + skip, 1) as u8;
        i += 1;
    }
    idx
}

/// `vpermt2w` indices spreading the f16 at `field` of block j over words 4j .. 4j + 4.
const fn split_half_index(block: usize, field: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 16 {
        idx[2 * i] = index4(block, (i / 4) * block + field, 2) as u8;
        i += 1;
    }
    idx
}

/// Byte i selects bit i % 8: with [`split_index`]'s `by_eight` bytes, value i's fifth bit.
const BIT_OF_VALUE: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        t[i] = 1 << (i % 8);
        i += 1;
    }
    t
};

/// The index tables of one nibble format for [`split4`].
struct SplitTables {
    /// The 16 code bytes of each block.
    qs: [u8; 64],
    /// The bytes of the fifth bits of values 0..16 and of 16..32 (Q5_0, Q5_1).
    qh: [[u8; 64]; 2],
    d: [u8; 64],
    m: [u8; 64],
}

impl SplitTables {
    /// Tables for blocks of `block` bytes with `d` at 0, codes at `qs`, fifth bits at `qh`
    /// and `m` at `m`.
    const fn new(block: usize, qs: usize, qh: usize, m: usize) -> SplitTables {
        SplitTables {
            qs: split_index(block, qs, false, 0),
            qh: [
                split_index(block, qh, true, 0),
                split_index(block, qh, true, 2),
            ],
            d: split_half_index(block, 0),
            m: split_half_index(block, m),
        }
    }
}

/// Four blocks of a nibble format (see [`Decoded4`]); `fifth` adds Q5's fifth bits.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn split4<F: Q32>(p: *const u8, n: usize, tables: &SplitTables, fifth: bool) -> Decoded4 {
    // SAFETY: the caller guarantees `n` readable blocks.
    let (a, b) = unsafe { load4(p, F::BLOCK, n) };
    // Byte i of block j's 16 holds value i in its low nibble and value 16 + i in its high.
    let bytes = _mm512_permutex2var_epi8(a, table(&tables.qs), b);
    let mut q = [
        _mm512_and_si512(bytes, _mm512_set1_epi8(0x0F)),
        _mm512_and_si512(_mm512_srli_epi16::<4>(bytes), _mm512_set1_epi8(0x0F)),
    ];
    if fifth {
        for (q, idx) in q.iter_mut().zip(&tables.qh) {
            let bits = _mm512_permutex2var_epi8(a, table(idx), b);
            let set = _mm512_test_epi8_mask(bits, table(&BIT_OF_VALUE));
            *q = _mm512_mask_add_epi8(*q, set, *q, _mm512_set1_epi8(16));
        }
    }
    let half = |idx| {
        _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(
            a,
            table(idx),
            b,
        )))
    };
    let m = if F::HAS_M {
        half(&tables.m)
    } else {
        _mm512_setzero_ps()
    };
    Decoded4 {
        q,
        d: half(&tables.d),
        m,
    }
}

/// A nibble format decoded by [`split4`]: blocks of `block` bytes with `d` at 0, codes at
/// `qs`, fifth bits at `qh` (when `fifth`) and `m` at `m` (when `has_m`), values stored
/// `offset` above zero.
macro_rules! nibble_format {
    ($name:ident { block: $block:expr, qs: $qs:expr, qh: $qh:expr, m: $m:expr,
      offset: $offset:expr, has_m: $has_m:expr, fifth: $fifth:expr }) => {
        struct $name;

        impl Q32 for $name {
            const BLOCK: usize = $block;
            const OFFSET: u8 = $offset;
            const HAS_M: bool = $has_m;
            #[inline]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
            unsafe fn decode4(p: *const u8, n: usize) -> Decoded4 {
                static TABLES: SplitTables = SplitTables::new($block, $qs, $qh, $m);
                // SAFETY: as the caller guarantees.
                unsafe { split4::<Self>(p, n, &TABLES, $fifth) }
            }
        }
    };
}

nibble_format!(Q4_0 {
    block: BlockQ4_0::BLOCK_BYTES,
    qs: offset_of!(BlockQ4_0, qs),
    qh: 0,
    m: 0,
    offset: 8,
    has_m: false,
    fifth: false
});
nibble_format!(Q4_1 {
    block: BlockQ4_1::BLOCK_BYTES,
    qs: offset_of!(BlockQ4_1, qs),
    qh: 0,
    m: offset_of!(BlockQ4_1, m),
    offset: 0,
    has_m: true,
    fifth: false
});
nibble_format!(Q5_0 {
    block: BlockQ5_0::BLOCK_BYTES,
    qs: offset_of!(BlockQ5_0, qs),
    qh: offset_of!(BlockQ5_0, qh),
    m: 0,
    offset: 16,
    has_m: false,
    fifth: true
});
nibble_format!(Q5_1 {
    block: BlockQ5_1::BLOCK_BYTES,
    qs: offset_of!(BlockQ5_1, qs),
    qh: offset_of!(BlockQ5_1, qh),
    m: offset_of!(BlockQ5_1, m),
    offset: 0,
    has_m: true,
    fifth: true
});

struct Q8_0;

/// `vpermt2b` indices gathering values 0..16 of four Q8_0 blocks (block j's at byte
/// 34j + 2) from their first 128 bytes, and values 16..32 (at 34j + 18) from the 128
/// bytes from byte 8 on; `vpermt2w` indices spreading their `d` (at 34j) over lanes
/// 4j .. 4j + 4.
static Q8_0_LOW: [u8; 64] = q8_0_index(2);
static Q8_0_HIGH: [u8; 64] = q8_0_index(18 - 8);
static Q8_0_D: [u8; 64] = {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 16 {
        idx[2 * i] = (BlockQ8_0::BLOCK_BYTES / 2 * (i / 4)) as u8;
        i += 1;
    }
    idx
};

const fn q8_0_index(first: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        idx[i] = (BlockQ8_0::BLOCK_BYTES * (i / 16) + first + i % 16) as u8;
        i += 1;
    }
    idx
}

impl Q32 for Q8_0 {
    const BLOCK: usize = BlockQ8_0::BLOCK_BYTES;
    /// Signed codes become unsigned by flipping their top bit, i.e. adding 128.
    const OFFSET: u8 = 128;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn decode4(p: *const u8, n: usize) -> Decoded4 {
        let len = n * Self::BLOCK;
        // SAFETY: the caller guarantees `n` readable blocks; only bytes below `len` are read.
        let [a, b, c, d] =
            [0, 64, 8, 72].map(|at| unsafe { load_bytes(p.add(at), len.saturating_sub(at)) });
        let flip = _mm512_set1_epi8(-128);
        let low = _mm512_xor_si512(_mm512_permutex2var_epi8(a, table(&Q8_0_LOW), b), flip);
        let high = _mm512_xor_si512(_mm512_permutex2var_epi8(c, table(&Q8_0_HIGH), d), flip);
        let scales = _mm512_permutex2var_epi16(a, table(&Q8_0_D), b);
        Decoded4 {
            q: [low, high],
            d: _mm512_cvtph_ps(_mm512_castsi512_si256(scales)),
            m: _mm512_setzero_ps(),
        }
    }
}

/// One token's activations for one four-block step of the one-token kernel, split by
/// value as [`Decoded4`] splits codes.
#[derive(Clone, Copy)]
struct Q8Step {
    a: [__m512i; 2],
    /// Scale of each lane's block.
    d: __m512,
    /// `-OFFSET * (sum of the lane's codes)`: the integer sum's starting value.
    corr: __m512i,
    /// The lane's block's `s` over 4 (a block's 4 lanes add up to `m * s`).
    s: __m512,
}

/// `vpermt2b` indices splitting four blocks of activation codes (128 bytes) by value:
/// values 0..16 of each, and 16..32 (see [`Decoded4`]).
static ACT_LOW: [u8; 64] = split_index(32, 0, false, 0);
static ACT_HIGH: [u8; 64] = split_index(32, 16, false, 0);

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

    /// Token `t`'s activations for step `step` (blocks 4 * step .. 4 * step + 4).
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; token t exists.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn token(&self, t: usize, step: usize) -> Q8Step {
        let (cols, blocks) = (self.acts.cols(), self.acts.cols() / 32);
        let n = (blocks - 4 * step).min(4);
        let block = t * blocks + 4 * step;
        let mask = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: the step's `n` blocks are inside token t's row.
        let (first, second, d, s) = unsafe {
            let codes = self
                .acts
                .codes
                .as_ptr()
                .add(t * cols + 128 * step)
                .cast::<u8>();
            (
                load_bytes(codes, (32 * n).min(64)),
                load_bytes(codes.add(64), (32 * n).saturating_sub(64)),
                _mm512_maskz_loadu_ps(mask, self.acts.d.as_ptr().add(block)),
                _mm512_maskz_loadu_ps(mask, self.acts.s.as_ptr().add(block)),
            )
        };
        let a = [
            _mm512_permutex2var_epi8(first, table(&ACT_LOW), second),
            _mm512_permutex2var_epi8(first, table(&ACT_HIGH), second),
        ];
        let (offset, zero) = (_mm512_set1_epi8(F::OFFSET as i8), _mm512_setzero_si512());
        let sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, offset, a[0]), offset, a[1]);
        let quads = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        Q8Step {
            a,
            d: _mm512_permutexvar_ps(quads, d),
            corr: _mm512_sub_epi32(zero, sums),
            s: _mm512_mul_ps(_mm512_permutexvar_ps(quads, s), _mm512_set1_ps(0.25)),
        }
    }

    /// Writes `out[t * n + r]` for rows `rows` and tokens `tokens`, one token at a time:
    /// its activations are arranged once, then each row is read as one sequential stream.
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the rows and tokens exist and this thread owns
    /// the rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn rows(&self, rows: Range<usize>, tokens: Range<usize>, out: SharedOut, n: usize) {
        let blocks = self.acts.cols() / 32;
        let steps = blocks.div_ceil(4);
        TOKEN.with_borrow_mut(|token| {
            token.clear();
            for t in tokens.clone() {
                for step in 0..steps {
                    // SAFETY: token t exists.
                    token.push(unsafe { self.token(t, step) });
                }
            }
            let step = |acc: __m512, w: Decoded4, a: &Q8Step| {
                let dot = _mm512_dpbusd_epi32(a.corr, w.q[0], a.a[0]);
                let dot = _mm512_dpbusd_epi32(dot, w.q[1], a.a[1]);
                let scale = _mm512_mul_ps(w.d, a.d);
                let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc);
                if F::HAS_M {
                    _mm512_fmadd_ps(w.m, a.s, acc)
                } else {
                    acc
                }
            };
            let first = tokens.start;
            let row = |r: usize, t: usize| {
                let row = self.w.row(r);
                let (full, tail) = token[(t - first) * steps..][..steps].split_at(blocks / 4);
                let mut acc = _mm512_setzero_ps();
                // Whole steps first: their loads need no masks worked out.
                for (s, a) in full.iter().enumerate() {
                    // SAFETY: the step's blocks are inside the row.
                    acc = step(acc, unsafe { F::decode4(row.add(4 * s * F::BLOCK), 4) }, a);
                }
                if let Some(a) = tail.first() {
                    let s = full.len();
                    // SAFETY: as above, for the row's last `blocks % 4` blocks.
                    acc = step(
                        acc,
                        unsafe { F::decode4(row.add(4 * s * F::BLOCK), blocks % 4) },
                        a,
                    );
                }
                acc
            };
            // SAFETY: as the caller guarantees.
            unsafe { single_rows(rows, tokens, out, n, row) };
        });
    }
}

thread_local! {
        /// The tokens' arranged activations (see `Q32Tile::rows`), kept between matmuls.
    static TOKEN: std::cell::RefCell<Vec<Q8Step>> = const { std::cell::RefCell::new(Vec::new()) };
}

// ---------------------------------------------------------------------------------------
// K-quants against Q8_K
// ---------------------------------------------------------------------------------------

/// A K-quant format: 256 values in four 64-code steps, with one scale per sub-block and
/// a per-16-value term subtracted against the activations' 16-value sums.
trait QK {
    /// Bytes per block.
    const BLOCK: usize;
    /// The unsigned codes of step `s` (values 64s .. 64s + 64) of the block at `p`.
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the block is readable.
    unsafe fn codes(p: *const u8, s: usize) -> __m512i;
    /// Decodes the block at `p`.
    ///
    /// # Safety
    /// As for [`QK::codes`].
    unsafe fn decode(p: *const u8) -> DecodedK;
    /// Scale and min weight of panel group `g` of the block at `p` (see `KPack`).
    ///
    /// # Safety
    /// As for [`QK::codes`].
    unsafe fn group(p: *const u8, g: usize) -> (f32, f32);
}

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { p.cast::<i16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits)))
}

/// A decoded K-quant block: unsigned codes and a scale per lane for each step, and the
/// weight of each 16-value activation sum to subtract (both with the block's `d` or
/// `dmin` applied; the activations' scale is applied per token).
struct DecodedK {
    q: [__m512i; 4],
    scale: [__m512; 4],
    mins: __m512,
}

/// Spreads the scales of 32-value sub-blocks (lanes 0..8 of `v`) over a step's lanes:
/// step s covers sub-blocks 2s (lanes 0..8) and 2s + 1 (lanes 8..16).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn spread_32(v: __m512, step: i32) -> __m512 {
    let (a, b) = (2 * step, 2 * step + 1);
    _mm512_permutexvar_ps(
        _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a),
        v,
    )
}

/// As [`spread_32`] for the 16 scales of 16-value sub-blocks: step s covers 4s .. 4s + 4.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn spread_16(v: __m512, step: i32) -> __m512 {
    let g = 4 * step;
    let (a, b, c, d) = (g, g + 1, g + 2, g + 3);
    _mm512_permutexvar_ps(
        _mm512_set_epi32(d, d, d, d, c, c, c, c, b, b, b, b, a, a, a, a),
        v,
    )
}

/// The 6-bit scales and mins of a Q4_K/Q5_K block (see `scale_min_k4`), as bytes
/// `[scale 0..8, min 0..8]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn scales_and_mins_k4(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 12 readable bytes.
    let [u0, u1, u2] = unsafe { p.cast::<[u32; 3]>().read_unaligned() }.map(u32::from_le);
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const TOP2: u32 = 0x0303_0303;
    let scales_lo = u0 & LOW6;
    let mins_lo = u1 & LOW6;
    let scales_hi = (u2 & LOW4) | (((u0 >> 6) & TOP2) << 4);
    let mins_hi = ((u2 >> 4) & LOW4) | (((u1 >> 6) & TOP2) << 4);
    _mm_set_epi32(
        mins_hi as i32,
        mins_lo as i32,
        scales_hi as i32,
        scales_lo as i32,
    )
}

/// The codes of step `s` of a Q4_K or Q5_K block: 32 code bytes at `qs` hold sub-block
/// 2s in their low nibbles and 2s + 1 in their high; `high` adds Q5_K's fifth bits (byte l
/// of its 32 holds bit b for value l of sub-block b).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn k4_codes(qs: *const u8, high: Option<*const u8>, s: usize) -> __m512i {
    // SAFETY: the caller guarantees 128 code bytes at `qs` and 32 at `high`.
    unsafe {
        let v = _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.add(32 * s).cast()));
        let v = _mm512_mask_srli_epi16::<4>(v, 0xFFFF_0000, v);
        let q = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
        match high {
            Some(high) => {
                let high = _mm512_broadcast_i64x4(_mm256_loadu_si256(high.cast()));
                let bit_lo = _mm512_set1_epi8(1 << (2 * s));
                let bit_hi = _mm512_set1_epi8((1u8 << (2 * s + 1)) as i8);
                let set =
                    _mm512_test_epi8_mask(high, _mm512_mask_blend_epi64(0xF0, bit_lo, bit_hi));
                _mm512_mask_add_epi8(q, set, q, _mm512_set1_epi8(16))
            }
            None => q,
        }
    }
}

/// Scale and min weight of sub-block `g` of a Q4_K or Q5_K block.
///
/// # Safety
/// The block at `p` is readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn k4_group(p: *const u8, g: usize) -> (f32, f32) {
    // SAFETY: d, dmin and 12 scale bytes start the block.
    unsafe {
        let (sc, m) = scale_min_k4(g, &*p.add(4).cast::<[u8; 12]>());
        (f16_at(p) * sc as f32, f16_at(p.add(2)) * m as f32)
    }
}

/// Scales, mins and codes of a Q4_K or Q5_K block (see [`k4_codes`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn decode_k4(p: *const u8, qs: usize, high: Option<*const u8>) -> DecodedK {
    // SAFETY: the caller guarantees the block: d and dmin at 0, scales at 4, codes at
    // `qs` (128 bytes), fifth bits at `high` (32 bytes).
    unsafe {
        let d_dmin = _mm_cvtph_ps(_mm_set1_epi32(p.cast::<i32>().read_unaligned()));
        // [d; 8] ++ [dmin; 8]: the scales come first, then the mins.
        let factors = _mm512_permutexvar_ps(pair_index(), _mm512_castps128_ps512(d_dmin));
        let sm = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(scales_and_mins_k4(p.add(4)))),
            factors,
        );
        // A sub-block's min applies to both of its 16-value sums: lane g takes min g / 2.
        let mins = _mm512_permutexvar_ps(
            _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8),
            sm,
        );
        let mut q = [_mm512_setzero_si512(); 4];
        let mut scale = [_mm512_setzero_ps(); 4];
        for (s, (q, scale)) in q.iter_mut().zip(&mut scale).enumerate() {
            *q = k4_codes(p.add(qs), high, s);
            *scale = spread_32(sm, s as i32);
        }
        DecodedK { q, scale, mins }
    }
}

struct Q4K;
struct Q5K;
struct Q6K;

impl QK for Q4K {
    const BLOCK: usize = BlockQ4K::BLOCK_BYTES;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn codes(p: *const u8, s: usize) -> __m512i {
        // SAFETY: the caller guarantees the block; Q4_K's codes are at 16.
        unsafe { k4_codes(p.add(16), None, s) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn group(p: *const u8, g: usize) -> (f32, f32) {
        // SAFETY: as the caller guarantees.
        unsafe { k4_group(p, g) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn decode(p: *const u8) -> DecodedK {
        // SAFETY: the caller guarantees the block; Q4_K's codes are at 16.
        unsafe { decode_k4(p, 16, None) }
    }
}

impl QK for Q5K {
    const BLOCK: usize = BlockQ5K::BLOCK_BYTES;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn codes(p: *const u8, s: usize) -> __m512i {
        // SAFETY: the caller guarantees the block; fifth bits at 16, codes at 48.
        unsafe { k4_codes(p.add(48), Some(p.add(16)), s) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn group(p: *const u8, g: usize) -> (f32, f32) {
        // SAFETY: as the caller guarantees.
        unsafe { k4_group(p, g) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn decode(p: *const u8) -> DecodedK {
        // SAFETY: the caller guarantees the block; Q5_K's fifth bits are at 16, codes at 48.
        unsafe { decode_k4(p, 48, Some(p.add(16))) }
    }
}

impl QK for Q6K {
    const BLOCK: usize = BlockQ6K::BLOCK_BYTES;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn codes(p: *const u8, s: usize) -> __m512i {
        // Half h = s / 2 holds values 128h .. 128h + 128. Byte l of its 64 `ql` bytes (at
        // 64h) holds value l in its low nibble and value l + 64 in its high nibble; byte l
        // of its 32 `qh` bytes (at 128 + 32h) holds the top two bits of values l, l + 32,
        // l + 64 and l + 96, in that order from bit 0.
        let half = s / 2;
        // SAFETY: the caller guarantees the block.
        let (ql, qh) = unsafe {
            (
                _mm512_loadu_si512(p.add(64 * half).cast()),
                _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(128 + 32 * half).cast())),
            )
        };
        // Shift counts per 16-bit word: one for the lower 32 bytes, one for the upper.
        let counts = |lo: i16, hi: i16| {
            _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi16(lo), _mm512_set1_epi16(hi))
        };
        let (low, top) = if s.is_multiple_of(2) {
            // Values l and l + 32: bits 0-1 and 2-3 move to 4-5.
            (ql, _mm512_sllv_epi16(qh, counts(4, 2)))
        } else {
            // Values l + 64 and l + 96: bits 4-5 stay, bits 6-7 move to 4-5.
            (
                _mm512_srli_epi16::<4>(ql),
                _mm512_srlv_epi16(qh, counts(0, 2)),
            )
        };
        _mm512_or_si512(
            _mm512_and_si512(low, _mm512_set1_epi8(0x0F)),
            _mm512_and_si512(top, _mm512_set1_epi8(0x30)),
        )
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn group(p: *const u8, g: usize) -> (f32, f32) {
        // SAFETY: the caller guarantees the block: 16 signed scales at 192, d at 208. The
        // offset of the codes is taken back in the integer sums: no min weight.
        unsafe {
            (
                f16_at(p.add(208)) * *p.add(192 + g).cast::<i8>() as f32,
                0.0,
            )
        }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn decode(p: *const u8) -> DecodedK {
        // SAFETY: the caller guarantees the block: 16 signed scales at 192, d at 208.
        unsafe {
            let d = _mm512_set1_ps(f16_at(p.add(208)));
            let scales =
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(192).cast())));
            let scales = _mm512_mul_ps(scales, d);
            // Codes are q - 32 with q unsigned: take 32 * scale * (16-value sum) back.
            let mins = _mm512_mul_ps(scales, _mm512_set1_ps(32.0));
            let q = [0, 1, 2, 3].map(|s| Self::codes(p, s));
            let scale = [0, 1, 2, 3].map(|s| spread_16(scales, s));
            DecodedK { q, scale, mins }
        }
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

impl<F: QK> KTile<'_, F> {
    /// Row `r` times token `t`, summed over lanes by the caller.
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the row and token exist.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn row(&self, r: usize, t: usize) -> __m512 {
        let mut acc = _mm512_setzero_ps();
        let row = self.w.row(r);
        for (b, a) in self.acts[t * self.blocks..(t + 1) * self.blocks]
            .iter()
            .enumerate()
        {
            // SAFETY: block b is inside the row; `bsums` is 16 i16s.
            let (w, bsums) = unsafe {
                (
                    F::decode(row.add(b * F::BLOCK)),
                    _mm256_loadu_si256(a.bsums.as_ptr().cast()),
                )
            };
            let d = _mm512_set1_ps(a.d);
            let sums = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(bsums)), d);
            let mut block = _mm512_setzero_ps();
            for (s, (&q, &scale)) in w.q.iter().zip(&w.scale).enumerate() {
                // SAFETY: step s's 64 codes are inside `qs`.
                let codes = unsafe { _mm512_loadu_si512(a.qs.as_ptr().add(64 * s).cast()) };
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, codes);
                block = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, block);
            }
            acc = _mm512_fmadd_ps(block, d, acc);
            acc = _mm512_fnmadd_ps(w.mins, sums, acc);
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------
// Float weights against f32 activations
// ---------------------------------------------------------------------------------------

/// A float weight type, read 16 values at a time.
trait Float {
    /// Bytes per value.
    const SIZE: usize;
    /// Loads the values `mask` selects of 16 at `p` as f32, zero elsewhere.
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the selected values are readable.
    unsafe fn load(p: *const u8, mask: __mmask16) -> __m512;
}

struct F32;
struct F16;
struct BF16;

impl Float for F32 {
    const SIZE: usize = 4;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn load(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: as the caller guarantees.
        unsafe { _mm512_maskz_loadu_ps(mask, p.cast()) }
    }
}

impl Float for F16 {
    const SIZE: usize = 2;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn load(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: as the caller guarantees.
        _mm512_cvtph_ps(unsafe { _mm256_maskz_loadu_epi16(mask, p.cast()) })
    }
}

impl Float for BF16 {
    const SIZE: usize = 2;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn load(p: *const u8, mask: __mmask16) -> __m512 {
        // SAFETY: as the caller guarantees.
        let v = unsafe { _mm256_maskz_loadu_epi16(mask, p.cast()) };
        // A bf16 is the top half of an f32.
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
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

impl<F: Float> FloatTile<'_, F> {
    /// Row `r` times token `t`, summed over lanes by the caller.
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the row and token exist.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn row(&self, r: usize, t: usize) -> __m512 {
        let (row, x) = (self.w.row(r), &self.x[t * self.cols..(t + 1) * self.cols]);
        // Two accumulators: a multiply-add's latency spans two of them.
        let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let full = self.cols / 32 * 32;
        for i in (0..full).step_by(32) {
            // SAFETY: values i..i + 32 are inside the row and inside `x`.
            unsafe {
                let (w0, w1) = (
                    F::load(row.add(i * F::SIZE), !0),
                    F::load(row.add((i + 16) * F::SIZE), !0),
                );
                even = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x.as_ptr().add(i)), even);
                odd = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x.as_ptr().add(i + 16)), odd);
            }
        }
        for i in (full..self.cols).step_by(16) {
            let mask = ((1u32 << (self.cols - i).min(16)) - 1) as __mmask16;
            // SAFETY: the masked values are inside the row and inside `x`.
            unsafe {
                let w = F::load(row.add(i * F::SIZE), mask);
                even = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i)), even);
            }
        }
        _mm512_add_ps(even, odd)
    }
}

// ---------------------------------------------------------------------------------------
// Single rows
// ---------------------------------------------------------------------------------------

/// Lane i is the sum of the lanes of `v[i]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn reduce16(v: &[__m512; 16]) -> __m512 {
    // Halve each vector's width while pairing them: after the first step vector i holds
    // 8 partial sums of each of vectors 2i and 2i + 1; after the second, 4 of each of
    // four (one per 128-bit block).
    let mut b = [_mm512_setzero_ps(); 8];
    for (i, b) in b.iter_mut().enumerate() {
        let (x, y) = (v[2 * i], v[2 * i + 1]);
        *b = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
        );
    }
    let mut c = [_mm512_setzero_ps(); 4];
    for (i, c) in c.iter_mut().enumerate() {
        let (x, y) = (b[2 * i], b[2 * i + 1]);
        *c = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
        );
    }
    // Block k of c[i] holds vector 4i + k. Sum within blocks, four vectors at a time:
    // lane 4k + i of `g` is vector 4i + k's sum.
    let e = _mm512_add_ps(
        _mm512_unpacklo_ps(c[0], c[1]),
        _mm512_unpackhi_ps(c[0], c[1]),
    );
    let f = _mm512_add_ps(
        _mm512_unpacklo_ps(c[2], c[3]),
        _mm512_unpackhi_ps(c[2], c[3]),
    );
    let g = _mm512_add_ps(
        _mm512_shuffle_ps::<0b01_00_01_00>(e, f),
        _mm512_shuffle_ps::<0b11_10_11_10>(e, f),
    );
    let order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    _mm512_permutexvar_ps(order, g)
}

/// Writes `out[t * n + r]` for rows `rows` and tokens `tokens`, each the lane sum of
/// `row(r, t)`. Rows are computed in order, each one sequential stream, 16 at a time
/// for every token (the 16 rows stay in cache meanwhile) and reduced together.
///
/// # Safety
/// The indices are inside `out` and no other thread writes them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn single_rows(
    rows: Range<usize>,
    tokens: Range<usize>,
    out: SharedOut,
    n: usize,
    row: impl Fn(usize, usize) -> __m512,
) {
    let mut r = rows.start;
    while r + 16 <= rows.end {
        for t in tokens.clone() {
            let mut acc = [_mm512_setzero_ps(); 16];
            for (i, acc) in acc.iter_mut().enumerate() {
                *acc = row(r + i, t);
            }
            // SAFETY: as the caller guarantees.
            unsafe { _mm512_storeu_ps(out.0.add(t * n + r), reduce16(&acc)) };
        }
        r += 16;
    }
    for r in r..rows.end {
        for t in tokens.clone() {
            // SAFETY: as the caller guarantees.
            unsafe { out.write(t * n + r, _mm512_reduce_add_ps(row(r, t))) };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Panels: batched matmuls on 16 rows packed together
// ---------------------------------------------------------------------------------------
//
// As a BLAS packs blocks of both matrices, a panel holds 16 weight rows interleaved so
// that lane r of every vector belongs to row r, and a token tile holds `PANEL_T` tokens'
// activations group by group: a token's product with all 16 rows then accumulates in one
// register, with no horizontal sums, and the kernel reads both from two pointers.
//
// For quantized weights each group of `4 * SUB` values (a block, or a K-quant sub-block)
// becomes `SUB` vectors of unsigned codes (lane r: four codes of row r), one of scales and
// one of min weights. `vpdpbusd` multiplies a code vector by four activation codes
// broadcast to every lane, so after `SUB` of them lane r holds row r's integer dot product
// for the group, and the float work (a conversion and two or three multiply-adds) serves
// 16 rows:
//
//     out[t][r] += (corr[t][g] + dot) * scale[r] * d[t][g] - min_weight[r] * sum[t][g]
//
// `corr` takes back the offset unsigned codes are stored with (-8 * sum(codes) for Q4_0),
// exactly; `min_weight` applies a format's float offset (Q4_1's -m, Q4_K's dmin * min)
// against `sum`, the activations' `d * sum(codes)`. A panel is packed once per matmul
// and serves every token tile.

/// Rows per panel: one per f32 lane.
pub(super) const PANEL_ROWS: usize = 16;
/// With fewer tokens, packing costs more than it saves (measured on Zen 4): quantized
/// weights pack to about their own size, float weights to f32 with a 16 x 16 transpose
/// per 256 values.
const PANEL_MIN_TOKENS: usize = 5;
const FLOAT_PANEL_MIN_TOKENS: usize = 12;

/// Whether a matmul of `n_tokens` tokens with `dtype` weights runs its rows as panels
/// (then the caller packs the activations with [`pack_tokens`]).
pub(super) fn uses_panels(dtype: DType, n_tokens: usize) -> bool {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => n_tokens >= FLOAT_PANEL_MIN_TOKENS,
        // INT8 rows run in `int8`.
        DType::Int8 => false,
        _ => n_tokens >= PANEL_MIN_TOKENS,
    }
}
/// Tokens per tile: `PANEL_T` accumulators and as many dot products in flight.
const PANEL_T: usize = 8;
/// Tokens per tile for float weights, one per lane (see [`float`]).
const FLOAT_T: usize = 16;

thread_local! {
    /// The panel each thread packs into, kept between matmuls.
    static PANEL: std::cell::RefCell<Vec<Lanes>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Bytes of one group of a token tile with `group` values per group: the tokens' codes,
/// then their `d`, `sum` (f32) and `corr` (i32), padded to whole cache lines.
const fn tile_group_bytes(group: usize) -> usize {
    (PANEL_T * (group + 12)).div_ceil(64) * 64
}

/// Tokens per tile of packed activations, and the tile's size in [`Lanes`] for a matmul
/// of `dtype` weights with `cols` columns.
pub(super) fn token_tile(dtype: DType, cols: usize) -> (usize, usize) {
    let bytes = match dtype {
        DType::F32 | DType::F16 | DType::BF16 => return (FLOAT_T, cols),
        DType::Q6K => cols / 16 * tile_group_bytes(16),
        _ => cols / 32 * tile_group_bytes(32),
    };
    (PANEL_T, bytes / 64)
}

/// The activations of a run of tokens, from the first token of a tile, as
/// [`pack_tokens`] reads them.
#[derive(Clone, Copy)]
pub(super) enum TileActs<'a> {
    F32(&'a [f32]),
    Q8(&'a Q8Out<'a>),
    Q8K(&'a [BlockQ8K]),
}

/// Packs the activations `acts` of `n_tokens` tokens for the panels into `out`: whole
/// tiles of [`PANEL_T`] tokens (tokens past `n_tokens` stay zero), group by group (see
/// [`tile_group_bytes`]); for float weights, [`FLOAT_T`] tokens per tile, column by
/// column (lane t: token t's value).
///
/// # Safety
/// The CPU has the features `has_avx512` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
pub(super) unsafe fn pack_tokens(
    dtype: DType,
    acts: TileActs,
    n_tokens: usize,
    cols: usize,
    out: &mut [Lanes],
) {
    let group = match dtype {
        DType::Q6K => 16,
        _ => 32,
    };
    if let TileActs::F32(x) = acts {
        // SAFETY: as the caller guarantees.
        return unsafe { pack_float_tokens(x, n_tokens, cols, out) };
    }
    out.fill(Lanes::ZERO);
    let tile_bytes = token_tile(dtype, cols).1 * 64;
    let bytes = lane_bytes(out);
    for t in 0..n_tokens {
        let tile = &mut bytes[t / PANEL_T * tile_bytes..][..tile_bytes];
        let lane = t % PANEL_T;
        match acts {
            TileActs::F32(_) => unreachable!("packed above"),
            TileActs::Q8(q) => {
                let offset = match dtype {
                    DType::Q4_0 => 8,
                    DType::Q5_0 => 16,
                    DType::Q8_0 => 128,
                    _ => 0,
                };
                let blocks = cols / 32;
                for (g, group_bytes) in tile.chunks_exact_mut(tile_group_bytes(32)).enumerate() {
                    let (i, codes) = (t * blocks + g, &q.codes[t * cols + 32 * g..][..32]);
                    let corr = -offset * q.sum[i];
                    put_token(group_bytes, 32, lane, codes, q.d[i], q.s[i], corr);
                }
            }
            TileActs::Q8K(a) => {
                let blocks = &a[t * cols / QK_K..(t + 1) * cols / QK_K];
                let groups = tile.chunks_exact_mut(tile_group_bytes(group));
                for (g, group_bytes) in groups.enumerate() {
                    let (b, j) = (&blocks[g * group / QK_K], g % (QK_K / group));
                    let codes = &b.qs[j * group..][..group];
                    if group == 16 {
                        // Q6_K: codes stored 32 higher, taken back exactly.
                        let corr = -32 * b.bsums[j] as i32;
                        put_token(group_bytes, 16, lane, codes, b.d, 0.0, corr);
                    } else {
                        let sum = b.bsums[2 * j] as i32 + b.bsums[2 * j + 1] as i32;
                        put_token(group_bytes, 32, lane, codes, b.d, b.d * sum as f32, 0);
                    }
                }
            }
        }
    }
}

/// [`pack_tokens`] for float weights: each 16 tokens' 16 columns transposed at once.
///
/// # Safety
/// The CPU has the features `has_avx512` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn pack_float_tokens(x: &[f32], n_tokens: usize, cols: usize, out: &mut [Lanes]) {
    for (tile, dst) in out.chunks_exact_mut(cols).enumerate() {
        let t0 = tile * FLOAT_T;
        let tokens = &x[t0 * cols..(t0 + FLOAT_T).min(n_tokens) * cols];
        for c0 in (0..cols).step_by(16) {
            let n = (cols - c0).min(16);
            let mask = ((1u32 << n) - 1) as __mmask16;
            // Row t: token t0 + t's columns c0.. (zero past the last token).
            let mut rows = [_mm512_setzero_si512(); 16];
            for (row, token) in rows.iter_mut().zip(tokens.chunks_exact(cols)) {
                // SAFETY: the masked values are inside the token's row.
                *row = unsafe { _mm512_maskz_loadu_epi32(mask, token[c0..].as_ptr().cast()) };
            }
            for (column, &v) in dst[c0..c0 + n].iter_mut().zip(&transpose(rows)) {
                // SAFETY: `Lanes` is 64 aligned bytes.
                unsafe { _mm512_store_si512(column.0.as_mut_ptr().cast(), v) };
            }
        }
    }
}

/// Writes token `lane` of one group of a token tile.
fn put_token(
    bytes: &mut [u8],
    group: usize,
    lane: usize,
    codes: &[i8],
    d: f32,
    sum: f32,
    corr: i32,
) {
    for (b, &c) in bytes[lane * group..][..group].iter_mut().zip(codes) {
        *b = c as u8;
    }
    let numbers = PANEL_T * group;
    for (k, v) in [d.to_le_bytes(), sum.to_le_bytes(), corr.to_le_bytes()]
        .iter()
        .enumerate()
    {
        let at = numbers + 4 * (k * PANEL_T + lane);
        bytes[at..at + 4].copy_from_slice(v);
    }
}

/// Packs quantized weight rows into panels with `SUB` code vectors per group.
trait Pack<const SUB: usize> {
    /// Whether the format has min weights; without, the codes' offset is taken back in
    /// the integer sums (`corr`) and the min weights are left zero.
    const MINS: bool;
    /// Packs rows `r0..r0 + 16` into `panel` (groups of `SUB + 2` vectors).
    ///
    /// # Safety
    /// The CPU has the AVX-512 features; the rows exist; `panel` holds every group.
    unsafe fn pack(&self, r0: usize, panel: &mut [Lanes]);
}

/// Transposes 16 rows of 16 dwords: lane r of output i is lane i of row r.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn transpose(rows: [__m512i; 16]) -> [__m512i; 16] {
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
    }
    // Within each 128-bit block k, u[4i + j] now holds lane 4k + j of rows 4i .. 4i + 4.
    let mut u = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        let (a, b) = (t[4 * i], t[4 * i + 2]);
        let (c, d) = (t[4 * i + 1], t[4 * i + 3]);
        u[4 * i] = _mm512_unpacklo_epi64(a, b);
        u[4 * i + 1] = _mm512_unpackhi_epi64(a, b);
        u[4 * i + 2] = _mm512_unpacklo_epi64(c, d);
        u[4 * i + 3] = _mm512_unpackhi_epi64(c, d);
    }
    // Gather block k of u[j], u[4 + j], u[8 + j], u[12 + j] into output 4k + j.
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let low = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[j], u[4 + j]);
        let high = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[j], u[4 + j]);
        let low2 = _mm512_shuffle_i32x4::<0b01_00_01_00>(u[8 + j], u[12 + j]);
        let high2 = _mm512_shuffle_i32x4::<0b11_10_11_10>(u[8 + j], u[12 + j]);
        out[j] = _mm512_shuffle_i32x4::<0b10_00_10_00>(low, low2);
        out[4 + j] = _mm512_shuffle_i32x4::<0b11_01_11_01>(low, low2);
        out[8 + j] = _mm512_shuffle_i32x4::<0b10_00_10_00>(high, high2);
        out[12 + j] = _mm512_shuffle_i32x4::<0b11_01_11_01>(high, high2);
    }
    out
}

/// Stores 16 code vectors (from [`transpose`]: four codes of each row) as groups `g`,
/// `g + 1`, .. of `SUB` vectors.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn store_codes<const SUB: usize>(panel: &mut [Lanes], g: usize, codes: &[__m512i; 16]) {
    for (i, &v) in codes.iter().enumerate() {
        let lanes = &mut panel[(g + i / SUB) * (SUB + 2) + i % SUB];
        // SAFETY: `Lanes` is 64 aligned bytes.
        unsafe { _mm512_store_si512(lanes.0.as_mut_ptr().cast(), v) };
    }
}

/// Writes group `g`'s scale and min weight for lane `lane`.
fn put_scales<const SUB: usize>(
    panel: &mut [Lanes],
    g: usize,
    lane: usize,
    scale: f32,
    min_weight: f32,
) {
    panel[g * (SUB + 2) + SUB].0[lane] = scale.to_bits();
    panel[g * (SUB + 2) + SUB + 1].0[lane] = min_weight.to_bits();
}

/// 32-value block formats, packed two blocks (one decoded step) at a time.
struct Q32Pack<'a, F> {
    w: Rows<'a>,
    cols: usize,
    format: PhantomData<F>,
}

impl<F: Q32> Pack<8> for Q32Pack<'_, F> {
    const MINS: bool = F::HAS_M;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn pack(&self, r0: usize, panel: &mut [Lanes]) {
        let blocks = self.cols / 32;
        let zero = _mm512_setzero_si512();
        for step in 0..blocks.div_ceil(4) {
            let n = (blocks - 4 * step).min(4);
            // Per row: codes (two halves), scales and offsets.
            let (mut q, mut d, mut m) = ([[zero; 16]; 2], [zero; 16], [zero; 16]);
            for lane in 0..PANEL_ROWS {
                // SAFETY: the step's `n` blocks are inside row r0 + lane.
                let w = unsafe { F::decode4(self.w.row(r0 + lane).add(4 * step * F::BLOCK), n) };
                q[0][lane] = w.q[0];
                q[1][lane] = w.q[1];
                d[lane] = _mm512_castps_si512(w.d);
                m[lane] = _mm512_castps_si512(w.m);
            }
            // After a transpose, vector k holds lane k of every row: the four codes
            // 4 (k % 4) .. of block k / 4 (in the second half, 16 + 4 (k % 4) ..), and block
            // k / 4's numbers when k is a multiple of 4 (see `Decoded4`).
            let groups = &mut panel[4 * step * (8 + 2)..][..n * (8 + 2)];
            for (half, q) in q.into_iter().enumerate() {
                for (k, v) in transpose(q).into_iter().take(4 * n).enumerate() {
                    let lanes = &mut groups[k / 4 * (8 + 2) + 4 * half + k % 4];
                    // SAFETY: `Lanes` is 64 aligned bytes.
                    unsafe { _mm512_store_si512(lanes.0.as_mut_ptr().cast(), v) };
                }
            }
            let (d, m) = (
                transpose(d),
                if F::HAS_M { transpose(m) } else { [zero; 16] },
            );
            for (block, group) in groups.chunks_exact_mut(8 + 2).enumerate() {
                // Q4_1's and Q5_1's offset `m` is subtracted as `-m * sum`.
                let min_weight = _mm512_xor_si512(m[4 * block], _mm512_set1_epi32(i32::MIN));
                // SAFETY: `Lanes` is 64 aligned bytes.
                unsafe {
                    _mm512_store_si512(group[8].0.as_mut_ptr().cast(), d[4 * block]);
                    _mm512_store_si512(group[9].0.as_mut_ptr().cast(), min_weight);
                }
            }
        }
    }
}

/// K-quants, packed one block (four decoded steps) at a time: groups of 32 values for
/// Q4_K and Q5_K (`SUB` = 8), of 16 for Q6_K (`SUB` = 4).
struct KPack<'a, F> {
    w: Rows<'a>,
    blocks: usize,
    format: PhantomData<F>,
}

impl<F: QK, const SUB: usize> Pack<SUB> for KPack<'_, F> {
    /// Q6_K's offset of 32 is taken back in the integer sums; Q4_K's and Q5_K's mins
    /// have their own scale.
    const MINS: bool = SUB == 8;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn pack(&self, r0: usize, panel: &mut [Lanes]) {
        // Groups per block and per 64-code step.
        let (per_block, per_step) = (QK_K / (4 * SUB), 16 / SUB);
        for b in 0..self.blocks {
            for s in 0..4 {
                let mut q = [_mm512_setzero_si512(); 16];
                for (lane, q) in q.iter_mut().enumerate() {
                    // SAFETY: block b is inside row r0 + lane.
                    *q = unsafe { F::codes(self.w.row(r0 + lane).add(b * F::BLOCK), s) };
                }
                store_codes::<SUB>(panel, b * per_block + s * per_step, &transpose(q));
            }
            for lane in 0..PANEL_ROWS {
                for g in 0..per_block {
                    // SAFETY: block b is inside the row.
                    let (scale, min) =
                        unsafe { F::group(self.w.row(r0 + lane).add(b * F::BLOCK), g) };
                    put_scales::<SUB>(panel, b * per_block + g, lane, scale, min);
                }
            }
        }
    }
}

/// Runs the panel rows of `job`: packs each 16 rows with `pack` and multiplies the panel
/// with every token tile.
///
/// # Safety
/// As for [`matmul_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn panels<P: Pack<SUB>, const SUB: usize>(job: &Job, pack: &P) {
    let groups = job.cols / (4 * SUB);
    let tile_lanes = groups * tile_group_bytes(4 * SUB) / 64;
    PANEL.with_borrow_mut(|panel| {
        panel.resize(groups * (SUB + 2), Lanes::ZERO);
        for r0 in (job.rows.start..job.panel_end).step_by(PANEL_ROWS) {
            // SAFETY: the panel holds every group of a row; rows r0.. exist.
            unsafe { pack.pack(r0, panel) };
            let next = job.panel_bytes(r0 + PANEL_ROWS);
            for (i, (tile, t0)) in job
                .tiles
                .chunks_exact(tile_lanes)
                .zip((0..job.n_tokens).step_by(PANEL_T))
                .enumerate()
            {
                let ahead = if i == 0 {
                    Ahead::new(next, groups)
                } else {
                    Ahead::NONE
                };
                // SAFETY: rows r0.. are this thread's; `tile` holds tokens t0...
                unsafe { panel_tile::<P, SUB>(panel, tile, &ahead, job, r0, t0) };
            }
        }
    });
}

/// Writes a panel's 16 rows of the tokens of one tile (those below `n_tokens`).
///
/// # Safety
/// As for [`panels`]; `tile` holds tokens `t0..`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn panel_tile<P: Pack<SUB>, const SUB: usize>(
    panel: &[Lanes],
    tile: &[Lanes],
    ahead: &Ahead,
    job: &Job,
    r0: usize,
    t0: usize,
) {
    let group = 4 * SUB;
    let group_lanes = tile_group_bytes(group) / 64;
    let mut acc = [_mm512_setzero_ps(); PANEL_T];
    for (g, (w, tokens)) in panel
        .chunks_exact(SUB + 2)
        .zip(tile.chunks_exact(group_lanes))
        .enumerate()
    {
        ahead.step(g);
        let codes = tokens.as_ptr().cast::<u8>();
        // Number k (0: d, 1: sum, 2: corr) of token t, after the codes (see
        // `tile_group_bytes`).
        // SAFETY: the group's bytes hold these.
        let number = |k: usize, t: usize| unsafe {
            codes
                .add(PANEL_T * group + 4 * (k * PANEL_T + t))
                .cast::<[u8; 4]>()
                .read()
        };
        let mut dot = [_mm512_setzero_si512(); PANEL_T];
        for (t, dot) in dot.iter_mut().enumerate() {
            *dot = _mm512_set1_epi32(i32::from_le_bytes(number(2, t)));
        }
        for (s, w) in w[..SUB].iter().enumerate() {
            // SAFETY: `Lanes` is 64 aligned bytes.
            let w = unsafe { _mm512_load_si512(w.0.as_ptr().cast()) };
            for (t, dot) in dot.iter_mut().enumerate() {
                // SAFETY: token t's `group` codes lie at `t * group`.
                let a = unsafe { codes.add(t * group + 4 * s).cast::<i32>().read_unaligned() };
                *dot = _mm512_dpbusd_epi32(*dot, w, _mm512_set1_epi32(a));
            }
        }
        // SAFETY: as above.
        let (scale, min_weight) = unsafe {
            (
                _mm512_load_ps(w[SUB].0.as_ptr().cast()),
                _mm512_load_ps(w[SUB + 1].0.as_ptr().cast()),
            )
        };
        for (t, (acc, &dot)) in acc.iter_mut().zip(&dot).enumerate() {
            let scale = _mm512_mul_ps(scale, _mm512_set1_ps(f32::from_le_bytes(number(0, t))));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, *acc);
            if P::MINS {
                let sum = _mm512_set1_ps(f32::from_le_bytes(number(1, t)));
                *acc = _mm512_fnmadd_ps(min_weight, sum, *acc);
            }
        }
    }
    // SAFETY: as the caller guarantees.
    unsafe { store_tile(&acc, job, r0, t0) };
}

/// Writes the tokens below `n_tokens` of a tile's accumulators (16 rows from `r0`).
///
/// # Safety
/// This thread owns rows `r0..r0 + 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn store_tile(acc: &[__m512; PANEL_T], job: &Job, r0: usize, t0: usize) {
    for (t, &acc) in acc.iter().enumerate().take(job.n_tokens - t0) {
        // SAFETY: as the caller guarantees; the index is inside `out`.
        unsafe { _mm512_storeu_ps(job.out.0.add((t0 + t) * job.n + r0), acc) };
    }
}

// ---------------------------------------------------------------------------------------
// Interleaved weights
// ---------------------------------------------------------------------------------------
//
// A chunk of interleaved weights (16 rows, one block) is already a panel group in
// compact form: its code vectors hold four code bytes of each row per lane, which only
// need their nibbles split (or, for Q8_0, their sign flipped) to be the panel's unsigned
// code vectors. With one token, the chunk is multiplied as it is loaded: per block, eight
// `vpdpbusd` against the token's codes broadcast, and one multiply-add for 16 rows.

/// A block format [`crate::quant::interleave`] lays out.
trait Interleaved: Q32 {
    /// Codes are nibbles (else bytes).
    const NIBBLES: bool;
}

impl Interleaved for Q4_0 {
    const NIBBLES: bool = true;
}

impl Interleaved for Q4_1 {
    const NIBBLES: bool = true;
}

impl Interleaved for Q8_0 {
    const NIBBLES: bool = false;
}

/// A chunk decoded: code vector k holds the unsigned codes of values 4k .. 4k + 4 of each
/// row (stored `OFFSET` above zero), with each row's `d` and `m` (zero without).
struct Chunk {
    q: [__m512i; 8],
    d: __m512,
    m: __m512,
}

/// Decodes the chunk at `p`.
///
/// # Safety
/// The CPU has the AVX-512 features; the chunk (16 blocks' bytes) is readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn chunk<F: Interleaved>(p: *const u8) -> Chunk {
    let mut q = [_mm512_setzero_si512(); 8];
    // SAFETY: the caller's promise: the chunk is readable; its codes fill the 4 (nibbles)
    // or 8 vectors of 64 bytes read here, from its start.
    let load = |v: usize| unsafe { _mm512_loadu_si512(p.add(64 * v).cast()) };
    let code_bytes = if F::NIBBLES {
        let low = _mm512_set1_epi8(0x0F);
        for v in 0..4 {
            let bytes = load(v);
            q[v] = _mm512_and_si512(bytes, low);
            q[v + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(bytes), low);
        }
        16
    } else {
        for (v, q) in q.iter_mut().enumerate() {
            *q = _mm512_xor_si512(load(v), _mm512_set1_epi8(-128));
        }
        32
    };
    let fields = p.wrapping_add(PANEL_ROWS * code_bytes);
    // SAFETY: the caller's promise: the 16 rows' f16 `d` (then `m`) follow the codes
    // inside the chunk.
    let half = |f: usize| unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(fields.add(32 * f).cast())) };
    Chunk {
        q,
        d: half(0),
        m: if F::HAS_M {
            half(1)
        } else {
            _mm512_setzero_ps()
        },
    }
}

/// Interleaved rows as panels, without packing: each chunk is unpacked as it is used.
struct InterleavedPack<'a, F> {
    w: Rows<'a>,
    blocks: usize,
    format: PhantomData<F>,
}

impl<F: Interleaved> Pack<8> for InterleavedPack<'_, F> {
    const MINS: bool = F::HAS_M;
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
    unsafe fn pack(&self, r0: usize, panel: &mut [Lanes]) {
        let first = self.w.row(r0);
        for (b, group) in panel.chunks_exact_mut(8 + 2).take(self.blocks).enumerate() {
            // SAFETY: panel r0 / 16's chunks follow each other from its first row's bytes.
            let c = unsafe { chunk::<F>(first.add(b * PANEL_ROWS * F::BLOCK)) };
            // Q4_1's offset `m` is subtracted as `-m * sum`.
            let min_weight = _mm512_xor_ps(c.m, _mm512_set1_ps(-0.0));
            let numbers = [_mm512_castps_si512(c.d), _mm512_castps_si512(min_weight)];
            for (lanes, v) in group.iter_mut().zip(c.q.into_iter().chain(numbers)) {
                // SAFETY: `Lanes` is 64 aligned bytes.
                unsafe { _mm512_store_si512(lanes.0.as_mut_ptr().cast(), v) };
            }
        }
    }
}

/// Q4_0, Q4_1 and Q8_0 interleaved: panels straight from the chunks with many tokens,
/// else each panel's chunks against one token at a time.
///
/// # Safety
/// As for [`matmul_rows`]; the rows are whole panels.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn q32_interleaved<F: Interleaved>(job: &Job, a: &Q8Rows) {
    let blocks = job.cols / 32;
    let pack = InterleavedPack::<F> {
        w: job.w,
        blocks,
        format: PhantomData,
    };
    // SAFETY: as the caller guarantees.
    unsafe { panels(job, &pack) };
    debug_assert!(job.rows.start.is_multiple_of(PANEL_ROWS));
    debug_assert!(job.rows.len().is_multiple_of(PANEL_ROWS));
    let codes = a.codes.as_ptr().cast::<i32>();
    for r0 in (job.panel_end..job.rows.end).step_by(PANEL_ROWS) {
        let first = job.w.row(r0);
        for t in 0..job.n_tokens {
            let (mut acc, mut acc_m) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for b in 0..blocks {
                let i = t * blocks + b;
                // SAFETY: as in `InterleavedPack::pack`.
                let c = unsafe { chunk::<F>(first.add(b * PANEL_ROWS * F::BLOCK)) };
                // Two sums in flight; the first starts from the codes' offset taken back.
                let corr = -(F::OFFSET as i32) * a.sum[i];
                let mut dot = [_mm512_set1_epi32(corr), _mm512_setzero_si512()];
                for (k, &q) in c.q.iter().enumerate() {
                    // SAFETY: token t's codes of block b are 8 words from word 8i.
                    let four = unsafe { codes.add(8 * i + k).read_unaligned() };
                    dot[k % 2] = _mm512_dpbusd_epi32(dot[k % 2], q, _mm512_set1_epi32(four));
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(dot[0], dot[1]));
                let scale = _mm512_mul_ps(c.d, _mm512_set1_ps(a.d[i]));
                acc = _mm512_fmadd_ps(dot, scale, acc);
                if F::HAS_M {
                    acc_m = _mm512_fmadd_ps(c.m, _mm512_set1_ps(a.s[i]), acc_m);
                }
            }
            // SAFETY: this thread owns rows r0 .. r0 + 16; the index is inside `out`.
            unsafe { _mm512_storeu_ps(job.out.0.add(t * job.n + r0), _mm512_add_ps(acc, acc_m)) };
        }
    }
}

/// Q4_0 .. Q8_0.
///
/// # Safety
/// As for [`matmul_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn q32<F: Q32>(job: &Job, a: &Q8Rows) {
    let pack = Q32Pack::<F> {
        w: job.w,
        cols: job.cols,
        format: PhantomData,
    };
    // SAFETY: as the caller guarantees.
    unsafe {
        panels(job, &pack);
        let rows = job.panel_end..job.rows.end;
        Q32Tile::<F>::new(job.w, a).rows(rows, 0..job.n_tokens, job.out, job.n);
    }
}

/// Q4_K, Q5_K (groups of 32, `SUB` = 8) and Q6_K (groups of 16, `SUB` = 4).
///
/// # Safety
/// As for [`matmul_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn qk<F: QK, const SUB: usize>(job: &Job, a: &[BlockQ8K])
where
    for<'a> KPack<'a, F>: Pack<SUB>,
{
    let pack = KPack::<F> {
        w: job.w,
        blocks: job.cols / QK_K,
        format: PhantomData,
    };
    // SAFETY: as the caller guarantees.
    unsafe {
        panels(job, &pack);
        let tile = KTile::<F>::new(job.w, job.cols, a);
        job.single_rows(|r, t| tile.row(r, t));
    }
}

/// Float weights: each 16 rows converted to f32 once (a panel: for each 16 columns, 16
/// values of each row in turn), then
/// multiplied with tiles of [`FLOAT_T`] tokens, one token per lane: a column's value of
/// each row is broadcast against the tile's 16 tokens, so no transposition is needed
/// until the 16 x 16 results are stored.
///
/// # Safety
/// As for [`matmul_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn float<F: Float>(job: &Job, x: &[f32]) {
    let cols = job.cols;
    PANEL.with_borrow_mut(|panel| {
        panel.resize(cols.div_ceil(16) * PANEL_ROWS, Lanes::ZERO);
        let values = panel.as_mut_ptr().cast::<f32>();
        for r0 in (job.rows.start..job.panel_end).step_by(PANEL_ROWS) {
            let next = job.panel_bytes(r0 + PANEL_ROWS);
            for r in 0..PANEL_ROWS {
                let row = job.w.row(r0 + r);
                for i in (0..cols).step_by(16) {
                    let mask = ((1u32 << (cols - i).min(16)) - 1) as __mmask16;
                    // SAFETY: the masked values are inside the row and inside the panel.
                    unsafe {
                        let v = F::load(row.add(i * F::SIZE), mask);
                        _mm512_mask_storeu_ps(values.add(PANEL_ROWS * i + 16 * r), mask, v);
                    }
                }
            }
            for (i, (tile, t0)) in job
                .tiles
                .chunks_exact(cols)
                .zip((0..job.n_tokens).step_by(FLOAT_T))
                .enumerate()
            {
                let ahead = if i == 0 {
                    Ahead::new(next, cols)
                } else {
                    Ahead::NONE
                };
                // SAFETY: rows r0.. are this thread's; `tile` holds tokens t0...
                unsafe { float_tile(values, tile, &ahead, job, r0, t0) };
            }
        }
    });
    let tile = FloatTile::<F>::new(job.w, cols, x);
    // SAFETY: as the caller guarantees.
    unsafe { job.single_rows(|r, t| tile.row(r, t)) };
}

/// Writes the 16 rows from `r0` (as [`float`] packs them at `panel`) of the tokens of
/// one tile (those below `n_tokens`), prefetching `ahead` one step per column.
///
/// # Safety
/// As for [`float`]; `tile` holds tokens `t0..`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
unsafe fn float_tile(
    panel: *const f32,
    tile: &[Lanes],
    ahead: &Ahead,
    job: &Job,
    r0: usize,
    t0: usize,
) {
    // acc[r] lane t: row r0 + r times token t0 + t.
    let mut acc = [_mm512_setzero_ps(); PANEL_ROWS];
    for (c, x) in tile.iter().enumerate() {
        ahead.step(c);
        // SAFETY: `Lanes` is 64 aligned bytes; column c's values of the 16 rows lie 16
        // apart from here.
        let (x, w) = unsafe {
            (
                _mm512_load_ps(x.0.as_ptr().cast()),
                panel.add(c / 16 * 16 * PANEL_ROWS + c % 16),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            *acc = _mm512_fmadd_ps(_mm512_set1_ps(unsafe { *w.add(16 * r) }), x, *acc);
        }
    }
    let mut by_row = [_mm512_setzero_si512(); PANEL_ROWS];
    for (v, &acc) in by_row.iter_mut().zip(&acc) {
        *v = _mm512_castps_si512(acc);
    }
    let by_token = transpose(by_row);
    for (t, &v) in by_token.iter().enumerate().take(job.n_tokens - t0) {
        // SAFETY: this thread owns rows `r0..r0 + 16`; the index is inside `out`.
        unsafe { _mm512_storeu_ps(job.out.0.add((t0 + t) * job.n + r0), _mm512_castsi512_ps(v)) };
    }
}

// ---------------------------------------------------------------------------------------
// Activation quantizers
// ---------------------------------------------------------------------------------------

/// Rounds to f16 precision (to nearest even), as storing an f16 would.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
fn round_f16(x: f32) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
        _mm_set_ss(x),
    )))
}

/// Quantizes rows of 32-value blocks as `quantize_q8_1` does, into [`Q8Rows`]' arrays.
///
/// # Safety
/// The CPU has the features `has_avx512` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
pub(super) unsafe fn quantize_q8(x: &[f32], out: Q8Out) {
    let blocks = x.chunks_exact(32).zip(out.codes.chunks_exact_mut(32));
    let scales = out
        .d
        .iter_mut()
        .zip(out.s.iter_mut())
        .zip(out.sum.iter_mut());
    for ((x, codes), ((d, s), sum_out)) in blocks.zip(scales) {
        // SAFETY: `x` and `codes` are 32 long.
        unsafe {
            let v = [
                _mm512_loadu_ps(x.as_ptr()),
                _mm512_loadu_ps(x.as_ptr().add(16)),
            ];
            let amax =
                _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
            let scale = amax / 127.0;
            let inv = _mm512_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
            // The default rounding (MXCSR) is to nearest even.
            let q = v.map(|v| _mm512_cvtps_epi32(_mm512_mul_ps(v, inv)));
            _mm_storeu_si128(codes.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(q[0]));
            _mm_storeu_si128(
                codes.as_mut_ptr().add(16).cast(),
                _mm512_cvtepi32_epi8(q[1]),
            );
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
            *d = round_f16(scale);
            *s = round_f16(sum as f32 * scale);
            *sum_out = sum;
        }
    }
}

/// Quantizes `x` to Q8_K blocks as `quantize_q8_k` does.
///
/// # Safety
/// The CPU has the features `has_avx512` checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,fma,f16c")]
pub(super) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (block, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut v = [_mm512_setzero_ps(); 16];
        for (i, v) in v.iter_mut().enumerate() {
            // SAFETY: `x` is 256 long.
            *v = unsafe { _mm512_loadu_ps(x.as_ptr().add(16 * i)) };
        }
        let amax = _mm512_reduce_max_ps(v.iter().fold(_mm512_setzero_ps(), |m, &v| {
            _mm512_max_ps(m, _mm512_abs_ps(v))
        }));
        if amax == 0.0 {
            *block = BlockQ8K::ZERO;
            continue;
        }
        // The first value of largest magnitude, with its sign, maps to -127.
        let first = v
            .iter()
            .enumerate()
            .find_map(|(i, &v)| {
                let hits = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(v), _mm512_set1_ps(amax));
                (hits != 0).then(|| x[16 * i + hits.trailing_zeros() as usize])
            })
            .expect("the maximum is one of the values");
        let iscale = -127.0 / first;
        for (g, &v) in v.iter().enumerate() {
            let q = _mm512_min_epi32(
                _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(iscale))),
                _mm512_set1_epi32(127),
            );
            // SAFETY: group g's 16 codes are inside `qs`.
            unsafe {
                _mm_storeu_si128(
                    block.qs.as_mut_ptr().add(16 * g).cast(),
                    _mm512_cvtepi32_epi8(q),
                )
            };
            block.bsums[g] = _mm512_reduce_add_epi32(q) as i16;
        }
        block.d = 1.0 / iscale;
    }
}
