//! CPU kernels behind one dispatch point: `matmul` of activations with a weight.
//!
//! Which type the activations of a matmul take is decided in one place,
//! [`Precision::activation_type`]: by default the activations follow the weights, as
//! llama.cpp's do (quantized weights meet activations quantized once per matmul to the
//! 8-bit block type their format pairs with, and run integer dot products; float weights
//! meet f32 activations); [`Precision::F32`] keeps every activation in f32 and dequantizes
//! weight rows instead, the accuracy reference.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod gemm;
pub mod scalar;
#[cfg(any(
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod shared128;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
/// For the f32 ops' sums (see `ops::rms_norm`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use wasm::dot_f32 as dot_f32_simd128;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::dtype::DType;
use crate::quant::activation::*;
use crate::quant::dequantize_row;
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
use crate::tensor::Layout;
use crate::tensor::WeightTensor;
use crate::threads::parallel_for;
use std::ops::Range;

/// The precision policy of a forward pass: which type each matmul's activations take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Activations follow each weight matrix's type (see [`Precision::activation_type`]).
    #[default]
    FollowWeights,
    /// Activations stay f32 for every matrix; quantized weights are dequantized row by row.
    F32,
}

pub(crate) use crate::quant::format::ActRow;
pub use crate::quant::format::ActivationType;

impl Precision {
    /// The activation type of a matmul with `weights`, the whole policy:
    ///
    /// - F32 weights: f32 activations, so an f32 checkpoint computes what its framework does.
    /// - F16 and BF16 weights: f32 activations too (llama.cpp converts them to f16). The
    ///   weights are widened in registers, so decode stays bound by reading them, and these
    ///   kernels already run ahead of llama.cpp's f16 ones (the README's F16 rows), while
    ///   f16 activations would keep only 11 bits of every value.
    /// - Quantized weights: the 8-bit block type the format's integer dot product pairs
    ///   with (Q8_1 for formats with a minimum, Q8_K for the K-quants, else Q8_0), as in
    ///   llama.cpp, unless the policy is [`Precision::F32`].
    pub fn activation_type(self, weights: DType) -> ActivationType {
        match self {
            Precision::F32 => ActivationType::F32,
            Precision::FollowWeights => weights.format().activation,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::FollowWeights => "follow-weights",
            Precision::F32 => "f32",
        }
    }
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

/// The instruction set the kernels run with, picked once from the CPU's features.
/// `SYNAPSE_KERNEL=scalar` forces the portable path (to test it on any machine);
/// `avx2` or `avx512` caps the x86 choice (a CPU without it runs the best it has).
/// On wasm32 the choice is made when the module is built (see [`Isa::Simd128`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The portable kernels of `scalar.rs`. A wasm32 SIMD128 module never runs them, so
    /// there only its tests, which compare every kernel with them, have this choice: the
    /// browser's download leaves them out.
    #[cfg(any(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
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
    /// wasm32 SIMD128: every build with `-C target-feature=+simd128` runs it, since wasm
    /// has no run-time feature detection.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

pub fn isa() -> Isa {
    // Known when the module is built: a constant lets the compiler drop the other paths.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Isa::Simd128;
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(detect)
    }
}

/// The best `Isa` of this CPU, or the one `SYNAPSE_KERNEL` forces.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn detect() -> Isa {
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
}

/// Moves `weights` into memory laid out as the kernels of this CPU read them fastest
/// (see [`WeightTensor::load_all`]): rows interleaved in panels for the types whose
/// kernels read panels (see [`reads_panels`]), else as they are. Call it once, when a
/// model loads, with all its matrices.
pub fn prepare(weights: &mut [&mut WeightTensor]) {
    WeightTensor::load_all(weights, |dtype| reads_panels(isa(), dtype));
}

/// Whether the `isa` kernels of `dtype` read weights interleaved in panels (see
/// [`crate::quant::panel_rows`]) rather than rows: Q4_0, Q4_1 and Q8_0 with AVX-512,
/// whose kernels load 16 rows' blocks per vector; those and the K-quants with AVX2, and
/// the K-quants with NEON's `sdot`, whose kernels load 4 code bytes of each of 8 (or 4)
/// rows per vector.
// Elsewhere only the scalar kernels exist, and they read rows.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_variables)
)]
pub fn reads_panels(isa: Isa, dtype: DType) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => crate::quant::interleave::supports(dtype),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => crate::quant::panel_rows(dtype).is_some(),
        #[cfg(target_arch = "aarch64")]
        Isa::NeonDot => crate::quant::k_panels::supports(dtype),
        _ => false,
    }
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
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => wasm::quantized_dot(dtype, w, a),
        #[allow(unreachable_patterns)] // SIMD128's only choice, outside its tests
        _ => quantized_dot_portable(dtype, w, a),
    }
}

/// The dot products of four f32 weight rows with `x`: on x86, `x` is loaded once for all
/// four rows, which halves the loads of the f32 path's prefill.
fn dot_f32_x4(isa: Isa, w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returns these only when the CPU has AVX2, FMA and F16C.
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::dot_f32_x4(w, x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon | Isa::NeonDot => w.map(|w| aarch64::dot_f32(w, x)),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => w.map(|w| wasm::dot_f32(w, x)),
        #[cfg(any(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
        Isa::Scalar => w.map(|w| scalar::dot_f32(w, x)),
    }
}

/// Unpacks a weight row of `dtype` to f32: with SIMD128's widening for F16, else with
/// the format's `dequantize_row`.
fn dequantize_row_with(isa: Isa, dtype: DType, row: &[u8], out: &mut [f32]) {
    match (isa, dtype) {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        (Isa::Simd128, DType::F16) => wasm::widen_f16(row, out),
        _ => dequantize_row(dtype, row, out),
    }
}

/// The scalar reference dot product of `dtype` (see [`crate::quant::format::Format`]).
#[inline(always)]
fn quantized_dot_portable(dtype: DType, w: &[u8], a: ActRow) -> f32 {
    dtype.reference_dot()(w, a)
}

/// A pointer to an output buffer that threads write disjoint elements of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every thread writes a disjoint set of indices (its own rows) and the buffer
// outlives the scoped threads.
unsafe impl Send for SharedOut {}
// SAFETY: a shared `SharedOut` only writes through `write`, whose callers give each
// index to one thread; the f32s are never read through it.
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
    matmul_many(&mut [(w, out)], x, n_tokens, precision, threads, scratch);
}

/// [`matmul`] of several weights with the same input `x` (Q, K and V; gate and up): each
/// `(w, out)` part gets `out = matmul(w, x)`. The activations are quantized once per
/// activation type the weights need, and the threads split the parts' rows together, so
/// the whole call waits on one barrier.
///
/// # Panics
/// If the weights' `cols` differ, or a length does not match.
pub fn matmul_many(
    parts: &mut [(&WeightTensor, &mut [f32])],
    x: &[f32],
    n_tokens: usize,
    precision: Precision,
    threads: usize,
    scratch: &mut MatmulScratch,
) {
    matmul_many_with(isa(), parts, x, n_tokens, precision, threads, scratch);
}

/// The parts of a [`matmul_many`] laid end to end as one range of rows that threads split,
/// each part starting at a multiple of `align` (a thread's share of a part then starts on
/// a whole panel); the rows of padding between parts belong to no part.
struct PartRows<'a> {
    /// Per part: its first index in the combined range, its weight and its output.
    parts: Vec<(usize, &'a WeightTensor, SharedOut)>,
    total: usize,
}

impl<'a> PartRows<'a> {
    fn new(parts: &mut [(&'a WeightTensor, &mut [f32])], align: usize) -> PartRows<'a> {
        let mut total = 0;
        let parts = parts
            .iter_mut()
            .map(|(w, out)| {
                let start = total;
                total += w.rows.div_ceil(align) * align;
                (start, *w, SharedOut(out.as_mut_ptr()))
            })
            .collect();
        PartRows { parts, total }
    }

    /// Calls `f(weight, its rows in range, its output)` for each part `range` covers.
    fn split(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(&'a WeightTensor, Range<usize>, SharedOut),
    ) {
        for &(start, w, out) in &self.parts {
            let (lo, hi) = (range.start.max(start), range.end.min(start + w.rows));
            if lo < hi {
                f(w, lo - start..hi - start, out);
            }
        }
    }
}

/// The activation quantizers of the paths [`matmul_many_with`] runs (x86 quantizes in
/// `x86::matmul_many`): SIMD128's, else the scalar block quantizers, which NEON uses too.
struct Quantizers {
    q8_0: fn(&[f32], &mut [BlockQ8_0Act]),
    q8_1: fn(&[f32], &mut [BlockQ8_1Act]),
    q8_k: fn(&[f32], &mut [BlockQ8K]),
}

impl Quantizers {
    fn of(isa: Isa) -> Self {
        match isa {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => Quantizers {
                q8_0: wasm::quantize_q8_0,
                q8_1: wasm::quantize_q8_1,
                q8_k: wasm::quantize_q8_k,
            },
            #[allow(unreachable_patterns)] // SIMD128's only choice, outside its tests
            _ => Quantizers {
                q8_0: quantize_q8_0,
                q8_1: quantize_q8_1,
                q8_k: quantize_q8_k,
            },
        }
    }
}

/// `out[t][r] = dot(weight row r, x[t])` for the rows `rows` of `w` with f32 activations.
/// Each row is unpacked once per batch, a few rows at a time, and every token meets all of
/// them while its activations sit in L1: one row at a time would stream all tokens'
/// activations from memory for every row. `deq` and `bytes` are reused buffers.
fn matmul_rows_f32(
    isa: Isa,
    w: &WeightTensor,
    rows: Range<usize>,
    x: &[f32],
    out: SharedOut,
    deq: &mut Vec<f32>,
    bytes: &mut Vec<u64>,
) {
    let (k, n) = (w.cols, w.rows);
    for first in rows.clone().step_by(F32_ROW_BLOCK) {
        let block = first..(first + F32_ROW_BLOCK).min(rows.end);
        deq.resize(block.len() * k, 0.0);
        for (r, unpacked) in block.clone().zip(deq.chunks_exact_mut(k)) {
            dequantize_row_with(isa, w.dtype, w.copy_row(r, bytes), unpacked);
        }
        // Four rows at a time; a last group of fewer repeats its last row.
        let unpacked = |i: usize| &deq[i.min(block.len() - 1) * k..][..k];
        for (t, x) in x.chunks_exact(k).enumerate() {
            for first in (0..block.len()).step_by(4) {
                let dots = dot_f32_x4(
                    isa,
                    [first, first + 1, first + 2, first + 3].map(unpacked),
                    x,
                );
                for (i, v) in (first..block.len()).zip(dots) {
                    // SAFETY: these rows belong to this thread only;
                    // t * n + block.start + i < out.len().
                    unsafe { out.write(t * n + block.start + i, v) };
                }
            }
        }
    }
}

/// How many weight rows the f32 path unpacks at a time: 16 rows of 1536 f32s still fit L2.
const F32_ROW_BLOCK: usize = 16;

/// [`matmul_many`] with the kernels of `isa`, which the CPU must have.
fn matmul_many_with(
    isa: Isa,
    parts: &mut [(&WeightTensor, &mut [f32])],
    x: &[f32],
    n_tokens: usize,
    precision: Precision,
    threads: usize,
    scratch: &mut MatmulScratch,
) {
    let Some(k) = parts.first().map(|(w, _)| w.cols) else {
        return;
    };
    for (w, out) in parts.iter() {
        assert_eq!(
            w.cols, k,
            "{}: columns differ from the other weights'",
            w.name
        );
        assert_eq!(x.len(), n_tokens * k, "{}: activation length", w.name);
        assert_eq!(out.len(), n_tokens * w.rows, "{}: output length", w.name);
    }
    // Rows of no values (an empty tensor): every dot product is 0, and no kernel below
    // has to step through a zero-length row.
    if k == 0 {
        parts.iter_mut().for_each(|(_, out)| out.fill(0.0));
        return;
    }
    // The x86 kernels read rows, and the panels of the types `prepare` interleaves for
    // them; the other paths gather rows of any layout.
    #[cfg(target_arch = "x86_64")]
    if precision == Precision::FollowWeights
        && isa != Isa::Scalar
        && parts
            .iter()
            .all(|(w, _)| w.layout == Layout::Rows || reads_panels(isa, w.dtype))
    {
        return x86::matmul_many(isa, parts, x, n_tokens, threads, scratch);
    }
    let act_type = |w: &WeightTensor| precision.activation_type(w.dtype);
    // Quantize every token's activations once per type needed; all threads share them.
    let blocks_per_row = |dtype: DType| k / dtype.block_len();
    let quantizers = Quantizers::of(isa);
    for act in [
        ActivationType::Q8_0,
        ActivationType::Q8_1,
        ActivationType::Q8K,
    ] {
        let Some((w, _)) = parts.iter().find(|(w, _)| act_type(w) == act) else {
            continue;
        };
        let len = n_tokens * blocks_per_row(w.dtype);
        match act {
            ActivationType::F32 => {}
            ActivationType::Q8_0 => {
                scratch.q8_0.resize(len, BlockQ8_0Act::ZERO);
                (quantizers.q8_0)(x, &mut scratch.q8_0);
            }
            ActivationType::Q8_1 => {
                scratch.q8_1.resize(len, BlockQ8_1Act::ZERO);
                (quantizers.q8_1)(x, &mut scratch.q8_1);
            }
            ActivationType::Q8K => {
                scratch.q8_k.resize(len, BlockQ8K::ZERO);
                (quantizers.q8_k)(x, &mut scratch.q8_k);
            }
        }
    }
    let scratch = &*scratch;
    // The quantized activations of token `t` for a weight of `dtype`.
    let act_row = |dtype: DType, t: usize| {
        let blocks = t * blocks_per_row(dtype)..(t + 1) * blocks_per_row(dtype);
        match precision.activation_type(dtype) {
            ActivationType::F32 => unreachable!("f32 activations are dotted with f32 rows"),
            ActivationType::Q8_0 => ActRow::Q8_0(&scratch.q8_0[blocks]),
            ActivationType::Q8_1 => ActRow::Q8_1(&scratch.q8_1[blocks]),
            ActivationType::Q8K => ActRow::Q8K(&scratch.q8_k[blocks]),
        }
    };
    // Threads split the rows in whole panels.
    let align = crate::quant::k_panels::ROWS;
    let rows = PartRows::new(parts, align);
    parallel_for(rows.total, threads, align, |range| {
        let (mut deq, mut bytes) = (Vec::new(), Vec::new());
        rows.split(range, |w, part_rows, out| {
            let n = w.rows;
            if act_type(w) == ActivationType::F32 {
                return matmul_rows_f32(isa, w, part_rows, x, out, &mut deq, &mut bytes);
            }
            #[cfg(target_arch = "aarch64")]
            if w.layout == Layout::Interleaved
                && isa == Isa::NeonDot
                && act_type(w) == ActivationType::Q8K
            {
                let acts = &scratch.q8_k[..n_tokens * blocks_per_row(w.dtype)];
                // SAFETY: `isa()` returns NeonDot only when the CPU has dotprod; these
                // rows (whole panels) belong to this thread only.
                return unsafe { aarch64::matmul_panels(w, acts, n_tokens, part_rows, out, n) };
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            if isa == Isa::Simd128 && w.layout == Layout::Rows {
                let all_tokens = 0..n_tokens * blocks_per_row(w.dtype);
                let acts = match precision.activation_type(w.dtype) {
                    ActivationType::Q8_0 => Some(ActRow::Q8_0(&scratch.q8_0[all_tokens])),
                    ActivationType::Q8_1 => Some(ActRow::Q8_1(&scratch.q8_1[all_tokens])),
                    _ => None,
                };
                if acts.is_some_and(|a| wasm::matmul_rows(w, a, n_tokens, part_rows.clone(), out)) {
                    return;
                }
            }
            for r in part_rows {
                let row = w.copy_row(r, &mut bytes);
                for t in 0..n_tokens {
                    let v = quantized_dot(isa, w.dtype, row, act_row(w.dtype, t));
                    // SAFETY: row r of this part belongs to this thread only;
                    // t * n + r < out.len().
                    unsafe { out.write(t * n + r, v) };
                }
            }
        });
    });
}
