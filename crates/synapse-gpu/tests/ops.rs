//! The GPU's norms, gated activations, adds and argmax against synapse_core's CPU ops.

mod common;

use common::{gpu, values};
use synapse_core::ops::{self, Activation};
use synapse_gpu::{Gpu, NormWeights};

/// `got` within `tolerance` of `want`, relative to the larger of 1 and the value.
fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * w.abs().max(1.0),
            "{what}, value {i}: {g} against {w}"
        );
    }
}

/// Rows of SmolLM2's width, rows narrower than a workgroup, and a wide one.
const SHAPES: [(usize, usize); 3] = [(5, 576), (3, 17), (2, 4096)];

#[test]
fn norms_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    for (rows, width) in SHAPES {
        let x: Vec<f32> = values(1, rows * width).iter().map(|v| 3.0 * v).collect();
        let (weight, bias) = (values(2, width), values(3, width));
        let (mut rms, mut layer) = (vec![0f32; rows * width], vec![0f32; rows * width]);
        for ((x, rms), layer) in x
            .chunks_exact(width)
            .zip(rms.chunks_exact_mut(width))
            .zip(layer.chunks_exact_mut(width))
        {
            ops::rms_norm(x, &weight, 1e-5, rms);
            ops::layer_norm(x, &weight, &bias, 1e-5, layer);
        }
        let buffers = |gpu: &Gpu| (gpu.upload_f32(&x), gpu.buffer(rows * width));
        let (x_buf, out) = buffers(&gpu);
        let mut encoder = gpu.encoder();
        let weight_buf = gpu.upload_f32(&weight);
        let rms_weights = NormWeights::Rms(&weight_buf);
        gpu.encode_norm(&mut encoder, &x_buf, rms_weights, rows, width, 1e-5, &out);
        let got = gpu.read_f32(encoder, &out, rows * width).unwrap();
        assert_close(&format!("rms_norm {rows}x{width}"), &got, &rms, 1e-5);

        let mut encoder = gpu.encoder();
        let bias_buf = gpu.upload_f32(&bias);
        let layer_weights = NormWeights::Layer(&weight_buf, &bias_buf);
        gpu.encode_norm(&mut encoder, &x_buf, layer_weights, rows, width, 1e-5, &out);
        let got = gpu.read_f32(encoder, &out, rows * width).unwrap();
        assert_close(&format!("layer_norm {rows}x{width}"), &got, &layer, 1e-5);
    }
}

#[test]
fn gated_activations_and_adds_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    // Past one line of workgroups (32768 x 256 values) too.
    for len in [1, 300, 32768 * 256 + 1000] {
        // Up to +-12: where exp and tanh saturate.
        let gate: Vec<f32> = values(4, len).iter().map(|v| 12.0 * v).collect();
        let up = values(5, len);
        for activation in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
            let mut want = gate.clone();
            ops::gated(&mut want, &up, activation);
            let (gate_buf, up_buf) = (gpu.upload_f32(&gate), gpu.upload_f32(&up));
            let mut encoder = gpu.encoder();
            gpu.encode_gated(&mut encoder, &gate_buf, &up_buf, len, activation);
            let got = gpu.read_f32(encoder, &gate_buf, len).unwrap();
            assert_close(&format!("{activation:?} of {len}"), &got, &want, 2e-6);
        }
        let mut want = gate.clone();
        ops::add_assign(&mut want, &up);
        let (acc, x) = (gpu.upload_f32(&gate), gpu.upload_f32(&up));
        let mut encoder = gpu.encoder();
        gpu.encode_add(&mut encoder, &acc, &x, len);
        assert_close(
            "add",
            &gpu.read_f32(encoder, &acc, len).unwrap(),
            &want,
            0.0,
        );
    }
}

#[test]
fn argmax_takes_the_first_largest_value_and_skips_nan() {
    let Some(gpu) = gpu() else { return };
    let width = 49152;
    let mut rows = [values(6, width), vec![1.0; width], values(7, width)];
    rows[0][40000] = 5.0; // the largest, in another lane than the first
    rows[1][3] = 2.0; // ties after it are not taken
    rows[1][4] = 2.0;
    rows[2][0] = f32::NAN;
    rows[2][77] = 9.0;
    let x: Vec<f32> = rows.concat();
    let (x, out) = (gpu.upload_f32(&x), gpu.buffer(3));
    let mut encoder = gpu.encoder();
    gpu.encode_argmax(&mut encoder, &x, 3, width, &out);
    assert_eq!(gpu.read_words(encoder, &out, 3).unwrap(), [40000, 3, 77]);
}
