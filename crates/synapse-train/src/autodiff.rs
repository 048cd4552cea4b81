//! Reverse-mode differentiation of the engine's own forward pass: [`Autodiff`] is a
//! `Backend` (the seam the decoder is written against) that runs each operation on host
//! f32 rows with this crate's forward functions and records it on a tape; `backward`
//! walks the tape from the logits back to every weight.
//!
//! Buffers are tape variables: an operation that the engine runs in place (`add`,
//! `scale`, `rope`, ...) records a new node and points the buffer at it, so the values a
//! backward step needs are never overwritten. Weights are parameters, kept apart from the
//! tape, which is cleared after each step.
//!
//! Two ways to train ([`Training`]): every weight in f32 (from scratch), or LoRA: the
//! model's weight matrices stay frozen as loaded (quantized or not, read by the engine's
//! kernels forward and dequantized a band at a time backward), and the chosen projections
//! each gain a trained low-rank update `(alpha / rank) · B·A`.
//!
//! So far the tape differentiates what a LLaMA-family model runs (Llama, Mistral without
//! its window, SmolLM2): RMSNorm, linear layers with or without bias, RoPE, causal
//! attention over one sequence from position 0, SwiGLU, residual adds. Any other
//! operation makes the pass an error that names it ([`Autodiff::check`]).

use crate::attention::{attention, attention_backward, Heads};
use crate::elementwise::{swiglu, swiglu_backward};
use crate::linear::{
    accumulate_linear_dw, embed, embed_backward, linear, linear_dx, stored_linear, stored_linear_dx,
};
use crate::lora::{Lora, LoraOptions};
use crate::norm::{rms_norm, rms_norm_backward};
use crate::rope::{rope, rope_backward};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use synapse_core::ops::{Activation, RopeStyle, RopeTable};
use synapse_core::WeightTensor;
use synapse_inference::config::NormKind;
use synapse_inference::kv_cache::{KvCache, KvPages, PageShape};
use synapse_inference::model::backend::{
    AttentionShape, Backend, Linear, Norm, RopePositions, RunOptions,
};
use synapse_inference::model::decoder::SeqRun;

/// A tensor in f32: its values, as `[rows][cols]` for a matrix, and its gradient (which
/// stays zero while it is frozen).
pub struct Param {
    /// The engine's (GGUF) name: `blk.0.attn_q.weight`, or `blk.0.attn_q.lora_a`.
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
    /// Not trained (fine-tuning's norms): no gradient, no update.
    pub frozen: bool,
}

impl Param {
    /// A norm's weights or a bias (a LoRA factor of rank 1 is still a matrix).
    pub fn is_vector(&self) -> bool {
        self.rows == 1 && !self.name.contains(".lora_")
    }
}

/// How a model is trained.
#[derive(Clone, Debug, Default)]
pub enum Training {
    /// Every weight, in f32.
    #[default]
    Full,
    /// Low-rank adapters on the frozen weights.
    Lora(LoraOptions),
}

/// A weight matrix as the backend holds it.
pub enum Matrix {
    /// Trained: parameter `.0`.
    Param(usize),
    /// Frozen as the engine loaded it, with its adapter if it has one.
    Frozen {
        weight: WeightTensor,
        lora: Option<Lora>,
    },
}

/// A buffer: a node of the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// A weight vector: a parameter.
#[derive(Clone, Copy, Debug)]
pub struct ParamId(usize);

/// A weight matrix: one of [`State::matrices`].
#[derive(Clone, Copy, Debug)]
pub struct MatrixId(usize);

/// What a node computed, from which nodes and parameters.
enum Op {
    /// A fresh buffer (zeros): no gradient flows from it.
    Constant,
    Embed {
        table: usize,
        tokens: Vec<u32>,
    },
    Scale {
        x: usize,
        factor: f32,
    },
    Add {
        a: usize,
        b: usize,
    },
    Gather {
        x: usize,
        width: usize,
        rows: Vec<usize>,
    },
    RmsNorm {
        x: usize,
        g: usize,
        eps: f32,
    },
    Linear {
        x: usize,
        w: usize,
        bias: Option<usize>,
        tokens: usize,
        threads: usize,
        /// `x · Aᵀ` of the matrix's adapter.
        lora_mid: Option<Vec<f32>>,
    },
    Rope {
        x: usize,
        width: usize,
        head_dim: usize,
        style: RopeStyle,
    },
    /// Each of `runs` (rows of one sequence, from its position 0) attends to itself.
    Attention {
        q: usize,
        k: usize,
        v: usize,
        runs: Vec<Range<usize>>,
        heads: Heads,
        /// `[rows][heads]`.
        lse: Vec<f32>,
        threads: usize,
    },
    SwiGlu {
        gate: usize,
        up: usize,
    },
}

struct Node {
    value: Vec<f32>,
    op: Op,
}

/// The parameters, the tape, and what the last forward pass needs again.
#[derive(Default)]
pub struct State {
    pub params: Vec<Param>,
    pub matrices: Vec<Matrix>,
    training: Training,
    nodes: Vec<Node>,
    /// RoPE's angles for the pass being recorded (rebuilt for the backward).
    rope: RopeTable,
    /// The buffer the last `read` returned: the logits.
    output: Option<Var>,
    /// The first operation of the pass that has no backward.
    unsupported: Option<&'static str>,
}

impl State {
    fn value(&self, v: Var) -> &[f32] {
        &self.nodes[v.0].value
    }

    fn push(&mut self, value: Vec<f32>, op: Op) -> Var {
        self.nodes.push(Node { value, op });
        Var(self.nodes.len() - 1)
    }
}

impl State {
    fn param(&mut self, name: &str, (rows, cols): (usize, usize), value: Vec<f32>) -> usize {
        let frozen = matches!(self.training, Training::Lora(_));
        self.params.push(Param {
            name: name.to_string(),
            rows,
            cols,
            grad: vec![0.0; value.len()],
            value,
            frozen,
        });
        self.params.len() - 1
    }

    /// The parameter called `name`.
    pub fn find(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// `x · Wᵀ` for matrix `w`, and its adapter's `x · Aᵀ`.
    fn matrix_product(&self, w: usize, x: &[f32], n: usize, threads: usize) -> Product {
        match &self.matrices[w] {
            Matrix::Param(p) => {
                let p = &self.params[*p];
                let y = linear(&x[..n * p.cols], &p.value, n, (p.rows, p.cols), threads);
                (y, None)
            }
            Matrix::Frozen { weight, lora } => {
                let x = &x[..n * weight.cols];
                let mut y = stored_linear(x, weight, n, threads);
                let Some(lora) = lora else { return (y, None) };
                let (a, b) = (&self.params[lora.a], &self.params[lora.b]);
                let mid = linear(x, &a.value, n, (a.rows, a.cols), threads);
                let update = linear(&mid, &b.value, n, (b.rows, b.cols), threads);
                y.iter_mut()
                    .zip(&update)
                    .for_each(|(y, u)| *y += lora.scale * u);
                (y, Some(mid))
            }
        }
    }
}

/// A product's output and, with an adapter, its `x · Aᵀ`.
type Product = (Vec<f32>, Option<Vec<f32>>);

/// The engine's backend with reverse-mode differentiation (see the module's text).
#[derive(Default)]
pub struct Autodiff {
    state: Mutex<State>,
}

impl Autodiff {
    pub fn new(training: Training) -> Autodiff {
        let state = State {
            training,
            ..State::default()
        };
        Autodiff {
            state: Mutex::new(state),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panic holds this lock")
    }

    /// The logits the last forward pass read, as a tape variable.
    pub fn output(&self) -> Option<Var> {
        self.state().output
    }

    /// Adds to every parameter's gradient that of `Σ from · seed` (`seed` is the
    /// gradient of the loss with respect to `from`), walking the tape backwards.
    pub fn backward(&self, from: Var, seed: &[f32]) {
        let mut guard = self.state();
        let s = &mut *guard;
        let mut grads: Vec<Option<Vec<f32>>> = (0..s.nodes.len()).map(|_| None).collect();
        grads[from.0] = Some(seed.to_vec());
        // A node's first gradient is kept as it comes; later ones are added to it.
        let add = |grads: &mut Vec<Option<Vec<f32>>>, i: usize, g: Vec<f32>| match &mut grads[i] {
            Some(acc) => accumulate(acc, &g),
            None => grads[i] = Some(g),
        };
        for i in (0..s.nodes.len()).rev() {
            let Some(dy) = grads[i].take() else { continue };
            let node = &s.nodes[i];
            let value = |j: usize| s.nodes[j].value.as_slice();
            match &node.op {
                Op::Constant => {}
                Op::Embed { table, tokens } => {
                    let p = &mut s.params[*table];
                    if !p.frozen {
                        embed_backward(&dy, p.cols, tokens, &mut p.grad);
                    }
                }
                Op::Scale { x, factor } => {
                    let dx: Vec<f32> = dy.iter().map(|d| d * factor).collect();
                    add(&mut grads, *x, dx);
                }
                Op::Add { a, b } => {
                    add(&mut grads, *a, dy.clone());
                    add(&mut grads, *b, dy);
                }
                Op::Gather { x, width, rows } => {
                    let mut dx = vec![0.0; value(*x).len()];
                    for (row, &r) in dy.chunks_exact(*width).zip(rows) {
                        let at = &mut dx[r * width..][..*width];
                        at.iter_mut().zip(row).for_each(|(a, d)| *a += d);
                    }
                    add(&mut grads, *x, dx);
                }
                Op::RmsNorm { x, g, eps } => {
                    let (dx, dg) = rms_norm_backward(&dy, value(*x), &s.params[*g].value, *eps);
                    add(&mut grads, *x, dx);
                    accumulate_param(&mut s.params[*g], &dg);
                }
                Op::Linear {
                    x,
                    w,
                    bias,
                    tokens,
                    threads,
                    lora_mid,
                } => {
                    let (input, n, threads) = (value(*x), *tokens, *threads);
                    let (dx, rows) = match &s.matrices[*w] {
                        Matrix::Param(p) => {
                            let param = &mut s.params[*p];
                            let shape = (param.rows, param.cols);
                            let dx = linear_dx(&dy, &param.value, n, shape, threads);
                            if !param.frozen {
                                accumulate_linear_dw(
                                    &dy,
                                    input,
                                    n,
                                    shape,
                                    threads,
                                    &mut param.grad,
                                );
                            }
                            (dx, shape.0)
                        }
                        Matrix::Frozen { weight, lora } => {
                            let mut dx = stored_linear_dx(&dy, weight, n, threads);
                            if let (Some(lora), Some(mid)) = (lora, lora_mid) {
                                let dy: Vec<f32> = dy.iter().map(|d| d * lora.scale).collect();
                                let b = &mut s.params[lora.b];
                                let b_shape = (b.rows, b.cols);
                                let dmid = linear_dx(&dy, &b.value, n, b_shape, threads);
                                accumulate_linear_dw(&dy, mid, n, b_shape, threads, &mut b.grad);
                                let a = &mut s.params[lora.a];
                                let a_shape = (a.rows, a.cols);
                                accumulate(
                                    &mut dx,
                                    &linear_dx(&dmid, &a.value, n, a_shape, threads),
                                );
                                accumulate_linear_dw(
                                    &dmid,
                                    input,
                                    n,
                                    a_shape,
                                    threads,
                                    &mut a.grad,
                                );
                            }
                            (dx, weight.rows)
                        }
                    };
                    add(&mut grads, *x, dx);
                    if let Some(b) = bias {
                        for row in dy.chunks_exact(rows) {
                            accumulate_param(&mut s.params[*b], row);
                        }
                    }
                }
                Op::Rope {
                    x,
                    width,
                    head_dim,
                    style,
                } => {
                    let mut dx = dy;
                    rope_backward(&mut dx, *width, *head_dim, &s.rope, *style);
                    add(&mut grads, *x, dx);
                }
                Op::Attention {
                    q,
                    k,
                    v,
                    runs,
                    heads,
                    lse,
                    threads,
                } => {
                    let (qw, kvw) = (
                        heads.heads * heads.head_dim,
                        heads.kv_heads * heads.head_dim,
                    );
                    let (q_all, k_all, v_all) = (value(*q), value(*k), value(*v));
                    let mut dq = vec![0.0; q_all.len()];
                    let (mut dk, mut dv) = (vec![0.0; k_all.len()], vec![0.0; v_all.len()]);
                    for rows in runs {
                        let (qr, kvr) = (
                            rows.start * qw..rows.end * qw,
                            rows.start * kvw..rows.end * kvw,
                        );
                        let qkv = (&q_all[qr.clone()], &k_all[kvr.clone()], &v_all[kvr.clone()]);
                        let lse = &lse[rows.start * heads.heads..rows.end * heads.heads];
                        let forward = (&node.value[qr.clone()], lse);
                        let (q_grad, k_grad, v_grad) = attention_backward(
                            &dy[qr.clone()],
                            qkv,
                            forward,
                            rows.len(),
                            *heads,
                            *threads,
                        );
                        dq[qr].copy_from_slice(&q_grad);
                        dk[kvr.clone()].copy_from_slice(&k_grad);
                        dv[kvr].copy_from_slice(&v_grad);
                    }
                    add(&mut grads, *q, dq);
                    add(&mut grads, *k, dk);
                    add(&mut grads, *v, dv);
                }
                Op::SwiGlu { gate, up } => {
                    let (dg, du) = swiglu_backward(&dy, value(*gate), value(*up));
                    add(&mut grads, *gate, dg);
                    add(&mut grads, *up, du);
                }
            }
        }
    }

    /// Forgets the recorded pass (after its backward): the parameters stay.
    pub fn clear_tape(&self) {
        let mut s = self.state();
        s.nodes.clear();
        s.output = None;
        s.unsupported = None;
    }

    /// An error if the recorded pass ran an operation without a backward (its values
    /// are then not the model's).
    pub fn check(&self) -> synapse_inference::Result<()> {
        match self.state().unsupported {
            None => Ok(()),
            Some(what) => Err(refusal(&format!(
                "{what} has no backward yet (LLaMA-family models only so far)"
            ))),
        }
    }

    /// Notes an operation without a backward (see [`Autodiff::check`]).
    fn unsupported(&self, what: &'static str) {
        self.state().unsupported.get_or_insert(what);
    }

    /// Records `value` computed by `op`.
    fn record(&self, value: Vec<f32>, op: Op) -> Var {
        self.state().push(value, op)
    }
}

fn accumulate(acc: &mut [f32], g: &[f32]) {
    acc.iter_mut().zip(g).for_each(|(a, g)| *a += g);
}

/// Adds `g` to a trained parameter's gradient (a frozen one keeps none).
fn accumulate_param(p: &mut Param, g: &[f32]) {
    if !p.frozen {
        accumulate(&mut p.grad, g);
    }
}

/// Nothing to keep: a training pass attends over its own keys and values.
pub struct NoPages;

impl KvPages for NoPages {
    fn grow(&mut self, _: usize) {}
    fn copy_page(&mut self, _: u32, _: u32) {}
}

fn refusal(reason: &str) -> synapse_inference::Error {
    synapse_inference::Error::Device {
        device: "autodiff".into(),
        reason: reason.into(),
    }
}

impl Backend for Autodiff {
    type Buffer = Var;
    type Matrix = MatrixId;
    type Vector = ParamId;
    type Scratch = ();
    type Kv = NoPages;
    // Gradients are f32, and so is everything they flow through.
    const F32_ONLY: bool = true;

    /// A tied output projection comes again under the embedding table's name, and is
    /// the same matrix.
    fn matrix(&self, name: &str, w: WeightTensor) -> synapse_inference::Result<MatrixId> {
        let mut s = self.state();
        let named = |m: &Matrix| match m {
            Matrix::Param(p) => s.params[*p].name == name,
            Matrix::Frozen { weight, .. } => weight.name == name,
        };
        if let Some(i) = s.matrices.iter().position(named) {
            return Ok(MatrixId(i));
        }
        let matrix = match s.training.clone() {
            Training::Full => Matrix::Param(s.param(name, (w.rows, w.cols), w.to_f32())),
            Training::Lora(opts) => {
                let lora = opts.adapts(name).then(|| {
                    let (a, b) = opts.initial(name, w.rows, w.cols);
                    let stem = name.trim_end_matches(".weight");
                    let a = s.param(&format!("{stem}.lora_a"), (opts.rank, w.cols), a);
                    let b = s.param(&format!("{stem}.lora_b"), (w.rows, opts.rank), b);
                    s.params[a].frozen = false;
                    s.params[b].frozen = false;
                    Lora {
                        a,
                        b,
                        scale: opts.alpha / opts.rank as f32,
                    }
                });
                let mut weight = w;
                weight.name = name.to_string();
                Matrix::Frozen { weight, lora }
            }
        };
        s.matrices.push(matrix);
        Ok(MatrixId(s.matrices.len() - 1))
    }

    fn vector(&self, name: &str, v: Vec<f32>) -> ParamId {
        let len = v.len();
        ParamId(self.state().param(name, (1, len), v))
    }

    fn buffer(&self, len: usize) -> Var {
        self.record(vec![0.0; len], Op::Constant)
    }

    fn kv_pages(&self, _: PageShape) -> NoPages {
        NoPages
    }

    fn embed(&self, table: &MatrixId, tokens: &[u32], x: &mut Var) {
        let mut s = self.state();
        let (value, op) = match &s.matrices[table.0] {
            Matrix::Param(p) => {
                let op = Op::Embed {
                    table: *p,
                    tokens: tokens.to_vec(),
                };
                (embed(&s.params[*p].value, s.params[*p].cols, tokens), op)
            }
            Matrix::Frozen { weight, .. } => {
                let mut value = vec![0.0; tokens.len() * weight.cols];
                for (row, &t) in value.chunks_exact_mut(weight.cols).zip(tokens) {
                    weight.dequantize_row(t as usize, row);
                }
                (value, Op::Constant)
            }
        };
        *x = s.push(value, op);
    }

    fn add_rows(&self, _: &MatrixId, _: &[usize], _: &mut Var) {
        self.unsupported("learned positions")
    }

    fn scale(&self, x: &mut Var, len: usize, factor: f32) {
        let mut s = self.state();
        let value = s.value(*x)[..len].iter().map(|v| v * factor).collect();
        *x = s.push(value, Op::Scale { x: x.0, factor });
    }

    fn add(&self, acc: &mut Var, x: &Var, len: usize) {
        let mut s = self.state();
        let value = s.value(*acc)[..len]
            .iter()
            .zip(s.value(*x))
            .map(|(a, b)| a + b)
            .collect();
        *acc = s.push(value, Op::Add { a: acc.0, b: x.0 });
    }

    fn gather(&self, x: &Var, width: usize, rows: &[usize], out: &mut Var) {
        let mut s = self.state();
        let from = s.value(*x);
        let value = rows
            .iter()
            .flat_map(|&r| &from[r * width..][..width])
            .copied()
            .collect();
        let op = Op::Gather {
            x: x.0,
            width,
            rows: rows.to_vec(),
        };
        *out = s.push(value, op);
    }

    fn split_qkv(
        &self,
        _: &Var,
        n: usize,
        (q_dim, kv_dim): (usize, usize),
        (q, k, v): (&mut Var, &mut Var, &mut Var),
    ) {
        self.unsupported("a fused QKV matrix");
        (*q, *k, *v) = (
            self.buffer(n * q_dim),
            self.buffer(n * kv_dim),
            self.buffer(n * kv_dim),
        );
    }

    fn norm(&self, norm: &Norm<Self>, eps: f32, x: &Var, n: usize, out: &mut Var) {
        if norm.kind != NormKind::Rms || norm.bias.is_some() {
            self.unsupported("LayerNorm");
            // Zeros of the right size, so that the rest of the pass still runs.
            let width = self.state().params[norm.weight.0].value.len();
            *out = self.buffer(n * width);
            return;
        }
        let mut s = self.state();
        let g = &s.params[norm.weight.0].value;
        let value = rms_norm(&s.value(*x)[..n * g.len()], g, eps);
        let op = Op::RmsNorm {
            x: x.0,
            g: norm.weight.0,
            eps,
        };
        *out = s.push(value, op);
    }

    fn head_norm(&self, _: &ParamId, _: f32, _: &mut Var, _: usize) {
        self.unsupported("per-head norms (Qwen3)")
    }

    fn linears<const N: usize>(
        &self,
        parts: [(&Linear<Self>, &mut Var); N],
        x: &Var,
        n: usize,
        opts: RunOptions,
        _: &mut (),
    ) {
        let mut s = self.state();
        for (layer, out) in parts {
            let w = layer.weight.0;
            let (mut value, lora_mid) = s.matrix_product(w, s.value(*x), n, opts.threads);
            if let Some(b) = layer.bias {
                let bias = &s.params[b.0].value;
                value
                    .chunks_exact_mut(bias.len())
                    .for_each(|row| accumulate(row, bias));
            }
            let op = Op::Linear {
                x: x.0,
                w,
                bias: layer.bias.map(|b| b.0),
                tokens: n,
                threads: opts.threads,
                lora_mid,
            };
            *out = s.push(value, op);
        }
    }

    fn prepare_rope(&self, rope: &RopePositions, _: &mut ()) {
        let positions = rope.positions.iter().copied();
        self.state()
            .rope
            .fill(positions, rope.inv_freq, rope.mscale);
    }

    fn rope(&self, x: &mut Var, n: usize, width: usize, head_dim: usize, style: RopeStyle, _: &()) {
        let mut s = self.state();
        let mut value = s.value(*x)[..n * width].to_vec();
        rope(&mut value, width, head_dim, &s.rope, style);
        let op = Op::Rope {
            x: x.0,
            width,
            head_dim,
            style,
        };
        *x = s.push(value, op);
    }

    fn attention(
        &self,
        _: &mut KvCache<NoPages>,
        _: usize,
        runs: &[SeqRun],
        (q, k, v): (&Var, &Var, &Var),
        shape: &AttentionShape,
        opts: RunOptions,
        out: &mut Var,
    ) -> synapse_inference::Result<()> {
        if runs.iter().any(|run| run.pos != 0) {
            return Err(refusal(
                "a training pass evaluates each sequence whole, from position 0",
            ));
        }
        if shape.window.is_some() || shape.softcap.is_some() {
            return Err(refusal(
                "sliding windows and soft-capped scores have no backward yet",
            ));
        }
        let heads = Heads {
            heads: shape.n_heads,
            kv_heads: shape.n_kv_heads,
            head_dim: shape.head_dim,
            scale: shape.scale,
        };
        let (qw, kvw) = (
            heads.heads * heads.head_dim,
            heads.kv_heads * heads.head_dim,
        );
        let mut s = self.state();
        let rows = runs.last().map_or(0, |r| r.rows.end);
        let (mut value, mut lse) = (vec![0.0; rows * qw], vec![0.0; rows * heads.heads]);
        for run in runs {
            let r = &run.rows;
            let attended = attention(
                &s.value(*q)[r.start * qw..r.end * qw],
                &s.value(*k)[r.start * kvw..r.end * kvw],
                &s.value(*v)[r.start * kvw..r.end * kvw],
                r.len(),
                heads,
                opts.threads,
            );
            value[r.start * qw..r.end * qw].copy_from_slice(&attended.out);
            lse[r.start * heads.heads..r.end * heads.heads].copy_from_slice(&attended.lse);
        }
        let op = Op::Attention {
            q: q.0,
            k: k.0,
            v: v.0,
            runs: runs.iter().map(|r| r.rows.clone()).collect(),
            heads,
            lse,
            threads: opts.threads,
        };
        *out = s.push(value, op);
        Ok(())
    }

    fn gated(
        &self,
        gate: &mut Var,
        up: &Var,
        n: usize,
        width: usize,
        f: Activation,
        _: RunOptions,
    ) {
        if f != Activation::Silu {
            return self.unsupported("gated activations other than SiLU");
        }
        let mut s = self.state();
        let len = n * width;
        let value = swiglu(&s.value(*gate)[..len], &s.value(*up)[..len]);
        let op = Op::SwiGlu {
            gate: gate.0,
            up: up.0,
        };
        *gate = s.push(value, op);
    }

    fn gated_fused(
        &self,
        _: &Var,
        n: usize,
        width: usize,
        _: Activation,
        out: &mut Var,
        _: RunOptions,
    ) {
        self.unsupported("a fused gate/up matrix (Phi-3)");
        *out = self.buffer(n * width);
    }

    fn activate(&self, _: &mut Var, _: usize, _: usize, _: Activation, _: RunOptions) {
        self.unsupported("plain activations (GPT-2)")
    }

    fn softcap(&self, _: &mut Var, _: usize, _: f32) {
        self.unsupported("soft-capped logits (Gemma 2)")
    }

    fn read(&self, x: &Var, len: usize, out: &mut Vec<f32>) {
        let mut s = self.state();
        out.extend_from_slice(&s.value(*x)[..len]);
        s.output = Some(*x);
    }
}
