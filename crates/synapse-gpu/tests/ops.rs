//! The GPU's norms, gated activations, adds and argmax against synapse_core's CPU ops.

mod common;

use common::{gpu, gpus, values};
use synapse_core::ops::{self, Activation, RopeStyle, RopeTable};
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
    for gpu in gpus() {
        eprintln!("subgroups: {}", gpu.has_subgroups());
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
    for gpu in gpus() {
        eprintln!("subgroups: {}", gpu.has_subgroups());
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
}

#[test]
fn fused_gates_activations_bias_scale_and_softcap_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let (rows, width) = (3, 1000);
    let x: Vec<f32> = values(8, 2 * rows * width)
        .iter()
        .map(|v| 8.0 * v)
        .collect();
    let run =
        |what: &str,
         want: &[f32],
         len: usize,
         record: &dyn Fn(&mut wgpu::CommandEncoder, &wgpu::Buffer, &wgpu::Buffer)| {
            let (input, out) = (gpu.upload_f32(&x), gpu.buffer(len));
            let mut encoder = gpu.encoder();
            record(&mut encoder, &input, &out);
            // In-place kernels leave their result in `input`.
            let in_place = want.len() == len && what != "gated_fused";
            let result = if in_place { &input } else { &out };
            let got = gpu.read_f32(encoder, result, len).unwrap();
            assert_close(what, &got, want, 2e-6);
        };
    let n = rows * width;
    for activation in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
        let mut want = Vec::new();
        for row in x.chunks_exact(2 * width) {
            let (mut gate, up) = (row[..width].to_vec(), &row[width..]);
            ops::gated(&mut gate, up, activation);
            want.extend(gate);
        }
        run("gated_fused", &want, n, &|e, input, out| {
            gpu.encode_gated_fused(e, input, (rows, width), activation, out)
        });
        let mut want = x.clone();
        ops::activate(&mut want, activation);
        run(&format!("{activation:?}"), &want, 2 * n, &|e, input, _| {
            gpu.encode_activate(e, input, 2 * n, activation)
        });
    }
    let bias = values(9, width);
    let mut want = x.clone();
    ops::add_bias(&mut want, &bias);
    let bias_buf = gpu.upload_f32(&bias);
    run("add_bias", &want, 2 * n, &|e, input, _| {
        gpu.encode_add_bias(e, input, &bias_buf, (2 * rows, width))
    });
    let want: Vec<f32> = x.iter().map(|v| v * 0.125).collect();
    run("scale", &want, 2 * n, &|e, input, _| {
        gpu.encode_scale(e, input, 2 * n, 0.125)
    });
    let mut want = x.clone();
    ops::softcap(&mut want, 3.0);
    run("softcap", &want, 2 * n, &|e, input, _| {
        gpu.encode_softcap(e, input, 2 * n, 3.0)
    });
}

#[test]
fn rope_matches_the_cpu_in_both_styles() {
    let Some(gpu) = gpu() else { return };
    // Three positions (one far out) of rows of 4 heads of 64, rotating all of each head,
    // then (as partial-rotary models do) its first 32 values only.
    let (head_dim, width, positions) = (64, 256, [0usize, 7, 100_000]);
    let x = values(10, positions.len() * width);
    for rotated in [64, 32] {
        let inv_freq: Vec<f32> = (0..rotated / 2)
            .map(|i| 10000f32.powf(-2.0 * i as f32 / rotated as f32))
            .collect();
        let mut table = RopeTable::default();
        table.fill(positions, &inv_freq, 1.0);
        for style in [RopeStyle::AdjacentPairs, RopeStyle::HalfSplit] {
            let mut want = x.clone();
            for (t, row) in want.chunks_exact_mut(width).enumerate() {
                for head in row.chunks_exact_mut(head_dim) {
                    table.apply(head, t, style);
                }
            }
            let buffer = gpu.upload_f32(&x);
            let mut encoder = gpu.encoder();
            let shape = (positions.len(), width, head_dim);
            gpu.encode_rope(&mut encoder, &buffer, shape, style, &table);
            let got = gpu.read_f32(encoder, &buffer, x.len()).unwrap();
            assert_close(&format!("{style:?}, {rotated} rotated"), &got, &want, 1e-6);
        }
    }
}
