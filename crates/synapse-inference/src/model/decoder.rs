//! The decoder-only transformer every family is an instance of: embeddings, then blocks
//! of (norm, attention, residual, norm, feed-forward, residual), then a final norm and
//! the output projection. Which norm, position scheme, FFN and projections a block uses
//! comes from the [`ModelConfig`]; every operation runs on a [`Backend`].

use super::backend::{Backend, RopePositions, RunOptions};
use super::weights::{QkvWeights, Weights};
use crate::config::{FfnKind, ModelConfig, Position};
use crate::error::Result;
use crate::kv_cache::{KvCache, SeqId};
use std::ops::Range;
use synapse_core::attention::AttentionShape;

/// Rows `rows` of a forward batch's tokens are positions `pos..` of sequence `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqRun {
    pub seq: SeqId,
    pub rows: Range<usize>,
    pub pos: usize,
}

/// The tokens of one forward pass: runs of consecutive positions of one or more
/// sequences, and the rows whose logits are wanted.
pub struct ForwardBatch<'a> {
    pub tokens: &'a [u32],
    /// Cover `tokens` in order; the cache has made room for them (`KvCache::append`).
    pub runs: &'a [SeqRun],
    /// Rows whose logits `forward` computes, in the order it writes them.
    pub logits: &'a [usize],
}

// ---------------------------------------------------------------------------------------
// Activations of one forward batch
// ---------------------------------------------------------------------------------------

/// Buffers for a batch of up to `max_batch` tokens, allocated once per engine.
pub struct Activations<B: Backend> {
    max_batch: usize,
    x: B::Buffer,
    normed: B::Buffer,
    /// Fused Q/K/V projection output, split into `q`, `k`, `v`.
    qkv: B::Buffer,
    q: B::Buffer,
    k: B::Buffer,
    v: B::Buffer,
    attn: B::Buffer,
    proj: B::Buffer,
    gate: B::Buffer,
    /// Up projection output (gate and up rows when fused).
    up: B::Buffer,
    /// Holds `logit_rows` rows: grown to the most a pass has asked for, since most ask
    /// for one (a sequence's last token) and a batch of a large vocabulary's rows is large
    /// (a browser commits every byte of it).
    logits: B::Buffer,
    logit_rows: usize,
    /// The position of each row of the batch.
    positions: Vec<usize>,
    /// RoPE frequencies and attention factor for this engine's context length.
    inv_freq: Vec<f32>,
    mscale: f32,
    scratch: B::Scratch,
}

impl<B: Backend> Activations<B> {
    pub fn new(b: &B, c: &ModelConfig, max_batch: usize, context: usize) -> Activations<B> {
        let t = max_batch;
        let up_width = match c.fused_gate_up {
            true => 2 * c.d_ff,
            false => c.d_ff,
        };
        let (inv_freq, mscale) = match &c.position {
            Position::Rope(rope) => rope.frequencies(context),
            Position::Learned => (Vec::new(), 1.0),
        };
        let qkv = match c.fused_qkv {
            true => t * (c.q_dim() + 2 * c.kv_dim()),
            false => 0,
        };
        Activations {
            max_batch,
            x: b.buffer(t * c.d_model),
            normed: b.buffer(t * c.d_model),
            qkv: b.buffer(qkv),
            q: b.buffer(t * c.q_dim()),
            k: b.buffer(t * c.kv_dim()),
            v: b.buffer(t * c.kv_dim()),
            attn: b.buffer(t * c.q_dim()),
            proj: b.buffer(t * c.d_model),
            gate: b.buffer(t * c.d_ff),
            up: b.buffer(t * up_width),
            logits: b.buffer(0),
            logit_rows: 0,
            positions: Vec::with_capacity(t),
            inv_freq,
            mscale,
            scratch: B::Scratch::default(),
        }
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Bytes of activation buffers per token of batch (the logits excepted: they grow to
    /// the rows asked for).
    pub fn bytes_per_token(c: &ModelConfig) -> usize {
        let fused_qkv = if c.fused_qkv {
            c.q_dim() + 2 * c.kv_dim()
        } else {
            0
        };
        let up = if c.fused_gate_up { 2 * c.d_ff } else { c.d_ff };
        let floats = 4 * c.d_model + 2 * c.q_dim() + 2 * c.kv_dim() + fused_qkv + c.d_ff + up;
        floats * std::mem::size_of::<f32>()
    }

    /// The largest batch, a multiple of 32 from 32 to `max`, whose buffers fit `budget`.
    pub fn batch_within(c: &ModelConfig, budget: usize, max: usize) -> usize {
        (budget / Activations::<B>::bytes_per_token(c) / 32 * 32).clamp(32, max)
    }
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

pub struct Decoder<B: Backend> {
    pub config: ModelConfig,
    pub weights: Weights<B>,
    pub backend: B,
}

impl<B: Backend> Decoder<B> {
    fn attention_shape(&self) -> AttentionShape {
        let c = &self.config;
        AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attention_scale,
            window: c.window,
            softcap: c.attention_softcap,
        }
    }

    /// Runs a batch of at most `act.max_batch()` tokens, writing their keys and values
    /// to `cache`, and appends to `logits` those of the rows `batch.logits` asks for
    /// (`[rows][vocab]`). Matmuls, norms and the feed-forward run over the whole batch,
    /// attention per sequence.
    pub fn forward(
        &self,
        batch: &ForwardBatch,
        cache: &mut KvCache<B::Kv>,
        act: &mut Activations<B>,
        opts: RunOptions,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        let (c, w, b) = (&self.config, &self.weights, &self.backend);
        let n = batch.tokens.len();
        debug_assert!(n >= 1 && n <= act.max_batch);
        let (d, qd, kvd, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        act.positions.clear();
        for run in batch.runs {
            act.positions.extend(run.pos..run.pos + run.rows.len());
        }
        debug_assert_eq!(act.positions.len(), n, "the runs cover the batch");

        // Embeddings.
        let x = &mut act.x;
        b.embed(&w.token_embd, batch.tokens, x);
        if let Some(scale) = c.embedding_scale {
            b.scale(x, n * d, scale);
        }
        if let Some(table) = &w.position_embd {
            b.add_rows(table, &act.positions, x);
        }
        let rope_style = match &c.position {
            Position::Rope(rope) => {
                let positions = RopePositions {
                    inv_freq: &act.inv_freq,
                    mscale: act.mscale,
                    positions: &act.positions,
                };
                b.prepare_rope(&positions, &mut act.scratch);
                Some(rope.style)
            }
            Position::Learned => None,
        };
        let shape = self.attention_shape();

        for (layer, lw) in w.blocks.iter().enumerate() {
            // Attention block.
            b.norm(&lw.attn_norm, c.norm_eps, x, n, &mut act.normed);
            let (q, k, v) = (&mut act.q, &mut act.k, &mut act.v);
            match &lw.qkv {
                QkvWeights::Separate {
                    q: wq,
                    k: wk,
                    v: wv,
                } => {
                    let parts = [(wq, &mut *q), (wk, &mut *k), (wv, &mut *v)];
                    b.linears(parts, &act.normed, n, opts, &mut act.scratch)
                }
                QkvWeights::Fused(wqkv) => {
                    let parts = [(wqkv, &mut act.qkv)];
                    b.linears(parts, &act.normed, n, opts, &mut act.scratch);
                    b.split_qkv(&act.qkv, n, (qd, kvd), (&mut *q, &mut *k, &mut *v));
                }
            }
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                b.head_norm(qn, c.norm_eps, q, n * qd);
                b.head_norm(kn, c.norm_eps, k, n * kvd);
            }
            if let Some(style) = rope_style {
                b.rope(q, n, qd, c.head_dim, style, &act.scratch);
                b.rope(k, n, kvd, c.head_dim, style, &act.scratch);
            }
            let qkv = (&*q, &*k, &*v);
            b.attention(cache, layer, batch.runs, qkv, &shape, opts, &mut act.attn)?;
            let parts = [(&lw.attn_output, &mut act.proj)];
            b.linears(parts, &act.attn, n, opts, &mut act.scratch);
            b.add(x, &act.proj, n * d);

            // Feed-forward block.
            b.norm(&lw.ffn_norm, c.norm_eps, x, n, &mut act.normed);
            let hidden = match (c.ffn, &lw.ffn_gate) {
                (FfnKind::Gated(f), Some(wg)) => {
                    let parts = [(wg, &mut act.gate), (&lw.ffn_up, &mut act.up)];
                    b.linears(parts, &act.normed, n, opts, &mut act.scratch);
                    b.gated(&mut act.gate, &act.up, n, ff, f, opts);
                    &act.gate
                }
                (FfnKind::Gated(f), None) => {
                    let parts = [(&lw.ffn_up, &mut act.up)];
                    b.linears(parts, &act.normed, n, opts, &mut act.scratch);
                    b.gated_fused(&act.up, n, ff, f, &mut act.gate, opts);
                    &act.gate
                }
                (FfnKind::Plain(f), _) => {
                    let parts = [(&lw.ffn_up, &mut act.up)];
                    b.linears(parts, &act.normed, n, opts, &mut act.scratch);
                    b.activate(&mut act.up, n, ff, f, opts);
                    &act.up
                }
            };
            let parts = [(&lw.ffn_down, &mut act.proj)];
            b.linears(parts, hidden, n, opts, &mut act.scratch);
            b.add(x, &act.proj, n * d);
        }

        // Output, for the rows asked for.
        let rows = batch.logits.len();
        if rows == 0 {
            return Ok(());
        }
        if act.logit_rows < rows {
            act.logits = b.buffer(rows * c.vocab_size);
            act.logit_rows = rows;
        }
        b.gather(x, d, batch.logits, &mut act.proj);
        b.norm(&w.output_norm, c.norm_eps, &act.proj, rows, &mut act.normed);
        let parts = [(&w.output, &mut act.logits)];
        b.linears(parts, &act.normed, rows, opts, &mut act.scratch);
        if let Some(cap) = c.final_softcap {
            b.softcap(&mut act.logits, rows * c.vocab_size, cap);
        }
        b.read(&act.logits, rows * c.vocab_size, logits);
        Ok(())
    }
}
