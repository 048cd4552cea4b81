//! Deterministic random numbers and a fresh model's initial weights.

use crate::autodiff::Param;

/// splitmix64, seeded from a run's seed and a tensor's name, so that every tensor's
/// values depend on nothing else (not on the order tensors are made in).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, name: &str) -> Rng {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hash)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A new model's weights as transformers' LLaMA starts them: every matrix normal with
/// standard deviation `std` (its `initializer_range`, 0.02), norms one.
pub fn initialize(params: &mut [Param], seed: u64, std: f32) {
    for p in params {
        let mut rng = Rng::new(seed, &p.name);
        let matrix = p.rows > 1;
        p.value
            .iter_mut()
            .for_each(|v| *v = if matrix { std * rng.normal() } else { 1.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_the_right_moments_and_depend_on_the_name() {
        let mut rng = Rng::new(7, "blk.0.attn_q.weight");
        let xs: Vec<f64> = (0..100_000).map(|_| rng.normal() as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let other = Rng::new(7, "blk.0.attn_k.weight").next_u64();
        assert_ne!(Rng::new(7, "blk.0.attn_q.weight").next_u64(), other);
    }
}
