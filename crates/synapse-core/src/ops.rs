//! Element-wise and per-row operations of the transformer block, on f32 activations.

/// `out = x / rms(x) * weight`, for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    out.copy_from_slice(x);
    rms_norm_in_place(out, weight, eps);
}

/// [`rms_norm`] in place.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let mean_sq = sum_of_squares(x) / x.len() as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// The sum of the squares of `x`. LLVM keeps a float sum in order, one add after another,
/// so with SIMD128 it is the dot product kernel's, in vector lanes; native builds keep the
/// sum in order, as they always have.
#[inline(always)]
fn sum_of_squares(x: &[f32]) -> f32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let sum = crate::kernels::dot_f32_simd128(x, x);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let sum = x.iter().map(|v| v * v).sum::<f32>();
    sum
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

    /// The cosines and the sines, `half()` per position, position after position.
    pub fn cos_sin(&self) -> (&[f32], &[f32]) {
        (&self.cos, &self.sin)
    }

    /// Angles per position: the `inv_freq.len()` of the last [`RopeTable::fill`].
    pub fn half(&self) -> usize {
        self.half
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

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

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
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
            }
            Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        }
    }
}

/// `gate = act(gate) * up`: the gated linear unit (SwiGLU with SiLU, GeGLU with GELU).
pub fn gated(gate: &mut [f32], up: &[f32], act: Activation) {
    // wasm's library `exp` and `tanh` are a call per value: with SIMD128, SiLU and
    // tanh-GELU take the branch-free forms that vectorise.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    match act {
        Activation::Silu => return gate_with(gate, up, silu_vectorisable),
        Activation::GeluTanh => return gate_with(gate, up, gelu_tanh_vectorisable),
        Activation::Gelu => {}
    }
    gate_with(gate, up, |x| act.apply(x))
}

#[inline(always)]
fn gate_with(gate: &mut [f32], up: &[f32], act: impl Fn(f32) -> f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act(*g) * u;
    }
}

/// [`Activation::Silu`] from [`exp`] of a non-positive argument: `x * sigmoid(x)`, with
/// `sigmoid(x) = e^x / (1 + e^x)` for negative `x`.
#[cfg_attr(
    not(all(target_arch = "wasm32", target_feature = "simd128")),
    allow(dead_code)
)]
#[inline(always)]
fn silu_vectorisable(x: f32) -> f32 {
    let e = exp(-x.abs());
    x * if x >= 0.0 { 1.0 } else { e } / (1.0 + e)
}

/// [`Activation::GeluTanh`] with [`tanh`].
#[cfg_attr(
    not(all(target_arch = "wasm32", target_feature = "simd128")),
    allow(dead_code)
)]
#[inline(always)]
fn gelu_tanh_vectorisable(x: f32) -> f32 {
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// `e^x` for x <= 0 to within about 2e-7 relative, in branch-free arithmetic that the
/// compiler vectorises (the library `exp` is a scalar call per value).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Below this e^x underflows to (almost) zero; clamping keeps 2^n a normal float. A
    // comparison, not `f32::max`, whose NaN rule wasm's SIMD lacks (a call per value there).
    let x = if x > -87.0 { x } else { -87.0 };
    // x = n ln2 + r with |r| <= ln2 / 2; then e^x = 2^n e^r. `floor` by truncation and a
    // correction: the same value, but code without SSE4.1 (whose `roundps` `floor` needs)
    // vectorises it instead of calling the library's floorf per value.
    let v = x * std::f32::consts::LOG2_E + 0.5;
    let truncated = v as i32 as f32;
    let n = if truncated > v {
        truncated - 1.0
    } else {
        truncated
    };
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `tanh` from [`exp`] of a non-positive argument.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let e = exp(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
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
    // On wasm32 these run under Node (scripts/test-wasm.sh).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The vectorisable SiLU and tanh-GELU (the SIMD128 build's) against the library
    /// forms, to a few f32 roundings, over the range activations take and beyond:
    /// saturation, values whose SiLU underflows, zeros of both signs.
    #[test]
    fn vectorisable_activations_match_the_library_ones() {
        let mut x: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 * 0.001).collect();
        x.extend([
            -120.0, -90.0, -30.0, 30.0, 90.0, 1e10, -0.0, 0.0, 1e-30, -1e-30,
        ]);
        for act in [Activation::Silu, Activation::GeluTanh] {
            let fast = match act {
                Activation::Silu => silu_vectorisable,
                _ => gelu_tanh_vectorisable,
            };
            for &x in &x {
                let (got, want) = (fast(x), act.apply(x));
                // exp is within 3e-7 relative down to its clamp at e^-87; tanh within 1e-6
                // absolute, so GELU within that of |x| / 2.
                let tolerance = match act {
                    Activation::Silu => 1e-6 * want.abs() + 1e-37 * x.abs(),
                    _ => 1e-6 * x.abs(),
                };
                assert!(
                    (got - want).abs() <= tolerance,
                    "{act:?}({x}) = {got}, want {want}"
                );
            }
        }
    }
    #[test]
    fn vectorisable_exp_is_accurate() {
        for i in 0..=80_000 {
            let x = -(i as f32) * 0.001;
            let (got, want) = (exp(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn tanh_is_accurate() {
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.001;
            assert!(
                (tanh(x) as f64 - (x as f64).tanh()).abs() < 1e-6,
                "tanh({x})"
            );
        }
    }

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

    /// RMS norm against f64 arithmetic, on rows of odd lengths (the SIMD128 sum's vector
    /// loop and its scalar end).
    #[test]
    fn rms_norm_matches_f64() {
        for len in [1, 7, 16, 17, 4099] {
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
                .collect();
            let w: Vec<f32> = (0..len).map(|i| 1.0 + (i % 5) as f32 * 0.25).collect();
            let mut out = vec![0f32; len];
            rms_norm(&x, &w, 1e-6, &mut out);
            let mean_sq = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / len as f64;
            let scale = 1.0 / (mean_sq + 1e-6).sqrt();
            for ((&got, &x), &w) in out.iter().zip(&x).zip(&w) {
                let want = x as f64 * scale * w as f64;
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * want.abs().max(1e-3),
                    "{len}"
                );
            }
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
