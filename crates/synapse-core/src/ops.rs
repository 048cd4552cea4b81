//! Element-wise and per-row operations of the transformer block, on f32 activations.

/// `out = x / rms(x) * weight`, for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// Rotary position embedding on one head vector, in GGML's "normal" order where the
/// rotated pairs are adjacent elements (2i, 2i+1). GGUF files of LLaMA-family models
/// store the Q/K weight rows permuted so that this order is right.
/// `inv_freq[i]` is `base^(-2i/rot_dims)`; only the first `2 * inv_freq.len()` dims rotate.
pub fn rope_adjacent_pairs(head: &mut [f32], pos: usize, inv_freq: &[f32]) {
    for (pair, &f) in head.chunks_exact_mut(2).zip(inv_freq) {
        let (sin, cos) = (pos as f32 * f).sin_cos();
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}

/// The inverse frequencies of RoPE for `rot_dims` rotated dimensions.
pub fn rope_inv_freq(base: f32, rot_dims: usize) -> Vec<f32> {
    (0..rot_dims / 2)
        .map(|i| base.powf(-2.0 * i as f32 / rot_dims as f32))
        .collect()
}

/// In-place softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `gate = silu(gate) * up`, the SwiGLU activation.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `acc += x`.
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}
