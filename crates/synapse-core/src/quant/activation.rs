//! Activation blocks: f32 activations quantized once per matmul so that the dot
//! products with quantized weights run on integers, as GGML's `vec_dot_type`s do.

use crate::dtype::QK_K;
use half::f16;

block_structs! {
    /// 32 activations as signed bytes with one scale; pairs with Q4_0, Q5_0 and Q8_0.
    pub struct BlockQ8_0Act { d: f16, qs: [i8; 32] } = 34 bytes;

    /// As [`BlockQ8_0Act`] plus `s = d * sum(qs)`, which folds the weight's offset `m` of
    /// Q4_1 and Q5_1 into one multiply per block.
    pub struct BlockQ8_1Act { d: f16, s: f16, qs: [i8; 32] } = 36 bytes;

    /// 256 activations with an f32 scale and the sums of each 16 codes; pairs with the
    /// K-quants (the sums fold their per-sub-block minimums).
    pub struct BlockQ8K { d: f32, qs: [i8; QK_K], bsums: [i16; QK_K / 16] } = 292 bytes;
}

/// Quantizes 32 values to bytes with scale max|x|/127; returns the scale. Rounds half to
/// even, as GGML's x86 and ARM quantizers (and every SIMD quantizer here) do.
fn quantize_32(x: &[f32], qs: &mut [i8; 32]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
    }
    d
}

pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0Act]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(32)) {
        block.d = f16::from_f32(quantize_32(chunk, &mut block.qs));
    }
}

pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1Act]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(32)) {
        let d = quantize_32(chunk, &mut block.qs);
        let sum: i32 = block.qs.iter().map(|&q| q as i32).sum();
        block.d = f16::from_f32(d);
        block.s = f16::from_f32(sum as f32 * d);
    }
}

pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    for (block, chunk) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        // The signed value of largest magnitude maps to -127, as in GGML.
        let max = chunk
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        if max == 0.0 {
            block.d = 0.0;
            block.qs = [0; QK_K];
            block.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in block.qs.iter_mut().zip(chunk) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (sum, group) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
            *sum = group.iter().map(|&q| q as i16).sum();
        }
        block.d = 1.0 / iscale;
    }
}

/// Activations of several tokens in 32-value blocks, with the numbers a [`BlockQ8_1Act`]
/// holds (and the exact sum of each block's codes) but in arrays, so that SIMD kernels load the codes of several blocks, or
/// their scales, with one instruction. Each token's `cols` codes are contiguous; `d` and
/// `s` hold one entry per block. Scales are the f16 values GGML's `block_q8_1` stores,
/// widened to f32.
#[derive(Default)]
pub struct Q8Rows {
    cols: usize,
    pub codes: Vec<i8>,
    /// Block scale: `max|x| / 127` rounded to f16.
    pub d: Vec<f32>,
    /// `d * sum(codes)` (with `d` before rounding) rounded to f16.
    pub s: Vec<f32>,
    /// `sum(codes)`, exact.
    pub sum: Vec<i32>,
}

impl Q8Rows {
    /// Sizes the buffers for `n_tokens` rows of `cols` values (a multiple of 32).
    pub fn resize(&mut self, n_tokens: usize, cols: usize) {
        assert!(
            cols.is_multiple_of(32),
            "{cols} is not a whole number of blocks"
        );
        self.cols = cols;
        self.codes.resize(n_tokens * cols, 0);
        self.d.resize(n_tokens * cols / 32, 0.0);
        self.s.resize(n_tokens * cols / 32, 0.0);
        self.sum.resize(n_tokens * cols / 32, 0);
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

impl BlockQ8_0Act {
    pub const ZERO: Self = BlockQ8_0Act {
        d: f16::ZERO,
        qs: [0; 32],
    };
}
impl BlockQ8_1Act {
    pub const ZERO: Self = BlockQ8_1Act {
        d: f16::ZERO,
        s: f16::ZERO,
        qs: [0; 32],
    };
}
impl BlockQ8K {
    pub const ZERO: Self = BlockQ8K {
        d: 0.0,
        qs: [0; QK_K],
        bsums: [0; QK_K / 16],
    };
}
