//! The decoder-only transformer every family is an instance of: embeddings, then blocks
//! of (norm, attention, residual, norm, feed-forward, residual), then a final norm and
//! the output projection. Which norm, position scheme, FFN and projections a block uses
//! comes from the [`ModelConfig`].

use super::weights::{Linear, Norm, QkvWeights, Weights};
use crate::config::{FfnKind, ModelConfig, NormKind, Position};
use crate::kv_cache::{KvCache, SeqId};
use std::ops::Range;
use synapse_core::attention::AttentionShape;
use synapse_core::kernels::{matmul, matmul_many, MatmulScratch, Precision};
use synapse_core::ops::{
    activate, add_assign, add_bias, gated, layer_norm, rms_norm, rms_norm_in_place, softcap,
    RopeStyle, RopeTable,
};
use synapse_core::threads::parallel_chunks_mut;
use synapse_core::WeightTensor;

/// Calls `f(tokens, their part of x)` on runs of the tokens of `x` (`len` values each), on
/// up to `threads` threads once a batch is large enough to pay for waking them.
fn per_token(
    x: &mut [f32],
    len: usize,
    threads: usize,
    f: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    /// Values below which one thread does the work (about 10 us of activation functions).
    const PARALLEL_MIN: usize = 1 << 14;
    let threads = if x.len() >= PARALLEL_MIN { threads } else { 1 };
    parallel_chunks_mut(x, len, threads, f);
}

/// How to run a forward pass.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub precision: Precision,
    pub threads: usize,
}

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

/// Buffers for a batch of up to `max_batch` tokens, allocated once per session.
pub struct Activations {
    max_batch: usize,
    x: Vec<f32>,
    normed: Vec<f32>,
    /// Fused Q/K/V projection output, split into `q`, `k`, `v`.
    qkv: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    /// Up projection output (gate and up rows when fused).
    up: Vec<f32>,
    pub logits: Vec<f32>,
    /// The position of each row of the batch.
    positions: Vec<usize>,
    rope: RopeTable,
    /// RoPE frequencies and attention factor for this session's context length.
    inv_freq: Vec<f32>,
    mscale: f32,
    matmul: MatmulScratch,
}

impl Activations {
    pub fn new(c: &ModelConfig, max_batch: usize, context: usize) -> Activations {
        let t = max_batch;
        let up_width = match c.fused_gate_up {
            true => 2 * c.d_ff,
            false => c.d_ff,
        };
        let (inv_freq, mscale) = match &c.position {
            Position::Rope(rope) => rope.frequencies(context),
            Position::Learned => (Vec::new(), 1.0),
        };
        Activations {
            max_batch,
            x: vec![0.0; t * c.d_model],
            normed: vec![0.0; t * c.d_model],
            qkv: vec![
                0.0;
                if c.fused_qkv {
                    t * (c.q_dim() + 2 * c.kv_dim())
                } else {
                    0
                }
            ],
            q: vec![0.0; t * c.q_dim()],
            k: vec![0.0; t * c.kv_dim()],
            v: vec![0.0; t * c.kv_dim()],
            attn: vec![0.0; t * c.q_dim()],
            proj: vec![0.0; t * c.d_model],
            gate: vec![0.0; t * c.d_ff],
            up: vec![0.0; t * up_width],
            logits: Vec::with_capacity(t * c.vocab_size),
            positions: Vec::with_capacity(t),
            rope: RopeTable::default(),
            inv_freq,
            mscale,
            matmul: MatmulScratch::default(),
        }
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Bytes of activation buffers per token of batch.
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
        (budget / Activations::bytes_per_token(c) / 32 * 32).clamp(32, max)
    }
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

pub struct Decoder {
    pub config: ModelConfig,
    pub weights: Weights,
}

/// The operations of a forward pass, as the configuration and run options select them.
struct Ops<'a> {
    c: &'a ModelConfig,
    opts: RunOptions,
}

impl Ops<'_> {
    /// `out = x W^T (+ b)` for the batch's rows.
    fn linear(&self, l: &Linear, x: &[f32], out: &mut [f32], scratch: &mut MatmulScratch) {
        self.matmul(&l.weight, x, out, scratch);
        if let Some(b) = &l.bias {
            add_bias(out, b);
        }
    }

    /// Several linear layers of the same input (Q/K/V; gate and up) in one dispatch, with
    /// the input quantized once.
    fn linears<const N: usize>(
        &self,
        mut parts: [(&Linear, &mut [f32]); N],
        x: &[f32],
        scratch: &mut MatmulScratch,
    ) {
        let n = x.len() / parts[0].0.weight.cols;
        let mut weights: [(&WeightTensor, &mut [f32]); N] =
            parts.each_mut().map(|(l, out)| (&l.weight, &mut **out));
        matmul_many(
            &mut weights,
            x,
            n,
            self.opts.precision,
            self.opts.threads,
            scratch,
        );
        for (l, out) in parts.iter_mut() {
            if let Some(bias) = &l.bias {
                add_bias(out, bias);
            }
        }
    }

    fn matmul(&self, w: &WeightTensor, x: &[f32], out: &mut [f32], scratch: &mut MatmulScratch) {
        let n = x.len() / w.cols;
        matmul(
            w,
            x,
            n,
            out,
            self.opts.precision,
            self.opts.threads,
            scratch,
        );
    }

    fn norm(&self, norm: &Norm, x: &[f32], out: &mut [f32]) {
        let d = norm.weight.len();
        for (o, xi) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            match (self.c.norm, &norm.bias) {
                (NormKind::Layer, Some(b)) => layer_norm(xi, &norm.weight, b, self.c.norm_eps, o),
                _ => rms_norm(xi, &norm.weight, self.c.norm_eps, o),
            }
        }
    }

    /// Per-head RMSNorm (Qwen3's Q/K norm), in place.
    fn head_norm(&self, weight: &[f32], x: &mut [f32]) {
        for head in x.chunks_exact_mut(weight.len()) {
            rms_norm_in_place(head, weight, self.c.norm_eps);
        }
    }

    fn attention_shape(&self) -> AttentionShape {
        let c = self.c;
        AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attention_scale,
            window: c.window,
            softcap: c.attention_softcap,
        }
    }
}

impl Decoder {
    /// Runs a batch of at most `act.max_batch()` tokens, writing their keys and values
    /// to `cache`, and leaves in `act.logits` the logits of the rows `batch.logits` asks
    /// for. Matmuls, norms and the feed-forward run over the whole batch, attention per
    /// sequence.
    pub fn forward(
        &self,
        batch: &ForwardBatch,
        cache: &mut KvCache,
        act: &mut Activations,
        opts: RunOptions,
    ) {
        let c = &self.config;
        let w = &self.weights;
        let n = batch.tokens.len();
        debug_assert!(n >= 1 && n <= act.max_batch);
        let ops = Ops { c, opts };
        let (d, qd, kvd, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        act.positions.clear();
        for run in batch.runs {
            act.positions.extend(run.pos..run.pos + run.rows.len());
        }
        debug_assert_eq!(act.positions.len(), n, "the runs cover the batch");

        // Embeddings.
        let x = &mut act.x[..n * d];
        for ((row, &tok), &pos) in x.chunks_exact_mut(d).zip(batch.tokens).zip(&act.positions) {
            w.token_embd.dequantize_row(tok as usize, row);
            if let Some(scale) = c.embedding_scale {
                row.iter_mut().for_each(|v| *v *= scale);
            }
            if let Some(table) = &w.position_embd {
                let p = &mut act.proj[..d];
                table.dequantize_row(pos, p);
                add_assign(row, p);
            }
        }
        let rope_style = match &c.position {
            Position::Rope(rope) => {
                let positions = act.positions.iter().copied();
                act.rope.fill(positions, &act.inv_freq, act.mscale);
                Some(rope.style)
            }
            Position::Learned => None,
        };

        for (layer, lw) in w.blocks.iter().enumerate() {
            // Attention block.
            let normed = &mut act.normed[..n * d];
            ops.norm(&lw.attn_norm, x, normed);
            let (q, k, v) = (
                &mut act.q[..n * qd],
                &mut act.k[..n * kvd],
                &mut act.v[..n * kvd],
            );
            match &lw.qkv {
                QkvWeights::Separate {
                    q: wq,
                    k: wk,
                    v: wv,
                } => ops.linears([(wq, q), (wk, k), (wv, v)], normed, &mut act.matmul),
                QkvWeights::Fused(wqkv) => {
                    let qkv = &mut act.qkv[..n * (qd + 2 * kvd)];
                    ops.linear(wqkv, normed, qkv, &mut act.matmul);
                    for (t, row) in qkv.chunks_exact(qd + 2 * kvd).enumerate() {
                        q[t * qd..][..qd].copy_from_slice(&row[..qd]);
                        k[t * kvd..][..kvd].copy_from_slice(&row[qd..qd + kvd]);
                        v[t * kvd..][..kvd].copy_from_slice(&row[qd + kvd..]);
                    }
                }
            }
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                ops.head_norm(qn, q);
                ops.head_norm(kn, k);
            }
            if let Some(style) = rope_style {
                rotate(&act.rope, q, qd, c.head_dim, style);
                rotate(&act.rope, k, kvd, c.head_dim, style);
            }
            let attn = &mut act.attn[..n * qd];
            for run in batch.runs {
                let (rows, kv_rows) = (
                    run.rows.start * qd..run.rows.end * qd,
                    run.rows.start * kvd..run.rows.end * kvd,
                );
                cache.write(layer, run.seq, run.pos, &k[kv_rows.clone()], &v[kv_rows]);
                let shape = ops.attention_shape();
                let (q, out) = (&q[rows.clone()], &mut attn[rows]);
                cache.attention(layer, run.seq, q, run.pos, &shape, opts.threads, out);
            }
            let proj = &mut act.proj[..n * d];
            ops.linear(&lw.attn_output, attn, proj, &mut act.matmul);
            add_assign(x, proj);

            // Feed-forward block.
            ops.norm(&lw.ffn_norm, x, normed);
            let gate = &mut act.gate[..n * ff];
            let hidden: &[f32] = match (c.ffn, &lw.ffn_gate) {
                (FfnKind::Gated(f), Some(wg)) => {
                    let up = &mut act.up[..n * ff];
                    ops.linears(
                        [(wg, &mut *gate), (&lw.ffn_up, up)],
                        normed,
                        &mut act.matmul,
                    );
                    let up = &*up;
                    // Token by token, the tokens split across threads (as all the
                    // element-wise work of a batch large enough to pay for it).
                    per_token(gate, ff, opts.threads, |tokens, gate| {
                        gated(gate, &up[tokens.start * ff..tokens.end * ff], f)
                    });
                    gate
                }
                (FfnKind::Gated(f), None) => {
                    let gate_up = &mut act.up[..n * 2 * ff];
                    ops.linear(&lw.ffn_up, normed, gate_up, &mut act.matmul);
                    let gate_up = &*gate_up;
                    per_token(gate, ff, opts.threads, |tokens, gate| {
                        let rows = gate_up[tokens.start * 2 * ff..].chunks_exact(2 * ff);
                        for (g, row) in gate.chunks_exact_mut(ff).zip(rows) {
                            g.copy_from_slice(&row[..ff]);
                            gated(g, &row[ff..], f);
                        }
                    });
                    gate
                }
                (FfnKind::Plain(f), _) => {
                    let up = &mut act.up[..n * ff];
                    ops.linear(&lw.ffn_up, normed, up, &mut act.matmul);
                    per_token(up, ff, opts.threads, |_, up| activate(up, f));
                    up
                }
            };
            ops.linear(&lw.ffn_down, hidden, proj, &mut act.matmul);
            add_assign(x, proj);
        }

        // Output, for the rows asked for.
        let rows = batch.logits.len();
        act.logits.clear();
        if rows == 0 {
            return;
        }
        let normed = &mut act.normed[..rows * d];
        for (&row, out) in batch.logits.iter().zip(normed.chunks_exact_mut(d)) {
            ops.norm(&w.output_norm, &x[row * d..][..d], out);
        }
        act.logits.resize(rows * c.vocab_size, 0.0);
        ops.matmul(&w.output, normed, &mut act.logits, &mut act.matmul);
        if let Some(cap) = c.final_softcap {
            softcap(&mut act.logits, cap);
        }
    }
}

/// RoPE on every head of every token of `x` (rows of `width` values).
fn rotate(table: &RopeTable, x: &mut [f32], width: usize, head_dim: usize, style: RopeStyle) {
    for (t, row) in x.chunks_exact_mut(width).enumerate() {
        for head in row.chunks_exact_mut(head_dim) {
            table.apply(head, t, style);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::per_token;

    #[test]
    fn per_token_hands_each_run_of_tokens_its_own_values() {
        // Enough values to split across threads.
        let (len, n) = (1000, 40);
        let mut x = vec![-1f32; n * len];
        per_token(&mut x, len, 2, |tokens, part| {
            assert_eq!(part.len(), tokens.len() * len);
            for (t, row) in tokens.zip(part.chunks_exact_mut(len)) {
                row.fill(t as f32);
            }
        });
        for (t, row) in x.chunks_exact(len).enumerate() {
            assert!(row.iter().all(|&v| v == t as f32), "token {t}");
        }
    }
}
