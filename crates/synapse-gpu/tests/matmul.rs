//! The GPU's matrix products against the scalar oracle: each weight row dequantized on
//! the CPU (`synapse_core::quant::dequantize_row`), dotted in f64.
//!
//! They run on whatever adapter wgpu finds; CI installs lavapipe (Mesa's Vulkan on the
//! CPU) and sets SYNAPSE_REQUIRE_GPU=1, so that a missing adapter fails there instead of
//! skipping.

mod common;

use common::{gpu, gpus, values};
use synapse_core::quant::quantize::quantize_row;
use synapse_core::{DType, Storage, WeightTensor};
use synapse_gpu::{Gpu, GpuError};

fn matrix(dtype: DType, rows: usize, cols: usize, seed: u64) -> WeightTensor {
    let row_bytes = dtype.row_bytes(cols).expect("whole blocks");
    let mut bytes = vec![0u8; rows * row_bytes];
    let f32s = values(seed, rows * cols);
    for (src, dst) in f32s
        .chunks_exact(cols)
        .zip(bytes.chunks_exact_mut(row_bytes))
    {
        quantize_row(dtype, src, dst).expect("quantizable");
    }
    let len = bytes.len();
    WeightTensor::new(
        format!("w.{dtype}"),
        dtype,
        rows,
        cols,
        Storage::from_vec(bytes),
        0..len,
    )
}

/// The GPU's product of `rows` x `cols` weights of `dtype` with `tokens` activation rows,
/// against the oracle: each value within 1e-5 of the sum of the products' magnitudes
/// (the GPU adds in another order, in f32).
fn check(gpu: &Gpu, dtype: DType, rows: usize, cols: usize, tokens: usize) {
    check_in_parts(gpu, dtype, rows, cols, tokens, u64::MAX);
}

/// [`check`] with the matrix bound in parts of at most `part_bytes`.
fn check_in_parts(
    gpu: &Gpu,
    dtype: DType,
    rows: usize,
    cols: usize,
    tokens: usize,
    part_bytes: u64,
) {
    let w = matrix(dtype, rows, cols, (rows * 31 + cols) as u64);
    let x = values(7 + tokens as u64, tokens * cols);
    let gpu_w = match part_bytes {
        u64::MAX => gpu.upload(&w),
        _ => gpu.upload_in_parts(&w, part_bytes),
    };
    let got = gpu
        .matmul(&gpu_w.expect("upload"), &x, tokens)
        .expect("matmul");
    let mut row = vec![0f32; cols];
    for r in 0..rows {
        w.dequantize_row(r, &mut row);
        for (t, x) in x.chunks_exact(cols).enumerate() {
            let exact: f64 = row.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum();
            let scale: f64 = row
                .iter()
                .zip(x)
                .map(|(&w, &x)| (w as f64 * x as f64).abs())
                .sum();
            let value = got[t * rows + r] as f64;
            assert!(
                (value - exact).abs() <= 1e-5 * scale + 1e-6,
                "{dtype} {rows}x{cols}, token {t} row {r}: {value} against {exact}"
            );
        }
    }
}

const TYPES: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
];

#[test]
fn every_weight_type_matches_the_scalar_oracle() {
    for gpu in gpus() {
        eprintln!("subgroups: {}", gpu.has_subgroups());
        for dtype in TYPES {
            // One block per row (a K-quant's 256 values); rows that leave lanes idle; rows
            // of 2304 values (SmolLM2's 576 for the 32-value types), with prefill; a prefill
            // of one whole tile of 8 tokens and part of a second.
            let k_quant = dtype.block_len() == 256;
            let cols = |n: usize| if k_quant { 8 * n } else { n };
            for (rows, width, tokens) in [(3, 32, 1), (37, 2080, 2), (64, 288, 5), (5, 96, 11)] {
                check(&gpu, dtype, rows, cols(width), tokens);
            }
        }
    }
}

/// A matrix larger than the device binds at once goes up in parts of whole rows: here
/// parts of 2 rows (Q8_0 rows of 64 values take 72 bytes on the GPU) and of 5 K-quant
/// rows; a row larger than the limit is an error naming the tensor.
#[test]
fn a_matrix_in_parts_gives_the_same_product() {
    for gpu in gpus() {
        eprintln!("subgroups: {}", gpu.has_subgroups());
        check_in_parts(&gpu, DType::Q8_0, 9, 64, 3, 150);
        check_in_parts(&gpu, DType::Q6K, 13, 256, 9, 5 * 212);
        let error = gpu
            .upload_in_parts(&matrix(DType::F32, 2, 64, 1), 100)
            .err()
            .expect("an error");
        assert!(
            error
                .to_string()
                .starts_with("w.F32: a row takes 256 bytes"),
            "{error}"
        );
    }
}

#[test]
fn the_device_is_on_the_first_adapter_listed() {
    let Some(gpu) = gpu() else { return };
    let listed = synapse_gpu::adapters();
    assert_eq!(listed[0].to_string(), gpu.adapter().to_string());
}

#[test]
fn rows_past_one_line_of_workgroups_are_computed() {
    let Some(gpu) = gpu() else { return };
    // 32768 rows fill the first line of workgroups (see matmul.wgsl's `row_span`).
    check(&gpu, DType::Q8_0, 32768 + 100, 32, 1);
}

#[test]
fn types_without_a_kernel_and_odd_f16_rows_are_errors_naming_the_tensor() {
    let Some(gpu) = gpu() else { return };
    let error = gpu
        .upload(&matrix(DType::Q5_0, 2, 64, 1))
        .err()
        .expect("an error");
    assert!(
        matches!(
            error,
            GpuError::UnsupportedType {
                dtype: DType::Q5_0,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().starts_with("w.Q5_0: "), "{error}");
    let error = gpu
        .upload(&matrix(DType::F16, 2, 3, 1))
        .err()
        .expect("an error");
    assert!(
        error.to_string().contains("w.F16: F16 rows of 3 values"),
        "{error}"
    );
}
