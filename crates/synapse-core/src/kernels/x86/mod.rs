//! x86-64 kernels, chosen at run time by `isa()`: AVX-512 (with VNNI and VBMI) where the
//! CPU has it, else AVX2 (with FMA and F16C).
//!
//! Activations are quantized once per matmul (on all threads when there are many): to
//! [`Q8Rows`] for the 32-value block formats, to [`BlockQ8K`] for the K-quants; float
//! weights use the f32 activations. Threads then split the weight rows.
//!
//! Weights are read as one sequential stream per thread: either row after row, or in the
//! panels `kernels::prepare` lays out at load (see [`super::reads_panels`]), whose chunks hold
//! several rows' blocks side by side (reading several rows' streams at once halves the
//! bandwidth on this class of CPU). With several tokens (prefill) AVX-512 multiplies
//! panels of 16 rows, packed per matmul or laid out at load, with tiles of 8 tokens (see
//! `avx512`); AVX2 multiplies panels of 8 rows (the K-quants', and halves of the 16-row
//! panels of Q4_0, Q4_1 and Q8_0) with tiles of 4 tokens, and the other types in tiles of
//! 2 rows by 4 tokens from the rows in place.

mod avx2;
mod avx512;
mod gemm;
mod int8;

pub use gemm::{gemm_tile_avx2, gemm_tile_avx512};

use super::{ActivationType, Isa, MatmulScratch, PartRows, Precision, SharedOut};
use crate::dtype::{DType, QK_K};
use crate::quant::activation::{BlockQ8K, Q8Rows};
use crate::tensor::WeightTensor;
use crate::threads::parallel_for;
use std::ops::Range;

pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// AVX-512 as Ice Lake, Zen 4 and later have it: `vpdpbusd` (VNNI) and `vpermb` (VBMI)
/// on top of F, BW and VL. Older AVX-512 CPUs (Skylake-X) run the AVX2 kernels.
pub fn has_avx512() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vbmi")
}

/// The best x86 ISA this CPU has, no better than `forced` (`"avx2"` or `"avx512"`, from
/// `SYNAPSE_KERNEL`); `None` without AVX2.
pub fn best(forced: Option<&str>) -> Option<Isa> {
    let allow_avx512 = match forced {
        None | Some("avx512") => true,
        Some("avx2") => false,
        Some(other) => {
            eprintln!("synapse: unknown SYNAPSE_KERNEL={other:?} (scalar, avx2 or avx512)");
            true
        }
    };
    if allow_avx512 && has_avx512() {
        Some(Isa::Avx512)
    } else if has_avx2() {
        Some(Isa::Avx2)
    } else {
        None
    }
}

/// The activations a kernel reads: quantized for the block formats, f32 for float weights.
#[derive(Clone, Copy)]
enum Acts<'a> {
    Q8(&'a Q8Rows),
    Q8K(&'a [BlockQ8K]),
    F32(&'a [f32]),
}

/// Weight rows seen as raw bytes: kernels load whole vectors, sometimes across blocks.
#[derive(Clone, Copy)]
struct Rows<'a> {
    bytes: &'a [u8],
    row_bytes: usize,
}

impl<'a> Rows<'a> {
    fn new(w: &'a WeightTensor) -> Rows<'a> {
        Rows {
            bytes: w.bytes(),
            row_bytes: w.row_bytes(),
        }
    }

    /// The first byte of row `r`. The caller keeps its reads inside that row.
    fn row(&self, r: usize) -> *const u8 {
        self.bytes[r * self.row_bytes..].as_ptr()
    }
}

/// A mutable buffer that threads fill disjoint parts of.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: each thread writes only the elements of its own tokens (see `matmul`).
unsafe impl<T> Send for SharedMut<T> {}
// SAFETY: shared only to hand out those disjoint element ranges through `slice`, whose
// callers give each range to one thread.
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    fn new(v: &mut [T]) -> SharedMut<T> {
        SharedMut(v.as_mut_ptr())
    }

    /// Elements `range` of the buffer. The caller guarantees they are in bounds and that
    /// no other live reference covers them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, range: Range<usize>) -> &mut [T] {
        // SAFETY: as the caller guarantees.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start), range.len()) }
    }
}

/// Where a quantizer writes some tokens' [`Q8Rows`]: `codes` as long as their values,
/// the others one per 32-value block.
struct Q8Out<'a> {
    codes: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
    sum: &'a mut [i32],
}

impl Q8Out<'_> {
    /// The same buffers, borrowed again for a quantizer.
    fn reborrow(&mut self) -> Q8Out<'_> {
        Q8Out {
            codes: self.codes,
            d: self.d,
            s: self.s,
            sum: self.sum,
        }
    }
}

/// Below this many values, quantizing runs on the calling thread.
const PARALLEL_QUANTIZE_MIN: usize = 1 << 14;
/// Threads quantize and pack runs of tokens that start on a multiple of this: a whole
/// number of token tiles of every type (see `avx512::token_tile`).
const PREPARE_ALIGN: usize = 16;

/// `out = matmul(w, x)` for each `(w, out)` part with the kernels of `isa` (Avx2 or
/// Avx512): see [`super::matmul_many`], which checked the lengths.
pub(super) fn matmul_many(
    isa: Isa,
    parts: &mut [(&WeightTensor, &mut [f32])],
    x: &[f32],
    n_tokens: usize,
    threads: usize,
    scratch: &mut MatmulScratch,
) {
    let k = parts[0].0.cols;
    let prepare_threads = if x.len() >= PARALLEL_QUANTIZE_MIN {
        threads
    } else {
        1
    };
    let needs = |pred: fn(DType) -> bool| parts.iter().any(|(w, _)| pred(w.dtype));
    let (q8, q8_k) = (needs(uses_q8), needs(uses_q8_k));
    // AVX-512 panels: the activations packed once per weight type that runs as panels
    // (the packing depends on the type), all types' tiles in one buffer.
    let panel_types: Vec<DType> = if isa == Isa::Avx512 {
        let mut types = Vec::new();
        for (w, _) in parts.iter() {
            if avx512::uses_panels(w.dtype, n_tokens) && !types.contains(&w.dtype) {
                types.push(w.dtype);
            }
        }
        types
    } else {
        Vec::new()
    };
    let tile_lanes = |dtype: DType| {
        let (per_tile, lanes) = avx512::token_tile(dtype, k);
        n_tokens.div_ceil(per_tile) * lanes
    };
    let mut tile_starts = Vec::with_capacity(panel_types.len());
    let mut total_lanes = 0;
    for &dtype in &panel_types {
        tile_starts.push(total_lanes);
        total_lanes += tile_lanes(dtype);
    }
    let (blocks, k_blocks) = (k / 32, k / QK_K);
    if q8 {
        scratch.x86.q8_rows.resize(n_tokens, k);
    }
    if q8_k {
        scratch.q8_k.resize(n_tokens * k_blocks, BlockQ8K::ZERO);
    }
    scratch.x86.tiles.resize(total_lanes, Lanes::ZERO);
    let q = &mut scratch.x86.q8_rows;
    let (codes, d, s, sum) = (
        SharedMut::new(&mut q.codes),
        SharedMut::new(&mut q.d),
        SharedMut::new(&mut q.s),
        SharedMut::new(&mut q.sum),
    );
    let (q8_k_out, tiles_out) = (
        SharedMut::new(&mut scratch.q8_k),
        SharedMut::new(&mut scratch.x86.tiles),
    );
    // One dispatch prepares the activations: each thread quantizes a run of tokens, then
    // packs those tokens' tiles, so runs start on a tile boundary of every type.
    parallel_for(n_tokens, prepare_threads, PREPARE_ALIGN, |tokens| {
        let values = tokens.start * k..tokens.end * k;
        let x = &x[values.clone()];
        // SAFETY: token runs are disjoint, so are these parts of the buffers, which the
        // resizes above made `n_tokens` rows long (the tiles, `total_lanes` long); `isa`
        // is on this CPU.
        unsafe {
            let mut q8_out = q8.then(|| Q8Out {
                codes: codes.slice(values.clone()),
                d: d.slice(tokens.start * blocks..tokens.end * blocks),
                s: s.slice(tokens.start * blocks..tokens.end * blocks),
                sum: sum.slice(tokens.start * blocks..tokens.end * blocks),
            });
            let mut q8_k_out =
                q8_k.then(|| q8_k_out.slice(tokens.start * k_blocks..tokens.end * k_blocks));
            match (isa, &mut q8_out) {
                (_, None) => {}
                (Isa::Avx512, Some(out)) => avx512::quantize_q8(x, out.reborrow()),
                (_, Some(out)) => avx2::quantize_q8(x, out.reborrow()),
            }
            match (isa, &mut q8_k_out) {
                (_, None) => {}
                (Isa::Avx512, Some(out)) => avx512::quantize_q8_k(x, out),
                (_, Some(out)) => avx2::quantize_q8_k(x, out),
            }
            for (&dtype, &start) in panel_types.iter().zip(&tile_starts) {
                let (per_tile, lanes) = avx512::token_tile(dtype, k);
                let tiles = tokens.start / per_tile..tokens.end.div_ceil(per_tile);
                let out = tiles_out.slice(start + tiles.start * lanes..start + tiles.end * lanes);
                let acts = match (&q8_out, &q8_k_out) {
                    (Some(q), _) if uses_q8(dtype) => avx512::TileActs::Q8(q),
                    (_, Some(q)) if uses_q8_k(dtype) => avx512::TileActs::Q8K(q),
                    _ => avx512::TileActs::F32(x),
                };
                avx512::pack_tokens(dtype, acts, tokens.len(), k, out);
            }
        }
    });
    let (q8_rows, q8_k) = (&scratch.x86.q8_rows, &scratch.q8_k[..]);
    let acts = |dtype: DType| {
        if uses_q8(dtype) {
            Acts::Q8(q8_rows)
        } else if uses_q8_k(dtype) {
            Acts::Q8K(q8_k)
        } else {
            Acts::F32(x)
        }
    };
    let tiles = &scratch.x86.tiles[..];
    let tiles_of = |dtype: DType| match panel_types.iter().position(|&d| d == dtype) {
        Some(i) => &tiles[tile_starts[i]..tile_starts[i] + tile_lanes(dtype)],
        None => &tiles[..0],
    };
    // Threads split the rows in whole AVX-512 panels (and AVX2 tiles).
    let rows = PartRows::new(parts, avx512::PANEL_ROWS);
    parallel_for(rows.total, threads, avx512::PANEL_ROWS, |range| {
        rows.split(range, |w, rows, out| {
            let n = w.rows;
            // SAFETY: `isa` was chosen from the CPU's features (or a test checked them);
            // each thread writes only its own rows.
            unsafe {
                match (w.dtype, acts(w.dtype), isa) {
                    (DType::Int8, Acts::Q8(a), _) => {
                        int8::matmul_rows(isa, w, a, n_tokens, rows, out, n)
                    }
                    (dtype, acts, Isa::Avx512) => {
                        avx512::matmul_rows(w, acts, tiles_of(dtype), n_tokens, rows, out, n)
                    }
                    (_, acts, _) => avx2::matmul_rows(w, acts, n_tokens, rows, out, n),
                }
            }
        });
    });
}

/// Whether `dtype` weights multiply activations quantized to [`Q8Rows`] (which hold
/// both the Q8_0 and the Q8_1 view of a block).
fn uses_q8(dtype: DType) -> bool {
    matches!(
        Precision::FollowWeights.activation_type(dtype),
        ActivationType::Q8_0 | ActivationType::Q8_1
    )
}

/// Whether `dtype` weights multiply activations quantized to [`BlockQ8K`].
fn uses_q8_k(dtype: DType) -> bool {
    Precision::FollowWeights.activation_type(dtype) == ActivationType::Q8K
}

/// Buffers the x86 kernels reuse from call to call.
#[derive(Default)]
pub(super) struct Scratch {
    q8_rows: Q8Rows,
    /// Activations packed for the AVX-512 panels (see `avx512::pack_tokens`).
    tiles: Vec<Lanes>,
}

/// 64 bytes, aligned so that a vector load of them is one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lanes([u32; 16]);
const _: () = assert!(std::mem::size_of::<Lanes>() == 64);

impl Lanes {
    const ZERO: Lanes = Lanes([0; 16]);
}

/// The bytes of `lanes`.
fn lane_bytes(lanes: &mut [Lanes]) -> &mut [u8] {
    // SAFETY: `Lanes` is 64 plain bytes with no padding; the length covers the slice.
    unsafe { std::slice::from_raw_parts_mut(lanes.as_mut_ptr().cast(), 64 * lanes.len()) }
}

/// Four f32 dot products with one activation row, for the f32 reference path.
///
/// # Safety
/// The CPU has AVX2 and FMA.
pub unsafe fn dot_f32_x4(w: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    // SAFETY: as the caller guarantees.
    unsafe { avx2::dot_f32_x4(w, x) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{isas, llama_cpp_rows, Coverage, Rng};
    use crate::quant::activation::{quantize_q8_1, quantize_q8_k, BlockQ8_1Act};

    /// Rows of activations with the cases quantizers trip on: a zero block, exact ties
    /// (the largest value 127 makes the scale 1, so 2.5 rounds to even), outliers.
    fn activations(n: usize, rng: &mut Rng) -> Vec<f32> {
        let mut x: Vec<f32> = (0..n).map(|_| rng.range(-2.0, 2.0)).collect();
        x[..32].fill(0.0);
        x[32..64].copy_from_slice(&[127.0, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -126.5].repeat(4));
        x[300] = -90.0;
        x[301] = 90.0;
        x
    }

    /// The SIMD quantizers write what the block quantizers do (which tests/activation.rs
    /// holds to llama.cpp's), on crafted rows and on the llama.cpp fixture's rows.
    #[test]
    fn simd_quantizers_match_the_block_quantizers() {
        let mut rng = Rng(3);
        let mut x = activations(8 * QK_K, &mut rng);
        x.extend(llama_cpp_rows());
        let mut blocks = vec![BlockQ8_1Act::ZERO; x.len() / 32];
        quantize_q8_1(&x, &mut blocks);
        let mut k_blocks = vec![BlockQ8K::ZERO; x.len() / QK_K];
        quantize_q8_k(&x, &mut k_blocks);
        // The SIMD quantizers of every x86 ISA this CPU has.
        let simd: Vec<Isa> = isas().into_iter().filter(|&i| i != Isa::Scalar).collect();
        let mut covered = Coverage::new("simd_quantizers_match_the_block_quantizers", simd.clone());
        for isa in simd {
            covered.ran(isa);
            let mut q = Q8Rows::default();
            q.resize(1, x.len());
            let mut k = vec![BlockQ8K::ZERO; x.len() / QK_K];
            let out = Q8Out {
                codes: &mut q.codes,
                d: &mut q.d,
                s: &mut q.s,
                sum: &mut q.sum,
            };
            // SAFETY: `isas` lists the ISAs this CPU has.
            unsafe {
                match isa {
                    Isa::Avx512 => {
                        avx512::quantize_q8(&x, out);
                        avx512::quantize_q8_k(&x, &mut k);
                    }
                    _ => {
                        avx2::quantize_q8(&x, out);
                        avx2::quantize_q8_k(&x, &mut k);
                    }
                }
            }
            for (i, b) in blocks.iter().enumerate() {
                assert_eq!(&q.codes[32 * i..32 * i + 32], &b.qs, "{isa:?} block {i}");
                assert_eq!(q.d[i], b.d.to_f32(), "{isa:?} block {i}");
                assert_eq!(q.s[i], b.s.to_f32(), "{isa:?} block {i}");
                assert_eq!(q.sum[i], b.qs.iter().map(|&c| c as i32).sum::<i32>());
            }
            for (i, (a, b)) in k.iter().zip(&k_blocks).enumerate() {
                assert_eq!(a.d.to_bits(), b.d.to_bits(), "{isa:?} Q8_K block {i}");
                assert_eq!(a.qs, b.qs, "{isa:?} Q8_K block {i}");
                assert_eq!(a.bsums, b.bsums, "{isa:?} Q8_K block {i}");
            }
        }
        covered.finish();
    }
}
