//! CPU kernels behind one dispatch point: `matmul` of activations with a weight.
//!
//! Two precisions exist. [`Precision::Quantized`] quantizes the activations once per
//! matmul into the 8-bit block type each weight format pairs with (as llama.cpp does) and
//! runs integer dot products; [`Precision::F32`] dequantizes weight rows and keeps the
//! activations in f32, the accuracy reference.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::dtype::DType;
use crate::quant::activation::*;
use crate::quant::{as_blocks, dequantize_row};
use crate::tensor::WeightTensor;
use crate::threads::parallel_for;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Activations quantized to 8 bits inside matmuls with quantized weights.
    #[default]
    Quantized,
    /// Activations stay f32; weights are dequantized row by row.
    F32,
}

/// Buffers a matmul reuses from call to call, so the decode loop does not allocate.
#[derive(Default)]
pub struct MatmulScratch {
    q8_0: Vec<BlockQ8_0Act>,
    q8_1: Vec<BlockQ8_1Act>,
    q8_k: Vec<BlockQ8K>,
    #[cfg(target_arch = "x86_64")]
    x86: x86::Scratch,
}

/// One token's activations in the 8-bit block type its weight format pairs with.
#[derive(Clone, Copy)]
enum ActRow<'a> {
    Q8_0(&'a [BlockQ8_0Act]),
    Q8_1(&'a [BlockQ8_1Act]),
    Q8K(&'a [BlockQ8K]),
}

/// The instruction set the kernels run with, picked once from the CPU's features.
/// `SYNAPSE_KERNEL=scalar` forces the portable path (to test it on any machine);
/// `avx2` or `avx512` caps the x86 choice (a CPU without it runs the best it has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2 with FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F, BW, VL, VNNI and VBMI (with AVX2, FMA and F16C).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Baseline NEON, without the dotprod extension.
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// NEON with the dotprod extension (`sdot`).
    #[cfg(target_arch = "aarch64")]
    NeonDot,
}

pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(feature = "native")]
        let forced = std::env::var("SYNAPSE_KERNEL").ok();
        #[cfg(not(feature = "native"))]
        let forced: Option<String> = None;
        if forced.as_deref() == Some("scalar") {
            return Isa::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(isa) = x86::best(forced.as_deref()) {
            return isa;
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return if aarch64::has_dotprod() {
                Isa::NeonDot
            } else {
                Isa::Neon
            };
        }
        Isa::Scalar
    })
}

/// Dot product of a quantized weight row with activations of its paired type (x86 SIMD
/// runs whole matmuls instead: see `x86::matmul`).
fn quantized_dot(isa: Isa, dtype: DType, w: &[u8], a: ActRow) -> f32 {
    match isa {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `isa()` returns NeonDot only when the CPU has dotprod.
        Isa::NeonDot => unsafe { aarch64::quantized_dot_dotprod(dtype, w, a) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::quantized_dot_neon(dtype, w, a),
        _ => quantized_dot_portable(dtype, w, a),
    }
}

fn dot_f32(isa: Isa, w: &[f32], x: &[f32]) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returns these only when the CPU has AVX2, FMA and F16C.
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::dot_f32(w, x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => aarch64::dot_f32(w, x),
        Isa::Scalar => scalar::dot_f32(w, x),
    }
}

#[inline(always)]
fn quantized_dot_portable(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    match (dtype, a) {
        (DType::Q4_0, ActRow::Q8_0(a)) => scalar::dot_q4_0(as_blocks(w), a),
        (DType::Q5_0, ActRow::Q8_0(a)) => scalar::dot_q5_0(as_blocks(w), a),
        (DType::Q8_0, ActRow::Q8_0(a)) => scalar::dot_q8_0(as_blocks(w), a),
        (DType::Q4_1, ActRow::Q8_1(a)) => scalar::dot_q4_1(as_blocks(w), a),
        (DType::Q5_1, ActRow::Q8_1(a)) => scalar::dot_q5_1(as_blocks(w), a),
        (DType::Q4K, ActRow::Q8K(a)) => scalar::dot_q4_k(as_blocks(w), a),
        (DType::Q5K, ActRow::Q8K(a)) => scalar::dot_q5_k(as_blocks(w), a),
        (DType::Q6K, ActRow::Q8K(a)) => scalar::dot_q6_k(as_blocks(w), a),
        (DType::Int8, ActRow::Q8_0(a)) => scalar::dot_int8(w, a),
        _ => unreachable!("activations are quantized to the type {dtype} pairs with"),
    }
}

/// A pointer to an output buffer that threads write disjoint elements of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every thread writes a disjoint set of indices (its own rows) and the buffer
// outlives the scoped threads.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Writes `out[i] = v`. The caller guarantees that no other thread writes index `i`
    /// and that `i` is in bounds.
    unsafe fn write(self, i: usize, v: f32) {
        *self.0.add(i) = v;
    }
}

/// `out[t][r] = dot(weight row r, x[t])` for `n_tokens` rows of `x` (each `w.cols` long);
/// `out` holds `n_tokens` rows of `w.rows` values.
pub fn matmul(
    w: &WeightTensor,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    precision: Precision,
    threads: usize,
    scratch: &mut MatmulScratch,
) {
    matmul_with(isa(), w, x, n_tokens, out, precision, threads, scratch);
}

/// [`matmul`] with the kernels of `isa`, which the CPU must have.
#[allow(clippy::too_many_arguments)]
fn matmul_with(
    isa: Isa,
    w: &WeightTensor,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    precision: Precision,
    threads: usize,
    scratch: &mut MatmulScratch,
) {
    let (k, n) = (w.cols, w.rows);
    assert_eq!(x.len(), n_tokens * k, "{}: activation length", w.name);
    assert_eq!(out.len(), n_tokens * n, "{}: output length", w.name);
    if precision == Precision::F32 {
        return matmul_f32(isa, w, x, n_tokens, out, threads);
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512) {
        return x86::matmul(isa, w, x, n_tokens, out, threads, scratch);
    }
    if !w.dtype.is_quantized() {
        return matmul_f32(isa, w, x, n_tokens, out, threads);
    }
    // Quantize every token's activations once; all threads share them.
    let blocks_per_row = k / w.dtype.block_len();
    let len = n_tokens * blocks_per_row;
    match w.dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 | DType::Int8 => {
            scratch.q8_0.resize(len, BlockQ8_0Act::ZERO);
            quantize_q8_0(x, &mut scratch.q8_0);
        }
        DType::Q4_1 | DType::Q5_1 => {
            scratch.q8_1.resize(len, BlockQ8_1Act::ZERO);
            quantize_q8_1(x, &mut scratch.q8_1);
        }
        _ => {
            scratch.q8_k.resize(len, BlockQ8K::ZERO);
            quantize_q8_k(x, &mut scratch.q8_k);
        }
    }
    let scratch = &*scratch;
    let act_row = |t: usize| {
        let blocks = t * blocks_per_row..(t + 1) * blocks_per_row;
        match w.dtype {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 | DType::Int8 => {
                ActRow::Q8_0(&scratch.q8_0[blocks])
            }
            DType::Q4_1 | DType::Q5_1 => ActRow::Q8_1(&scratch.q8_1[blocks]),
            _ => ActRow::Q8K(&scratch.q8_k[blocks]),
        }
    };
    let shared = SharedOut(out.as_mut_ptr());
    parallel_for(n, threads, 4, |rows| {
        for r in rows {
            let row = w.row(r);
            for t in 0..n_tokens {
                let v = quantized_dot(isa, w.dtype, row, act_row(t));
                // SAFETY: row r belongs to this thread only; t * n + r < out.len().
                unsafe { shared.write(t * n + r, v) };
            }
        }
    });
}

/// The f32 path: each thread dequantizes its weight rows one at a time and dots them
/// with every token, so a row is unpacked once per batch.
fn matmul_f32(
    isa: Isa,
    w: &WeightTensor,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    threads: usize,
) {
    let (k, n) = (w.cols, w.rows);
    let shared = SharedOut(out.as_mut_ptr());
    parallel_for(n, threads, 4, |rows| {
        let mut row = vec![0f32; k];
        for r in rows {
            dequantize_row(w.dtype, w.row(r), &mut row);
            for t in 0..n_tokens {
                let v = dot_f32(isa, &row, &x[t * k..(t + 1) * k]);
                // SAFETY: row r belongs to this thread only; t * n + r < out.len().
                unsafe { shared.write(t * n + r, v) };
            }
        }
    });
}
