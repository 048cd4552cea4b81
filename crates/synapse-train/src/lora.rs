//! LoRA (Hu et al., 2021): a frozen weight `W` gains a trained update `(alpha / r) · B·A`
//! of rank `r`, `A` of `[r][in]` and `B` of `[out][r]`. As PEFT starts them: `A` uniform
//! in `±1/sqrt(in)` (Kaiming's uniform with `a = √5`), `B` zero, so training starts from
//! the model itself.

/// Which projections gain adapters, and their size.
#[derive(Clone, Debug)]
pub struct LoraOptions {
    pub rank: usize,
    pub alpha: f32,
    /// The engine's names of the adapted projections in each block (`attn_q`, `ffn_up`).
    pub targets: Vec<String>,
    /// Seeds `A`'s initial values.
    pub seed: u64,
}

/// A matrix's adapter: parameters `a` and `b`, and the update's factor.
#[derive(Clone, Copy, Debug)]
pub struct Lora {
    pub a: usize,
    pub b: usize,
    pub scale: f32,
}

/// The attention and MLP projections of a LLaMA block.
pub const ALL_PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl LoraOptions {
    /// Whether the matrix called `name` (`blk.3.attn_q.weight`) gains an adapter.
    pub fn adapts(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix("blk.") else {
            return false;
        };
        let projection = rest
            .split_once('.')
            .map(|(_, t)| t.trim_end_matches(".weight"));
        projection.is_some_and(|p| self.targets.iter().any(|t| t == p))
    }

    /// `A` and `B` before training, for a `[rows][cols]` matrix.
    pub fn initial(&self, name: &str, rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        let bound = 1.0 / (cols as f32).sqrt();
        let mut rng = crate::init::Rng::new(self.seed, name);
        let a = (0..self.rank * cols)
            .map(|_| (rng.uniform() * 2.0 - 1.0) * bound)
            .collect();
        (a, vec![0.0; rows * self.rank])
    }
}
