//! Quantizers against tests/fixtures/quantize/quantizers.json (made by
//! tools/reference/make_quantize_fixture.py): bytes identical to llama.cpp's own
//! quantizer (`ggml_quantize_chunk`, which runs `quantize_row_*_ref`) for every format,
//! which for the 32-value formats and the float types are gguf-py's too.

mod common;

use common::{fixture, hex};

use serde_json::Value;
use synapse_core::quant::dequantize_row;
use synapse_core::quant::quantize::{quantize_row, quantize_tensor, QuantizeError};
use synapse_core::{DType, Storage, WeightTensor};

/// The case's input rows.
fn rows(case: &Value) -> (usize, Vec<f32>) {
    let values = hex(case["values_hex"].as_str().unwrap())
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (case["cols"].as_u64().unwrap() as usize, values)
}

fn quantize(dtype: DType, cols: usize, values: &[f32]) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols).unwrap();
    let mut out = vec![0u8; values.len() / cols * row_bytes];
    for (x, dst) in values
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(row_bytes))
    {
        quantize_row(dtype, x, dst).unwrap();
    }
    out
}

/// Checks `quantize_row`'s bytes for the fixture entries `group` (`"simple"` or
/// `"k_quants"`: type name to llama.cpp's bytes as hex) block by block; returns how many
/// (input, type) pairs it checked.
fn check_group(group: &str) -> usize {
    let fixture = fixture("quantize/quantizers.json");
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let (cols, values) = rows(case);
        for (name, want) in case[group].as_object().unwrap() {
            let dtype = DType::from_name(name).expect("known type");
            let got = quantize(dtype, cols, &values);
            let want = hex(want.as_str().unwrap());
            assert_eq!(got.len(), want.len(), "{} {name}", case["name"]);
            let block = dtype.block_bytes();
            for (i, (g, w)) in got.chunks(block).zip(want.chunks(block)).enumerate() {
                assert_eq!(
                    g, w,
                    "{} {name}: block {i} differs from llama.cpp's",
                    case["name"]
                );
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn simple_formats_match_llama_cpp_and_gguf_py_byte_for_byte() {
    // Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16 and BF16 on every input.
    assert_eq!(
        check_group("simple"),
        7 * fixture("quantize/quantizers.json")["cases"]
            .as_array()
            .unwrap()
            .len()
    );
}

/// The K-quants' scale search follows GGML's `make_qkx2_quants` (Q4_K, Q5_K) and
/// `make_qx_quants` (Q6_K) float operation for float operation, so the bytes are llama.cpp's.
#[test]
fn k_quants_match_llama_cpp_byte_for_byte() {
    assert_eq!(
        check_group("k_quants"),
        3 * fixture("quantize/quantizers.json")["cases"]
            .as_array()
            .unwrap()
            .len()
    );
}

/// INT8 keeps one scale per row, so its error is half a step of `max|row| / 127`.
#[test]
fn int8_error_is_within_half_a_step() {
    let fixture = fixture("quantize/quantizers.json");
    for case in fixture["cases"].as_array().unwrap() {
        let (cols, values) = rows(case);
        let bytes = quantize(DType::Int8, cols, &values);
        let row_bytes = DType::Int8.row_bytes(cols).unwrap();
        let mut back = vec![0f32; cols];
        for (x, q) in values.chunks_exact(cols).zip(bytes.chunks_exact(row_bytes)) {
            dequantize_row(DType::Int8, q, &mut back);
            let step = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in x.iter().zip(&back) {
                assert!(
                    (a - b).abs() <= step * 0.5001,
                    "{}: {a} vs {b}",
                    case["name"]
                );
            }
        }
    }
}

fn tensor(name: &str, dtype: DType, rows: usize, cols: usize, values: &[f32]) -> WeightTensor {
    let bytes = quantize(dtype, cols, values);
    let len = bytes.len();
    WeightTensor::new(
        name.into(),
        dtype,
        rows,
        cols,
        Storage::from_vec(bytes),
        0..len,
    )
}

#[test]
fn quantize_tensor_requantizes_every_row() {
    let (rows, cols) = (5, 256);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let q4_1 = tensor("w", DType::Q4_1, rows, cols, &values);
    for target in DType::ALL {
        let out = quantize_tensor(&q4_1, target).unwrap();
        assert_eq!(
            (out.dtype, out.rows, out.cols, out.name.as_str()),
            (target, rows, cols, "w")
        );
        // Each row is what quantize_row makes of the dequantized source row.
        let mut src = vec![0f32; cols];
        let mut want = vec![0u8; target.row_bytes(cols).unwrap()];
        for r in 0..rows {
            q4_1.dequantize_row(r, &mut src);
            quantize_row(target, &src, &mut want).unwrap();
            assert_eq!(out.row(r), &want[..], "{target} row {r}");
        }
    }
}

#[test]
fn quantize_tensor_names_the_tensor_when_rows_do_not_divide() {
    let values = vec![0.5f32; 2 * 96];
    let w = tensor("blk.0.attn_q.weight", DType::F32, 2, 96, &values);
    let err = quantize_tensor(&w, DType::Q4K).unwrap_err();
    assert_eq!(
        err,
        QuantizeError::Tensor {
            tensor: "blk.0.attn_q.weight".into(),
            source: Box::new(QuantizeError::BlockSize {
                dtype: DType::Q4K,
                len: 96,
                block: 256
            }),
        }
    );
    assert!(err.to_string().contains("blk.0.attn_q.weight"), "{err}");
    assert!(quantize_tensor(&w, DType::Q8_0).is_ok());
}
