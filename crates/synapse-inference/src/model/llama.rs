//! The LLaMA architecture (also SmolLM2, Mistral without sliding window, and others that
//! GGUF tags `llama`): RMSNorm, rotary positions, grouped-query attention, SwiGLU.

use super::{check_config, load_matrix, load_vector};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::KvCache;
use synapse_core::attention::AttentionShape;
use synapse_core::gguf::GgufFile;
use synapse_core::kernels::{matmul, MatmulScratch, Precision};
use synapse_core::ops::{add_assign, rms_norm, rope_adjacent_pairs, rope_inv_freq, swiglu};
use synapse_core::WeightTensor;

// ---------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    pub wq: WeightTensor,
    pub wk: WeightTensor,
    pub wv: WeightTensor,
    pub wo: WeightTensor,
    pub ffn_norm: Vec<f32>,
    pub w_gate: WeightTensor,
    pub w_up: WeightTensor,
    pub w_down: WeightTensor,
}

pub struct LlamaWeights {
    pub token_embd: WeightTensor,
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<f32>,
    /// The output projection; the embedding table itself when the model ties them.
    pub output: WeightTensor,
}

impl LlamaWeights {
    pub fn from_gguf(gguf: &GgufFile, c: &ModelConfig) -> Result<LlamaWeights> {
        check_config(gguf, c)?;
        let (d, q, kv, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        let token_embd = load_matrix(gguf, "token_embd.weight", c.vocab_size, d)?;
        let layers = (0..c.n_layers)
            .map(|i| {
                let name = |t: &str| format!("blk.{i}.{t}.weight");
                Ok(LayerWeights {
                    attn_norm: load_vector(gguf, &name("attn_norm"), d)?,
                    wq: load_matrix(gguf, &name("attn_q"), q, d)?,
                    wk: load_matrix(gguf, &name("attn_k"), kv, d)?,
                    wv: load_matrix(gguf, &name("attn_v"), kv, d)?,
                    wo: load_matrix(gguf, &name("attn_output"), d, q)?,
                    ffn_norm: load_vector(gguf, &name("ffn_norm"), d)?,
                    w_gate: load_matrix(gguf, &name("ffn_gate"), ff, d)?,
                    w_up: load_matrix(gguf, &name("ffn_up"), ff, d)?,
                    w_down: load_matrix(gguf, &name("ffn_down"), d, ff)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match gguf.tensor_info("output.weight") {
            Some(_) => load_matrix(gguf, "output.weight", c.vocab_size, d)?,
            None => token_embd.clone(),
        };
        Ok(LlamaWeights {
            token_embd,
            layers,
            output_norm: load_vector(gguf, "output_norm.weight", d)?,
            output,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Activations of one forward batch
// ---------------------------------------------------------------------------------------

/// Buffers for a batch of up to `max_batch` tokens, allocated once per session.
pub struct Activations {
    max_batch: usize,
    x: Vec<f32>,
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    pub logits: Vec<f32>,
    matmul: MatmulScratch,
}

impl Activations {
    pub fn new(c: &ModelConfig, max_batch: usize) -> Activations {
        let t = max_batch;
        Activations {
            max_batch,
            x: vec![0.0; t * c.d_model],
            normed: vec![0.0; t * c.d_model],
            q: vec![0.0; t * c.q_dim()],
            k: vec![0.0; t * c.kv_dim()],
            v: vec![0.0; t * c.kv_dim()],
            attn: vec![0.0; t * c.q_dim()],
            proj: vec![0.0; t * c.d_model],
            gate: vec![0.0; t * c.d_ff],
            up: vec![0.0; t * c.d_ff],
            logits: Vec::with_capacity(t * c.vocab_size),
            matmul: MatmulScratch::default(),
        }
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

pub struct Llama {
    pub config: ModelConfig,
    pub weights: LlamaWeights,
    inv_freq: Vec<f32>,
}

/// How to run a forward pass.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub precision: Precision,
    pub threads: usize,
}

impl Llama {
    fn attention_shape(&self) -> AttentionShape {
        let c = &self.config;
        AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
            window: None,
            softcap: None,
        }
    }

    pub fn new(config: ModelConfig, weights: LlamaWeights) -> Llama {
        let inv_freq = rope_inv_freq(config.rope_base, config.rope_dims);
        Llama {
            config,
            weights,
            inv_freq,
        }
    }

    /// Runs `tokens` (at most `act.max_batch()`) at positions `pos..`, appending their keys
    /// and values to `cache`. Leaves in `act.logits` the logits of every position when
    /// `all_logits`, else of the last one.
    pub fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut KvCache,
        act: &mut Activations,
        all_logits: bool,
        opts: RunOptions,
    ) {
        let c = &self.config;
        let w = &self.weights;
        let n = tokens.len();
        assert!(n >= 1 && n <= act.max_batch && pos + n <= cache.capacity());
        let (d, qd, kvd, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        let mm = |w: &WeightTensor, x: &[f32], out: &mut [f32], scratch: &mut MatmulScratch| {
            matmul(w, x, n, out, opts.precision, opts.threads, scratch)
        };

        let x = &mut act.x[..n * d];
        for (row, &tok) in x.chunks_exact_mut(d).zip(tokens) {
            w.token_embd.dequantize_row(tok as usize, row);
        }

        for (layer, lw) in w.layers.iter().enumerate() {
            // Attention block.
            let normed = &mut act.normed[..n * d];
            for (o, xi) in normed.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                rms_norm(xi, &lw.attn_norm, c.norm_eps, o);
            }
            let (q, k, v) = (
                &mut act.q[..n * qd],
                &mut act.k[..n * kvd],
                &mut act.v[..n * kvd],
            );
            mm(&lw.wq, normed, q, &mut act.matmul);
            mm(&lw.wk, normed, k, &mut act.matmul);
            mm(&lw.wv, normed, v, &mut act.matmul);
            for t in 0..n {
                for head in q[t * qd..(t + 1) * qd].chunks_exact_mut(c.head_dim) {
                    rope_adjacent_pairs(head, pos + t, &self.inv_freq);
                }
                for head in k[t * kvd..(t + 1) * kvd].chunks_exact_mut(c.head_dim) {
                    rope_adjacent_pairs(head, pos + t, &self.inv_freq);
                }
            }
            cache.write(layer, pos, k, v);
            let attn = &mut act.attn[..n * qd];
            let shape = self.attention_shape();
            cache.attention(layer, q, pos, &shape, opts.threads, attn);
            let proj = &mut act.proj[..n * d];
            mm(&lw.wo, attn, proj, &mut act.matmul);
            add_assign(x, proj);

            // Feed-forward block.
            for (o, xi) in normed.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                rms_norm(xi, &lw.ffn_norm, c.norm_eps, o);
            }
            let (gate, up) = (&mut act.gate[..n * ff], &mut act.up[..n * ff]);
            mm(&lw.w_gate, normed, gate, &mut act.matmul);
            mm(&lw.w_up, normed, up, &mut act.matmul);
            swiglu(gate, up);
            mm(&lw.w_down, gate, proj, &mut act.matmul);
            add_assign(x, proj);
        }

        let first = if all_logits { 0 } else { n - 1 };
        let rows = n - first;
        let normed = &mut act.normed[..rows * d];
        for (o, xi) in normed
            .chunks_exact_mut(d)
            .zip(x[first * d..].chunks_exact(d))
        {
            rms_norm(xi, &w.output_norm, c.norm_eps, o);
        }
        act.logits.resize(rows * c.vocab_size, 0.0);
        matmul(
            &w.output,
            normed,
            rows,
            &mut act.logits,
            opts.precision,
            opts.threads,
            &mut act.matmul,
        );
    }
}
