//! Element-wise and per-row operations of the transformer block, on f32 activations.

/// `out = x / rms(x) * weight`, for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    out.copy_from_slice(x);
    rms_norm_in_place(out, weight, eps);
}

/// [`rms_norm`] in place.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// `out = (x - mean(x)) / std(x) * weight + bias`, for one row.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let scale = 1.0 / (var + eps).sqrt();
    for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * scale * w + b;
    }
}

/// Which elements of a head vector RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Elements `2i` and `2i + 1` (GGML's "normal" order: GGUF files of LLaMA-family
    /// models store the Q/K weight rows permuted so that this order is right).
    AdjacentPairs,
    /// Elements `i` and `i + dims / 2` (the order of Hugging Face's `rotate_half`, and
    /// GGML's "neox" order).
    HalfSplit,
}

/// The cosines and sines of a batch of positions, computed once per forward pass and
/// shared by every layer and head.
#[derive(Default)]
pub struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl RopeTable {
    /// Angles `position * inv_freq[i]` for the batch's `positions`, with cosines and
    /// sines multiplied by `mscale` (the attention factor of YaRN and LongRoPE).
    pub fn fill(
        &mut self,
        positions: impl IntoIterator<Item = usize>,
        inv_freq: &[f32],
        mscale: f32,
    ) {
        self.half = inv_freq.len();
        self.cos.clear();
        self.sin.clear();
        for p in positions {
            for &f in inv_freq {
                let (sin, cos) = (p as f32 * f).sin_cos();
                self.cos.push(cos * mscale);
                self.sin.push(sin * mscale);
            }
        }
    }

    /// Rotates the first `2 * inv_freq.len()` elements of `head`, the vector of the
    /// `t`-th position of the batch.
    pub fn apply(&self, head: &mut [f32], t: usize, style: RopeStyle) {
        let h = self.half;
        let (cos, sin) = (&self.cos[t * h..][..h], &self.sin[t * h..][..h]);
        match style {
            RopeStyle::AdjacentPairs => {
                for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                    let (a, b) = (pair[0], pair[1]);
                    pair[0] = a * c - b * s;
                    pair[1] = a * s + b * c;
                }
            }
            RopeStyle::HalfSplit => {
                let (first, second) = head[..2 * h].split_at_mut(h);
                for (((a, b), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
                    let (x, y) = (*a, *b);
                    *a = x * c - y * s;
                    *b = y * c + x * s;
                }
            }
        }
    }
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

/// The nonlinearity of a feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)`.
    Silu,
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// GELU with the exact error function.
    Gelu,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => {
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
            }
            Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        }
    }
}

/// `gate = act(gate) * up`: the gated linear unit (SwiGLU with SiLU, GeGLU with GELU).
pub fn gated(gate: &mut [f32], up: &[f32], act: Activation) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act.apply(*g) * u;
    }
}

/// `x = act(x)`.
pub fn activate(x: &mut [f32], act: Activation) {
    x.iter_mut().for_each(|v| *v = act.apply(*v));
}

/// The error function, to within 1.2e-7 (a rational Chebyshev fit, Numerical Recipes'
/// `erfc` in single precision arithmetic carried in f64).
fn erf(x: f32) -> f32 {
    let z = (x as f64).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    (if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }) as f32
}

/// `acc += x`.
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

/// Adds `bias` to every row of `rows` (rows of `bias.len()` values).
pub fn add_bias(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        add_assign(row, bias);
    }
}

/// `x = cap * tanh(x / cap)`: soft-capping that bounds values to (-cap, cap).
pub fn softcap(x: &mut [f32], cap: f32) {
    x.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (-2.0, -0.995_322_265_0),
            (3.5, 0.999_999_256_9),
        ] {
            assert!((erf(x) as f64 - want).abs() < 2e-7, "erf({x})");
        }
    }

    #[test]
    fn rope_styles_rotate_the_right_pairs() {
        let mut table = RopeTable::default();
        let inv_freq = [1.0, 0.1];
        table.fill([3], &inv_freq, 1.0);
        let v = [1.0f32, 2.0, 3.0, 4.0];
        let rot = |a: f32, b: f32, f: f32| {
            let (s, c) = (3.0 * f).sin_cos();
            (a * c - b * s, a * s + b * c)
        };
        let mut adjacent = v;
        table.apply(&mut adjacent, 0, RopeStyle::AdjacentPairs);
        let (p0, p1) = (rot(1.0, 2.0, 1.0), rot(3.0, 4.0, 0.1));
        assert_eq!(adjacent, [p0.0, p0.1, p1.0, p1.1]);
        let mut half = v;
        table.apply(&mut half, 0, RopeStyle::HalfSplit);
        let (p0, p1) = (rot(1.0, 3.0, 1.0), rot(2.0, 4.0, 0.1));
        for (a, b) in half.iter().zip([p0.0, p1.0, p0.1, p1.1]) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn layer_norm_normalises() {
        let x = [1.0f32, 2.0, 3.0, 6.0];
        let mut out = [0f32; 4];
        layer_norm(&x, &[1.0; 4], &[0.5; 4], 0.0, &mut out);
        let mean: f32 = out.iter().sum::<f32>() / 4.0;
        let var: f32 = out.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 4.0;
        assert!((mean - 0.5).abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
