//! Dequantization is bit-identical to the `gguf` Python package's
//! `gguf.quants.dequantize` (fixture made by tools/reference/make_dequant_fixtures.py).

mod common;

use common::{fixture, hex};

use synapse_core::quant::dequantize_row;
use synapse_core::storage::AlignedBytes;
use synapse_core::DType;

#[test]
fn dequantize_matches_gguf_python_bit_for_bit() {
    let fixture = fixture("dequant.json");
    let cases = fixture["cases"].as_array().unwrap();
    let mut covered = std::collections::HashSet::new();
    for case in cases {
        let name = case["type"].as_str().unwrap();
        let dtype = DType::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .expect("known type");
        covered.insert(dtype);
        let bytes = AlignedBytes::copy_from(&hex(case["bytes_hex"].as_str().unwrap()));
        // Each number read as f64, then rounded to f32.
        let expected: Vec<f32> = serde_json::from_value(case["values"].clone()).unwrap();
        let mut out = vec![0f32; expected.len()];
        dequantize_row(dtype, &bytes, &mut out);
        for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{name} ({}) value {i}: {a} vs {b}",
                case["source"]
            );
        }
    }
    // Every type except F32 (a plain copy) and INT8 (never in GGUF files) has a case.
    assert_eq!(covered.len(), DType::ALL.len() - 2);
}
