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
//! So far the tape differentiates what a LLaMA-family model runs (Llama, Mistral without
//! its window, SmolLM2): RMSNorm, linear layers with or without bias, RoPE, causal
//! attention over one sequence from position 0, SwiGLU, residual adds. Any other
//! operation makes the pass an error that names it ([`Autodiff::check`]).

use crate::attention::{attention, attention_backward, Attended, Heads};
use crate::elementwise::{swiglu, swiglu_backward};
use crate::linear::{embed, embed_backward, linear, linear_backward};
use crate::norm::{rms_norm, rms_norm_backward};
use crate::rope::{rope, rope_backward};
use std::sync::{Mutex, MutexGuard};
use synapse_core::ops::{Activation, RopeStyle, RopeTable};
use synapse_core::WeightTensor;
use synapse_inference::config::NormKind;
use synapse_inference::kv_cache::{KvCache, KvPages, PageShape};
use synapse_inference::model::backend::{
    AttentionShape, Backend, Linear, Norm, RopePositions, RunOptions,
};
use synapse_inference::model::decoder::SeqRun;

/// A trainable tensor: its values, as `[rows][cols]` for a matrix, and its gradient.
pub struct Param {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub value: Vec<f32>,
    pub grad: Vec<f32>,
}

/// A buffer: a node of the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

/// A weight matrix or vector: a parameter.
#[derive(Clone, Copy, Debug)]
pub struct ParamId(usize);

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
    },
    Rope {
        x: usize,
        width: usize,
        head_dim: usize,
        style: RopeStyle,
    },
    Attention {
        q: usize,
        k: usize,
        v: usize,
        tokens: usize,
        heads: Heads,
        lse: Vec<f32>,
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

/// The engine's backend with reverse-mode differentiation (see the module's text).
#[derive(Default)]
pub struct Autodiff {
    state: Mutex<State>,
}

impl Autodiff {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("no panic holds this lock")
    }

    fn param(&self, name: String, rows: usize, cols: usize, value: Vec<f32>) -> ParamId {
        let mut s = self.state();
        let grad = vec![0.0; value.len()];
        s.params.push(Param {
            name,
            rows,
            cols,
            value,
            grad,
        });
        ParamId(s.params.len() - 1)
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
        let add = |grads: &mut Vec<Option<Vec<f32>>>, i: usize, g: &[f32]| match &mut grads[i] {
            Some(acc) => acc.iter_mut().zip(g).for_each(|(a, g)| *a += g),
            None => grads[i] = Some(g.to_vec()),
        };
        for i in (0..s.nodes.len()).rev() {
            let Some(dy) = grads[i].take() else { continue };
            let node = &s.nodes[i];
            let value = |j: usize| s.nodes[j].value.as_slice();
            match &node.op {
                Op::Constant => {}
                Op::Embed { table, tokens } => {
                    let p = &mut s.params[*table];
                    embed_backward(&dy, p.cols, tokens, &mut p.grad);
                }
                Op::Scale { x, factor } => {
                    let dx: Vec<f32> = dy.iter().map(|d| d * factor).collect();
                    add(&mut grads, *x, &dx);
                }
                Op::Add { a, b } => {
                    add(&mut grads, *a, &dy);
                    add(&mut grads, *b, &dy);
                }
                Op::Gather { x, width, rows } => {
                    let mut dx = vec![0.0; value(*x).len()];
                    for (row, &r) in dy.chunks_exact(*width).zip(rows) {
                        let at = &mut dx[r * width..][..*width];
                        at.iter_mut().zip(row).for_each(|(a, d)| *a += d);
                    }
                    add(&mut grads, *x, &dx);
                }
                Op::RmsNorm { x, g, eps } => {
                    let (dx, dg) = rms_norm_backward(&dy, value(*x), &s.params[*g].value, *eps);
                    add(&mut grads, *x, &dx);
                    accumulate(&mut s.params[*g].grad, &dg);
                }
                Op::Linear {
                    x,
                    w,
                    bias,
                    tokens,
                    threads,
                } => {
                    let p = &s.params[*w];
                    let shape = (p.rows, p.cols);
                    let (dx, dw) =
                        linear_backward(&dy, value(*x), &p.value, *tokens, shape, *threads);
                    add(&mut grads, *x, &dx);
                    accumulate(&mut s.params[*w].grad, &dw);
                    if let Some(b) = bias {
                        let grad = &mut s.params[*b].grad;
                        for row in dy.chunks_exact(shape.0) {
                            accumulate(grad, row);
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
                    add(&mut grads, *x, &dx);
                }
                Op::Attention {
                    q,
                    k,
                    v,
                    tokens,
                    heads,
                    lse,
                } => {
                    let qkv = (value(*q), value(*k), value(*v));
                    let forward = (node.value.as_slice(), lse.as_slice());
                    let (dq, dk, dv) = attention_backward(&dy, qkv, forward, *tokens, *heads);
                    add(&mut grads, *q, &dq);
                    add(&mut grads, *k, &dk);
                    add(&mut grads, *v, &dv);
                }
                Op::SwiGlu { gate, up } => {
                    let (dg, du) = swiglu_backward(&dy, value(*gate), value(*up));
                    add(&mut grads, *gate, &dg);
                    add(&mut grads, *up, &du);
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
    type Matrix = ParamId;
    type Vector = ParamId;
    type Scratch = ();
    type Kv = NoPages;
    // Gradients are f32, and so is everything they flow through.
    const F32_ONLY: bool = true;

    fn matrix(&self, w: WeightTensor) -> synapse_inference::Result<ParamId> {
        let value = w.to_f32();
        Ok(self.param(w.name.clone(), w.rows, w.cols, value))
    }

    fn vector(&self, v: Vec<f32>) -> ParamId {
        let len = v.len();
        self.param(String::new(), 1, len, v)
    }

    fn buffer(&self, len: usize) -> Var {
        self.record(vec![0.0; len], Op::Constant)
    }

    fn kv_pages(&self, _: PageShape) -> NoPages {
        NoPages
    }

    fn embed(&self, table: &ParamId, tokens: &[u32], x: &mut Var) {
        let mut s = self.state();
        let p = &s.params[table.0];
        let value = embed(&p.value, p.cols, tokens);
        let op = Op::Embed {
            table: table.0,
            tokens: tokens.to_vec(),
        };
        *x = s.push(value, op);
    }

    fn add_rows(&self, _: &ParamId, _: &[usize], _: &mut Var) {
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
            let w = &s.params[layer.weight.0];
            let (rows, cols) = (w.rows, w.cols);
            let mut value = linear(
                &s.value(*x)[..n * cols],
                &w.value,
                n,
                (rows, cols),
                opts.threads,
            );
            if let Some(b) = layer.bias {
                let bias = &s.params[b.0].value;
                value
                    .chunks_exact_mut(rows)
                    .for_each(|row| accumulate(row, bias));
            }
            let op = Op::Linear {
                x: x.0,
                w: layer.weight.0,
                bias: layer.bias.map(|b| b.0),
                tokens: n,
                threads: opts.threads,
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
        _: RunOptions,
        out: &mut Var,
    ) -> synapse_inference::Result<()> {
        let refuse = refusal;
        let [run] = runs else {
            return Err(refuse("a training pass holds one sequence"));
        };
        if run.pos != 0 || run.rows.start != 0 {
            return Err(refuse("a training pass starts its sequence at position 0"));
        }
        if shape.window.is_some() || shape.softcap.is_some() {
            return Err(refuse(
                "sliding windows and soft-capped scores have no backward yet",
            ));
        }
        let heads = Heads {
            heads: shape.n_heads,
            kv_heads: shape.n_kv_heads,
            head_dim: shape.head_dim,
            scale: shape.scale,
        };
        let tokens = run.rows.len();
        let mut s = self.state();
        let Attended { out: value, lse } =
            attention(s.value(*q), s.value(*k), s.value(*v), tokens, heads);
        let op = Op::Attention {
            q: q.0,
            k: k.0,
            v: v.0,
            tokens,
            heads,
            lse,
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
