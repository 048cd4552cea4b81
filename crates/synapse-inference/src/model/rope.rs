//! Rotary position embeddings and their context-extension schemes, as Hugging Face
//! `transformers` defines them (`rope_type` in `rope_scaling` / `rope_parameters`).

pub use synapse_core::ops::RopeStyle;

/// How a model extends RoPE beyond the context it was first trained for.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (all frequencies scaled alike).
    Linear {
        factor: f32,
    },
    /// LLaMA 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp
    /// between, by wavelength relative to the original context.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: usize,
    },
    /// YaRN: interpolation for low frequencies, extrapolation for high ones, with a
    /// linear ramp between the correction dimensions, and an attention factor.
    Yarn {
        factor: f32,
        original_context: usize,
        beta_fast: f32,
        beta_slow: f32,
        attention_factor: Option<f32>,
    },
    /// LongRoPE (Phi-3): per-frequency divisors, `short` within the original context and
    /// `long` beyond it, with an attention factor.
    LongRope {
        short: Vec<f32>,
        long: Vec<f32>,
        original_context: usize,
        /// `max_position_embeddings / original_context`, for the default attention factor.
        factor: f32,
        attention_factor: Option<f32>,
    },
    /// Per-frequency divisors given as a tensor (GGUF `rope_freqs.weight`, which llama.cpp's
    /// converter writes for LLaMA 3.1 scaling).
    FreqFactors(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    pub base: f32,
    /// Leading dimensions of each head that rotate.
    pub dims: usize,
    pub style: RopeStyle,
    pub scaling: RopeScaling,
}

impl Rope {
    /// The inverse frequencies and the factor cosines and sines are multiplied by, for a
    /// session of `context` positions (LongRoPE picks its factors by context length, as
    /// llama.cpp does).
    pub fn frequencies(&self, context: usize) -> (Vec<f32>, f32) {
        let d = self.dims as f64;
        let base = self.base as f64;
        // base^(2i/d), in f64 so the f32 result is correctly rounded.
        let wavelength_base: Vec<f64> = (0..self.dims / 2)
            .map(|i| base.powf(2.0 * i as f64 / d))
            .collect();
        let plain = || {
            wavelength_base
                .iter()
                .map(|&p| 1.0 / p)
                .collect::<Vec<f64>>()
        };
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|f| f as f32).collect();
        match &self.scaling {
            RopeScaling::None => (to_f32(plain()), 1.0),
            RopeScaling::Linear { factor } => (
                to_f32(plain().into_iter().map(|f| f / *factor as f64).collect()),
                1.0,
            ),
            RopeScaling::FreqFactors(divisors) => (
                to_f32(
                    plain()
                        .into_iter()
                        .zip(divisors.iter().chain(std::iter::repeat(&1.0)))
                        .map(|(f, &div)| f / div as f64)
                        .collect(),
                ),
                1.0,
            ),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => {
                let (factor, low, high) = (
                    *factor as f64,
                    *low_freq_factor as f64,
                    *high_freq_factor as f64,
                );
                let old = *original_context as f64;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                let freqs = plain()
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                (to_f32(freqs), 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                attention_factor,
            } => {
                let factor = *factor as f64;
                // The dimension whose wavelength makes `rotations` turns over the context.
                let correction_dim = |rotations: f64| {
                    d * (*original_context as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * base.ln())
                };
                let low = correction_dim(*beta_fast as f64).floor().max(0.0);
                let high = correction_dim(*beta_slow as f64).ceil().min(d - 1.0);
                let span = if high == low { 0.001 } else { high - low };
                let freqs = wavelength_base
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| {
                        let ramp = ((i as f64 - low) / span).clamp(0.0, 1.0);
                        let extrapolate = 1.0 - ramp;
                        (1.0 / (factor * p)) * (1.0 - extrapolate) + (1.0 / p) * extrapolate
                    })
                    .collect();
                let mscale = attention_factor.unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (0.1 * factor.ln() + 1.0) as f32
                });
                (to_f32(freqs), mscale)
            }
            RopeScaling::LongRope {
                short,
                long,
                original_context,
                factor,
                attention_factor,
            } => {
                let divisors = if context > *original_context {
                    long
                } else {
                    short
                };
                let freqs = wavelength_base
                    .iter()
                    .zip(divisors)
                    .map(|(&p, &div)| 1.0 / (div as f64 * p))
                    .collect();
                let f = *factor as f64;
                let mscale = attention_factor.unwrap_or(if f <= 1.0 {
                    1.0
                } else {
                    (1.0 + f.ln() / (*original_context as f64).ln()).sqrt() as f32
                });
                (to_f32(freqs), mscale)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling) -> Rope {
        Rope {
            base: 500_000.0,
            dims: 64,
            style: RopeStyle::HalfSplit,
            scaling,
        }
    }

    #[test]
    fn llama3_keeps_high_frequencies_and_divides_low_ones() {
        let (plain, _) = rope(RopeScaling::None).frequencies(4096);
        let (scaled, m) = rope(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context: 8192,
        })
        .frequencies(4096);
        assert_eq!(m, 1.0);
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
        // Some frequencies fall on the ramp, strictly between the two.
        assert!(plain
            .iter()
            .zip(&scaled)
            .any(|(p, s)| *s < *p && *s > *p / 8.0));
    }

    #[test]
    fn longrope_picks_factors_by_context() {
        let scaling = RopeScaling::LongRope {
            short: vec![2.0; 32],
            long: vec![4.0; 32],
            original_context: 4096,
            factor: 32.0,
            attention_factor: None,
        };
        let (plain, _) = rope(RopeScaling::None).frequencies(0);
        let (short, m) = rope(scaling.clone()).frequencies(4096);
        let (long, _) = rope(scaling).frequencies(8192);
        assert!((short[5] - plain[5] / 2.0).abs() < 1e-9);
        assert!((long[5] - plain[5] / 4.0).abs() < 1e-9);
        let want = (1.0 + 32f64.ln() / 4096f64.ln()).sqrt() as f32;
        assert_eq!(m, want);
    }

    #[test]
    fn yarn_interpolates_low_frequencies_only() {
        let (plain, _) = rope(RopeScaling::None).frequencies(0);
        let (yarn, m) = rope(RopeScaling::Yarn {
            factor: 4.0,
            original_context: 32768,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: None,
        })
        .frequencies(0);
        assert_eq!(yarn[0], plain[0]);
        let last = plain.len() - 1;
        assert!((yarn[last] - plain[last] / 4.0).abs() / plain[last] < 1e-6);
        assert!((m - (0.1 * 4f32.ln() + 1.0)).abs() < 1e-6);
    }
}
