//! The activation quantizers against llama.cpp's own (tests/fixtures/activations.json,
//! made by tools/reference/make_activation_fixture.py with llama-cpp-python 0.3.36):
//! its reference quantizers `quantize_row_q8_0_ref`, `quantize_row_q8_1_ref` and
//! `quantize_row_q8_K_ref`, and the CPU backend's `quantize_row_q8_0`/`_q8_1`/`_q8_K` that
//! its matmuls run (AVX2 versions for the 32-value blocks in that build). Synapse's blocks
//! have GGML's layouts (`BlockQ8_0Act` = block_q8_0, `BlockQ8_1Act` = block_q8_1,
//! `BlockQ8K` = block_q8_K), so their bytes are compared.

mod common;

use common::{fixture, hex};

use half::f16;
use synapse_core::quant::activation::{quantize_q8_0, quantize_q8_1, quantize_q8_k};
use synapse_core::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};

fn bytes_of<B>(blocks: &[B]) -> &[u8] {
    // SAFETY: the activation blocks are `#[repr(C)]` without padding (their sizes are
    // asserted next to them), so every byte is initialised.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast(), std::mem::size_of_val(blocks)) }
}

/// The bytes of `x` quantized by `quantize` to blocks of `len` values.
fn quantized<B: Clone>(x: &[f32], len: usize, zero: B, quantize: fn(&[f32], &mut [B])) -> Vec<u8> {
    let mut blocks = vec![zero; x.len() / len];
    quantize(x, &mut blocks);
    bytes_of(&blocks).to_vec()
}

/// Each case's input row and the bytes of its llama.cpp quantizer `key`.
fn cases(key: &str) -> Vec<(String, Vec<f32>, Vec<u8>)> {
    let fixture = fixture("activations.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 5, "{} cases", cases.len());
    cases
        .iter()
        .map(|case| {
            let x = hex(case["values_hex"].as_str().unwrap())
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let want = hex(case[key].as_str().unwrap());
            (case["name"].as_str().unwrap().to_string(), x, want)
        })
        .collect()
}

/// The code GGML's reference quantizer gives `x` in a block with scale `d` (f32, before
/// rounding to f16): `roundf(x * (1 / d))`, which rounds halves away from zero; and
/// whether `x * (1 / d)` is such a half.
fn reference_code(x: f32, d: f32) -> (i8, bool) {
    let v = x * if d != 0.0 { 1.0 / d } else { 0.0 };
    (v.round() as i8, v.fract().abs() == 0.5)
}

/// Checks 32-value blocks (`size` bytes each: scale(s), then 32 codes at `codes`) against
/// llama.cpp's reference quantizer. Synapse rounds halves to even, as the CPU backend's
/// quantizers of llama.cpp (x86 `_mm256_round_ps`, ARM `vcvtnq_s32_f32`) do, where the
/// reference rounds them away from zero: a code may differ from the reference's there
/// only, by one, to the even value; everything else is the reference's byte for byte.
/// Returns how many codes were such ties.
fn check_32(what: &str, x: &[f32], got: &[u8], want: &[u8], size: usize, codes: usize) -> usize {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut ties = 0;
    for (b, ((g, w), x)) in got
        .chunks_exact(size)
        .zip(want.chunks_exact(size))
        .zip(x.chunks_exact(32))
        .enumerate()
    {
        if g == w {
            continue;
        }
        assert_eq!(g[..2], w[..2], "{what} block {b}: d");
        let d = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert_eq!(
            f16::from_f32(d).to_le_bytes(),
            w[..2],
            "{what} block {b}: d"
        );
        for (j, (&g, &w)) in g[codes..].iter().zip(&w[codes..]).enumerate() {
            let (reference, tie) = reference_code(x[j], d);
            assert_eq!(
                w as i8, reference,
                "{what} block {b} value {j}: the fixture's code"
            );
            if g != w {
                assert!(
                    tie && (g as i8 as i32 - w as i8 as i32).abs() == 1 && g % 2 == 0,
                    "{what} block {b} value {j}: code {} vs llama.cpp's {} for {}",
                    g as i8,
                    w as i8,
                    x[j]
                );
                ties += 1;
            }
        }
        if codes == 4 {
            // Q8_1's s = d * sum(codes), with d before its rounding to f16.
            let sum: i32 = g[codes..].iter().map(|&q| q as i8 as i32).sum();
            let s = f16::from_f32(sum as f32 * d).to_le_bytes();
            assert_eq!(g[2..4], s, "{what} block {b}: s");
        }
    }
    ties
}

/// [`check_32`] on every case of the `kind` blocks (`size` bytes, codes at `codes`)
/// `quantize` writes. The fixture's edge row has a block of exact halves (its largest
/// value is 127), so some codes are ties.
fn check_ties(kind: &str, size: usize, codes: usize, quantize: impl Fn(&[f32]) -> Vec<u8>) {
    let mut ties = 0;
    for (name, x, want) in cases(&format!("{kind}_ref")) {
        ties += check_32(
            &format!("{name} {kind}"),
            &x,
            &quantize(&x),
            &want,
            size,
            codes,
        );
    }
    assert!(ties >= 8, "{ties} ties");
}

#[test]
fn q8_0_is_llama_cpps_up_to_rounding_ties() {
    check_ties("q8_0", 34, 2, |x| {
        quantized(x, 32, BlockQ8_0Act::ZERO, quantize_q8_0)
    });
}

#[test]
fn q8_1_is_llama_cpps_up_to_rounding_ties() {
    check_ties("q8_1", 36, 4, |x| {
        quantized(x, 32, BlockQ8_1Act::ZERO, quantize_q8_1)
    });
}

/// GGML's q8_K reference rounds with `nearest_int`, halves to even, as Synapse does: the
/// bytes are the same. (For an all-zero block the reference writes d and the codes but
/// leaves the sums as they were; the fixture's buffer started zeroed, as Synapse's are.)
#[test]
fn q8_k_is_llama_cpps_byte_for_byte() {
    for (name, x, want) in cases("q8_K_ref") {
        let got = quantized(&x, 256, BlockQ8K::ZERO, quantize_q8_k);
        for (b, (got, want)) in got.chunks(292).zip(want.chunks(292)).enumerate() {
            assert!(
                got == want,
                "{name} q8_K block {b} differs from llama.cpp's"
            );
        }
    }
}

/// What llama.cpp's CPU matmuls run: byte for byte the same as Synapse on these rows. (Its
/// AVX2 q8_0/q8_1 multiply by `127 / max` where the reference and Synapse multiply by
/// `1 / (max / 127)`; the two can differ in the last bit and, rarely, flip a code: about
/// 3 in 6.4 million gaussian values. These rows have no such value.)
#[test]
fn activations_are_what_llama_cpps_cpu_backend_runs() {
    for (kind, size) in [("q8_0", 34), ("q8_1", 36), ("q8_K", 292)] {
        for (name, x, want) in cases(&format!("{kind}_cpu")) {
            let got = match kind {
                "q8_0" => quantized(&x, 32, BlockQ8_0Act::ZERO, quantize_q8_0),
                "q8_1" => quantized(&x, 32, BlockQ8_1Act::ZERO, quantize_q8_1),
                _ => quantized(&x, 256, BlockQ8K::ZERO, quantize_q8_k),
            };
            for (b, (got, want)) in got.chunks(size).zip(want.chunks(size)).enumerate() {
                assert!(
                    got == want,
                    "{name} {kind} block {b} differs from llama.cpp's CPU backend"
                );
            }
        }
    }
}
