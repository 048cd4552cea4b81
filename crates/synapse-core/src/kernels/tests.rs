//! Every ISA's matmul against the scalar oracle, and batched (GEMM) against one token at
//! a time (GEMV), for every weight type, on random weights and activations; and the test
//! helpers the other kernel tests share (random blocks, activations, ISA coverage).

use super::{
    dot_f32_x4, matmul_many_with, quantized_dot_portable, scalar, ActRow, ActivationType, Isa,
    MatmulScratch, Precision,
};
use crate::dtype::{DType, QK_K};
use crate::quant::activation::{quantize_q8_0, quantize_q8_1, quantize_q8_k};
use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::{dequantize_row, panel_rows};
use crate::storage::{AlignedBytes, Storage};
use crate::tensor::WeightTensor;
use half::{bf16, f16};
use std::fmt::Debug;
// On wasm32 these tests run under Node (scripts/test-wasm.sh): `#[test]` below is
// wasm-bindgen-test's.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// splitmix64: reproducible random bits without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A block scale or minimum of the size real models have, of either sign: GGML's
    /// Q4_0/Q5_0 scales are negative wherever a block's largest value is positive, Q4_1
    /// minimums are mostly negative, and the kernels must get every sign right.
    pub(crate) fn scale(&mut self) -> f32 {
        let s = self.range(1e-3, 5e-2);
        if self.next() & 1 == 0 {
            s
        } else {
            -s
        }
    }
}

/// Every kernel ISA this CPU runs, from its features: the scalar path always, then each
/// x86 level or NEON variant it has.
pub(crate) fn isas() -> Vec<Isa> {
    let mut isas = vec![Isa::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if super::x86::has_avx2() {
            isas.push(Isa::Avx2);
        }
        if super::x86::has_avx512() {
            isas.push(Isa::Avx512);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            isas.push(Isa::Neon);
        }
        if super::aarch64::has_dotprod() {
            isas.push(Isa::NeonDot);
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    isas.push(Isa::Simd128);
    isas
}

/// The ISAs one test ran its kernels with. Which paths a test covers depends on the host
/// CPU, so [`Coverage::finish`] prints them and, under `CI=true`, fails when the test
/// skipped one that this CPU supports.
pub(crate) struct Coverage<T> {
    test: &'static str,
    supported: Vec<T>,
    ran: Vec<T>,
}

impl<T: Copy + Debug + PartialEq> Coverage<T> {
    /// `supported`: the ISAs of this CPU that `test` is meant to run.
    pub(crate) fn new(test: &'static str, supported: Vec<T>) -> Coverage<T> {
        Coverage {
            test,
            supported,
            ran: Vec::new(),
        }
    }

    /// Records that the test ran a kernel of `isa`.
    pub(crate) fn ran(&mut self, isa: T) {
        if !self.ran.contains(&isa) {
            self.ran.push(isa);
        }
    }

    pub(crate) fn finish(self) {
        let Coverage {
            test,
            supported,
            ran,
        } = self;
        eprintln!("{test}: covered {ran:?}");
        let skipped: Vec<T> = supported.into_iter().filter(|i| !ran.contains(i)).collect();
        if skipped.is_empty() {
            return;
        }
        let message = format!("{test}: skipped {skipped:?}, which this CPU supports");
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{message}");
        }
        eprintln!("warning: {message}");
    }
}

/// The rows of tests/fixtures/activations.json, whose llama.cpp quantizations
/// tests/activation.rs compares the block quantizers with. Embedded, since the wasm32
/// tests cannot read files.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
pub(crate) fn llama_cpp_rows() -> Vec<f32> {
    let text = include_str!("../../../../tests/fixtures/activations.json");
    let fixture: serde_json::Value = serde_json::from_str(text).expect("JSON");
    let mut x = Vec::new();
    for case in fixture["cases"].as_array().expect("cases") {
        let hex = case["values_hex"].as_str().expect("hex");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        x.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
        );
    }
    x
}

/// Activations quantized to the block type a weight format pairs with, by the same
/// quantizers `matmul` uses.
pub(crate) enum Acts {
    Q8_0(Vec<BlockQ8_0Act>),
    Q8_1(Vec<BlockQ8_1Act>),
    Q8K(Vec<BlockQ8K>),
}

impl Acts {
    pub(crate) fn quantize(dtype: DType, x: &[f32]) -> Acts {
        match dtype.format().activation {
            ActivationType::Q8_1 => {
                let mut a = vec![BlockQ8_1Act::ZERO; x.len() / 32];
                quantize_q8_1(x, &mut a);
                Acts::Q8_1(a)
            }
            ActivationType::Q8K => {
                let mut a = vec![BlockQ8K::ZERO; x.len() / QK_K];
                quantize_q8_k(x, &mut a);
                Acts::Q8K(a)
            }
            ActivationType::Q8_0 | ActivationType::F32 => {
                let mut a = vec![BlockQ8_0Act::ZERO; x.len() / 32];
                quantize_q8_0(x, &mut a);
                Acts::Q8_0(a)
            }
        }
    }

    pub(super) fn row(&self) -> ActRow<'_> {
        match self {
            Acts::Q8_0(a) => ActRow::Q8_0(a),
            Acts::Q8_1(a) => ActRow::Q8_1(a),
            Acts::Q8K(a) => ActRow::Q8K(a),
        }
    }
}

/// Byte offsets of the f16 scales and minimums in one block of `dtype` (random bytes
/// there would be NaNs, infinities or absurd magnitudes): `d`, then `m` or `dmin`.
pub(crate) fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q6K => &[208],
        DType::F32 | DType::F16 | DType::BF16 | DType::Int8 => &[],
    }
}

/// A random `rows x cols` weight of `dtype`. The first rows fill their codes with one
/// extreme byte each (largest products, sign edge cases); later rows are random. Scales
/// and minimums (and an INT8 row's scale) are random in magnitude and sign.
pub(crate) fn random_weight(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> WeightTensor {
    let row_bytes = dtype.row_bytes(cols).expect("whole blocks");
    let mut bytes = vec![0u8; rows * row_bytes];
    // (`max(1)`: rows of no values have no bytes to fill.)
    for (r, row) in bytes.chunks_exact_mut(row_bytes.max(1)).enumerate() {
        match dtype {
            DType::F32 => {
                for v in row.chunks_exact_mut(4) {
                    v.copy_from_slice(&rng.range(-1.0, 1.0).to_le_bytes());
                }
            }
            DType::F16 => {
                for v in row.chunks_exact_mut(2) {
                    v.copy_from_slice(&f16::from_f32(rng.range(-1.0, 1.0)).to_le_bytes());
                }
            }
            DType::BF16 => {
                for v in row.chunks_exact_mut(2) {
                    v.copy_from_slice(&bf16::from_f32(rng.range(-1.0, 1.0)).to_le_bytes());
                }
            }
            _ => {
                let fill = [0x00, 0xFF, 0x80, 0x7F].get(r).copied();
                for b in row.iter_mut() {
                    *b = fill.unwrap_or(rng.next() as u8);
                }
                for block in row.chunks_exact_mut(dtype.block_bytes()) {
                    for &at in scale_offsets(dtype) {
                        let scale = f16::from_f32(rng.scale());
                        block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                    }
                }
                if dtype == DType::Int8 {
                    // The row's f32 scale comes first.
                    row[..4].copy_from_slice(&rng.scale().to_le_bytes());
                }
            }
        }
    }
    let len = bytes.len();
    WeightTensor::new(
        dtype.name().into(),
        dtype,
        rows,
        cols,
        Storage::from_vec(bytes),
        0..len,
    )
}

/// Activations: mostly uniform, some tokens with one large outlier, one all equal.
pub(crate) fn random_acts(n_tokens: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n_tokens * cols).map(|_| rng.range(-1.0, 1.0)).collect();
    for (t, row) in x.chunks_exact_mut(cols).enumerate() {
        match t % 4 {
            1 => row[(t * 7) % cols] = 30.0,
            2 => row.fill(-0.5),
            _ => {}
        }
    }
    x
}

/// The oracle: dot of weight row `r` with token `x`, by the scalar kernels on the block
/// quantizers' activations (or in f32 for float weights).
fn oracle(w: &WeightTensor, r: usize, x: &[f32]) -> f32 {
    let row = w.row(r);
    if w.dtype.is_quantized() {
        return quantized_dot_portable(w.dtype, row, Acts::quantize(w.dtype, x).row());
    }
    let mut deq = vec![0f32; w.cols];
    dequantize_row(w.dtype, row, &mut deq);
    scalar::dot_f32(&deq, x)
}

/// Each value of a weight row as the part its scales give plus the part its offset gives
/// (`m` of Q4_1/Q5_1, `-dmin * min` of the K-quants; none in the other formats): the row
/// dequantized with the offsets zeroed, and with the scales zeroed.
pub(crate) fn weight_parts(dtype: DType, row: &[u8], cols: usize) -> (Vec<f32>, Vec<f32>) {
    let mut parts = (vec![0f32; cols], vec![0f32; cols]);
    let &[d, m] = scale_offsets(dtype) else {
        dequantize_row(dtype, row, &mut parts.0);
        return parts;
    };
    let zeroed = |field: usize| {
        let mut bytes = row.to_vec();
        for block in bytes.chunks_exact_mut(dtype.block_bytes()) {
            block[field..field + 2].fill(0);
        }
        AlignedBytes::copy_from(&bytes)
    };
    dequantize_row(dtype, &zeroed(m), &mut parts.0);
    dequantize_row(dtype, &zeroed(d), &mut parts.1);
    parts
}

/// `sum (|scale part| + |offset part|) * |x|` over a row (see [`weight_parts`]): what the
/// rounding errors of a dot product are relative to, however much the parts cancel.
pub(crate) fn magnitude(dtype: DType, row: &[u8], x: &[f64]) -> f64 {
    let (scaled, offset) = weight_parts(dtype, row, x.len());
    let parts = scaled.iter().zip(&offset);
    parts
        .zip(x)
        .map(|((s, o), x)| (s.abs() as f64 + o.abs() as f64) * x.abs())
        .sum()
}

/// [`magnitude`] of row `r` of `w` with token `x`.
fn row_magnitude(w: &WeightTensor, r: usize, x: &[f32]) -> f32 {
    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    magnitude(w.dtype, w.copy_row(r, &mut Vec::new()), &x) as f32
}

/// Row lengths that exercise each kernel's tails: an odd number of 32-value blocks (for
/// INT8, a last AVX-512 step of one block),
/// several K-quant blocks, float rows that are not a multiple of 16 (or 8) long.
fn test_cols(dtype: DType) -> usize {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => 203,
        DType::Q4K | DType::Q5K | DType::Q6K => 768,
        _ => 224,
    }
}

fn matmul_isa(isa: Isa, w: &WeightTensor, x: &[f32], n_tokens: usize, threads: usize) -> Vec<f32> {
    let mut out = vec![0f32; n_tokens * w.rows];
    let mut scratch = MatmulScratch::default();
    let parts = &mut [(w, &mut out[..])];
    matmul_many_with(
        isa,
        parts,
        x,
        n_tokens,
        Precision::FollowWeights,
        threads,
        &mut scratch,
    );
    out
}

/// The largest difference from the oracle allowed for row `r` of `w` with token `x`,
/// relative to the products' magnitude `sum |w_i x_i|` (plus 1e-6). Only float rounding
/// separates the kernels from the oracle (they compute the same integer sums, or the same
/// f32 products); about 1e-7 is typical. The K-quants and Q4_1/Q5_1 subtract a float
/// offset term, which rounds on a larger value.
fn bound(w: &WeightTensor, r: usize, x: &[f32]) -> f32 {
    let tolerance = match w.dtype {
        DType::F32 | DType::F16 | DType::BF16 => 1e-6,
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 | DType::Q6K | DType::Int8 => 1e-6,
        DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => 2e-6,
    };
    tolerance * row_magnitude(w, r, x) + 1e-6
}

/// With each ISA (marked as run in `covered`), for each weight type: `check(isa, w, x)`
/// on random weights of `rows` rows and `n_tokens` random tokens.
fn each_isa_and_dtype(
    rng: &mut Rng,
    covered: &mut Coverage<Isa>,
    (rows, n_tokens): (usize, usize),
    mut check: impl FnMut(Isa, &WeightTensor, &[f32]),
) {
    for isa in isas() {
        covered.ran(isa);
        for dtype in DType::ALL {
            let cols = test_cols(dtype);
            let w = random_weight(dtype, rows, cols, rng);
            let x = random_acts(n_tokens, cols, rng);
            check(isa, &w, &x);
        }
    }
}

/// A weight of rows with no values (an empty tensor a file may hold) gives zeros, on
/// every ISA, type and precision: no kernel steps through a zero-length row.
#[test]
fn rows_of_no_values_give_zeros() {
    let mut rng = Rng(9);
    for isa in isas() {
        for dtype in DType::ALL {
            let w = random_weight(dtype, 5, 0, &mut rng);
            for precision in [Precision::FollowWeights, Precision::F32] {
                let mut out = vec![f32::NAN; 3 * w.rows];
                let parts = &mut [(&w, &mut out[..])];
                let mut scratch = MatmulScratch::default();
                matmul_many_with(isa, parts, &[], 3, precision, 2, &mut scratch);
                assert!(
                    out.iter().all(|&v| v == 0.0),
                    "{isa:?} {dtype} {precision:?}"
                );
            }
        }
    }
}

#[test]
fn every_isa_dot_f32_x4_matches_scalar() {
    let mut rng = Rng(7);
    let mut covered = Coverage::new("every_isa_dot_f32_x4_matches_scalar", isas());
    for isa in isas() {
        covered.ran(isa);
        // Lengths around the kernels' steps of 4, 8 and 16 floats.
        for n in [0, 1, 3, 15, 16, 17, 64, 100, 576, 1000] {
            let mut random = || -> Vec<f32> { (0..n).map(|_| rng.range(-1.0, 1.0)).collect() };
            let w: [Vec<f32>; 4] = std::array::from_fn(|_| random());
            let x = random();
            let dots = dot_f32_x4(isa, [&w[0], &w[1], &w[2], &w[3]], &x);
            for (r, (w, got)) in w.iter().zip(dots).enumerate() {
                let magnitude: f32 = w.iter().zip(&x).map(|(w, x)| (w * x).abs()).sum();
                let err = (got - scalar::dot_f32(w, &x)).abs();
                assert!(
                    err <= 1e-6 * magnitude,
                    "{isa:?} n = {n} row {r}: error {err:e}"
                );
            }
        }
    }
    covered.finish();
}

#[test]
fn every_isa_matches_the_scalar_oracle() {
    let mut rng = Rng(1);
    // Rows: two 16-row panels and 5 more. Tokens: one (decode), a few (below the panels'
    // minimum), one partial tile of 8 (the panels' minimum, a batched decode step of a
    // few sequences), and a full tile and 5 more.
    let rows = 37;
    let mut covered = Coverage::new("every_isa_matches_the_scalar_oracle", isas());
    for n_tokens in [1, 3, 5, 13] {
        each_isa_and_dtype(&mut rng, &mut covered, (rows, n_tokens), |isa, w, x| {
            let got = matmul_isa(isa, w, x, n_tokens, 2);
            for (t, xt) in x.chunks_exact(w.cols).enumerate() {
                for r in 0..rows {
                    let (want, got) = (oracle(w, r, xt), got[t * rows + r]);
                    assert!(
                        (got - want).abs() <= bound(w, r, xt),
                        "{isa:?} {} row {r} token {t}/{n_tokens}: {got} vs oracle {want}",
                        w.dtype
                    );
                }
            }
        });
    }
    covered.finish();
}

#[test]
fn batched_matmul_equals_one_token_at_a_time() {
    let mut rng = Rng(2);
    // More tokens than a token chunk; rows and tokens not multiples of the tiles.
    let (rows, n_tokens) = (37, 37);
    let mut covered = Coverage::new("batched_matmul_equals_one_token_at_a_time", isas());
    each_isa_and_dtype(&mut rng, &mut covered, (rows, n_tokens), |isa, w, x| {
        let batched = matmul_isa(isa, w, x, n_tokens, 2);
        for (t, xt) in x.chunks_exact(w.cols).enumerate() {
            let single = matmul_isa(isa, w, xt, 1, 1);
            for r in 0..rows {
                let got = batched[t * rows + r];
                assert!(
                    (got - single[r]).abs() <= bound(w, r, xt),
                    "{isa:?} {} row {r} token {t}: batched {got} vs alone {}",
                    w.dtype,
                    single[r]
                );
            }
        }
    });
    covered.finish();
}

#[test]
fn matmul_many_equals_one_matmul_per_weight() {
    let mut rng = Rng(4);
    // Every weight type against the same input, with row counts that are and are not
    // whole panels; one token (decode), a few, enough for the panels, and enough that two
    // threads quantize and pack (with one thread as the reference).
    let cols = 512;
    let row_counts = [37, 16, 5, 48];
    let mut weights: Vec<WeightTensor> = DType::ALL
        .iter()
        .enumerate()
        .map(|(i, &dtype)| random_weight(dtype, row_counts[i % row_counts.len()], cols, &mut rng))
        .collect();
    // And the interleaved layout among them.
    let interleaved: Vec<WeightTensor> = weights
        .iter()
        .filter_map(|w| random_weight(w.dtype, 48, cols, &mut Rng(5)).interleaved())
        .collect();
    weights.extend(interleaved);
    let mut covered = Coverage::new("matmul_many_equals_one_matmul_per_weight", isas());
    for n_tokens in [1, 3, 13, 37] {
        let x = random_acts(n_tokens, cols, &mut rng);
        for isa in isas() {
            covered.ran(isa);
            for precision in [Precision::FollowWeights, Precision::F32] {
                let mut outs: Vec<Vec<f32>> = weights
                    .iter()
                    .map(|w| vec![f32::NAN; n_tokens * w.rows])
                    .collect();
                let mut parts: Vec<(&WeightTensor, &mut [f32])> = weights
                    .iter()
                    .zip(outs.iter_mut())
                    .map(|(w, out)| (w, &mut out[..]))
                    .collect();
                let mut scratch = MatmulScratch::default();
                matmul_many_with(isa, &mut parts, &x, n_tokens, precision, 2, &mut scratch);
                for (w, got) in weights.iter().zip(&outs) {
                    let mut want = vec![0f32; n_tokens * w.rows];
                    let parts = &mut [(w, &mut want[..])];
                    matmul_many_with(isa, parts, &x, n_tokens, precision, 1, &mut scratch);
                    for (i, (&got, &want)) in got.iter().zip(&want).enumerate() {
                        let (t, r) = (i / w.rows, i % w.rows);
                        let xt = &x[t * cols..(t + 1) * cols];
                        assert!(
                            (got - want).abs() <= bound(w, r, xt),
                            "{isa:?} {precision:?} {} row {r} token {t}/{n_tokens}: \
                             together {got} vs alone {want}",
                            w.dtype
                        );
                    }
                }
            }
        }
    }
    covered.finish();
}

#[test]
fn interleaved_weights_give_the_rows_results() {
    let mut rng = Rng(6);
    // Three panels, so that two threads split them; tokens as in the oracle test, and a
    // run of two tokens.
    let rows = 48;
    let mut covered = Coverage::new("interleaved_weights_give_the_rows_results", isas());
    for dtype in DType::ALL.into_iter().filter(|&d| panel_rows(d).is_some()) {
        let cols = test_cols(dtype);
        let w = random_weight(dtype, rows, cols, &mut rng);
        let packed = w.interleaved().expect("whole panels");
        let (mut a, mut b, mut buf) = (vec![0f32; cols], vec![0f32; cols], Vec::new());
        for r in 0..rows {
            w.dequantize_row(r, &mut a);
            packed.dequantize_row(r, &mut b);
            assert_eq!(a, b, "{dtype} row {r} dequantized");
            assert_eq!(
                packed.copy_row(r, &mut buf),
                w.row(r),
                "{dtype} row {r} bytes"
            );
        }
        for n_tokens in [1, 2, 3, 13] {
            let x = random_acts(n_tokens, cols, &mut rng);
            for isa in isas() {
                covered.ran(isa);
                for precision in [Precision::FollowWeights, Precision::F32] {
                    let run = |w: &WeightTensor, threads| {
                        let mut out = vec![f32::NAN; n_tokens * rows];
                        let mut scratch = MatmulScratch::default();
                        let parts = &mut [(w, &mut out[..])];
                        matmul_many_with(
                            isa,
                            parts,
                            &x,
                            n_tokens,
                            precision,
                            threads,
                            &mut scratch,
                        );
                        out
                    };
                    let (want, got) = (run(&w, 1), run(&packed, 2));
                    for (i, (&got, &want)) in got.iter().zip(&want).enumerate() {
                        let (t, r) = (i / rows, i % rows);
                        let xt = &x[t * cols..(t + 1) * cols];
                        assert!(
                            (got - want).abs() <= bound(&w, r, xt),
                            "{isa:?} {precision:?} {dtype} row {r} token {t}/{n_tokens}: \
                             interleaved {got} vs rows {want}"
                        );
                    }
                }
            }
        }
    }
    covered.finish();
}
