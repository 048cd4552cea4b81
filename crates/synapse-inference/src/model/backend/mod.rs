//! The seam between the model and the hardware that runs it: a [`Backend`] owns the types
//! of its activation buffers, weight matrices and per-channel vectors, and every
//! operation of a forward pass. The decoder (`super::decoder`) is written once against
//! this trait; [`Cpu`] is the engine's SIMD and multi-threaded implementation,
//! [`Reference`] a deliberately plain one (scalar f32 from dequantized rows, one thread,
//! attention as a textbook softmax) that the same conformance tests run on. A GPU
//! backend or an autograd wrapper implements the same trait.
//!
//! Buffers hold rows of f32 activations; an operation reads and writes the first rows
//! it is told about. Key/value memory is a [`KvCache`] pool: its books (which page holds
//! which positions of which sequence, forks, copy on write) are shared by every backend,
//! its pages are the backend's own [`Backend::Kv`].

mod cpu;
mod reference;

pub use cpu::Cpu;
pub use reference::Reference;

use super::decoder::SeqRun;
use crate::config::NormKind;
use crate::error::Result;
use crate::kv_cache::{HostPages, KvCache, KvPages, PageShape};
// The shape of attention is part of this seam: backends take it from here.
pub use synapse_core::attention::AttentionShape;
// So is the precision policy a pass runs with (`RunOptions`).
pub use synapse_core::kernels::Precision;
use synapse_core::ops::{Activation, RopeStyle};
use synapse_core::WeightTensor;

/// How a forward pass runs, as the session asks.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub precision: Precision,
    pub threads: usize,
}

/// A linear layer: `y = W x (+ b)`.
pub struct Linear<B: Backend> {
    pub weight: B::Matrix,
    pub bias: Option<B::Vector>,
}

pub struct Norm<B: Backend> {
    pub kind: NormKind,
    pub weight: B::Vector,
    /// LayerNorm's shift.
    pub bias: Option<B::Vector>,
}

/// RoPE's inputs for one forward pass: the frequencies and attention factor of the
/// session's context, and the position of every row of the batch.
pub struct RopePositions<'a> {
    pub inv_freq: &'a [f32],
    pub mscale: f32,
    pub positions: &'a [usize],
}

pub trait Backend: Send + Sync + Sized + 'static {
    /// Rows of f32 activations.
    type Buffer: Send;
    /// A weight matrix, as this backend's matmuls read it.
    type Matrix: Send + Sync;
    /// Per-channel weights: norms, biases.
    type Vector: Send + Sync;
    /// What one engine keeps between operations (matmul workspace, RoPE tables).
    type Scratch: Default + Send;
    /// Storage of key/value pages.
    type Kv: KvPages;
    /// Whether every activation and the key/value cache are f32 here, whatever the
    /// session's precision asks (sessions then resolve to `Precision::F32` and an f32
    /// cache, so that what they report is what runs).
    const F32_ONLY: bool = false;

    /// Takes a loaded matrix (in the layout the CPU kernels read; any layout can give
    /// back its rows, see [`WeightTensor::dequantize_row`]); an error where the device
    /// cannot hold it. `name` is the tensor's GGUF name (`blk.0.attn_q.weight`).
    fn matrix(&self, name: &str, w: WeightTensor) -> crate::Result<Self::Matrix>;
    fn vector(&self, name: &str, v: Vec<f32>) -> Self::Vector;
    /// A buffer of `len` values.
    fn buffer(&self, len: usize) -> Self::Buffer;
    /// Empty storage for key/value pages of `shape`.
    fn kv_pages(&self, shape: PageShape) -> Self::Kv;

    /// Row `i` of `x` holds row `tokens[i]` of `table`.
    fn embed(&self, table: &Self::Matrix, tokens: &[u32], x: &mut Self::Buffer);
    /// Adds row `rows[i]` of `table` to row `i` of `x` (learned positions).
    fn add_rows(&self, table: &Self::Matrix, rows: &[usize], x: &mut Self::Buffer);
    /// Multiplies the first `len` values by `factor`.
    fn scale(&self, x: &mut Self::Buffer, len: usize, factor: f32);
    /// `acc += x` over the first `len` values.
    fn add(&self, acc: &mut Self::Buffer, x: &Self::Buffer, len: usize);
    /// Row `i` of `out` is row `rows[i]` of `x` (rows of `width` values).
    fn gather(&self, x: &Self::Buffer, width: usize, rows: &[usize], out: &mut Self::Buffer);
    /// Splits `n` rows of `[q | k | v]` (widths `dims`: `q_dim`, `kv_dim`, `kv_dim`) into
    /// the three buffers of `out`.
    fn split_qkv(
        &self,
        qkv: &Self::Buffer,
        n: usize,
        dims: (usize, usize),
        out: (&mut Self::Buffer, &mut Self::Buffer, &mut Self::Buffer),
    );

    /// Normalises `n` rows of `x` into `out`.
    fn norm(&self, norm: &Norm<Self>, eps: f32, x: &Self::Buffer, n: usize, out: &mut Self::Buffer);
    /// RMS-normalises every `weight.len()`-value head of the first `len` values, in place.
    fn head_norm(&self, weight: &Self::Vector, eps: f32, x: &mut Self::Buffer, len: usize);

    /// `out = x W^T (+ b)` for `n` rows of `x`, for each part, the input shared.
    fn linears<const N: usize>(
        &self,
        parts: [(&Linear<Self>, &mut Self::Buffer); N],
        x: &Self::Buffer,
        n: usize,
        opts: RunOptions,
        scratch: &mut Self::Scratch,
    );

    /// Readies RoPE for a forward pass's positions.
    fn prepare_rope(&self, rope: &RopePositions, scratch: &mut Self::Scratch);
    /// Rotates every head of `n` rows of `width` values (the positions given to
    /// [`Backend::prepare_rope`]).
    fn rope(
        &self,
        x: &mut Self::Buffer,
        n: usize,
        width: usize,
        head_dim: usize,
        style: RopeStyle,
        scratch: &Self::Scratch,
    );

    /// Writes the keys and values of each run's rows to its sequence in `cache` (room
    /// was made for them), then attends each run's queries over its sequence, into `out`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        cache: &mut KvCache<Self::Kv>,
        layer: usize,
        runs: &[SeqRun],
        qkv: (&Self::Buffer, &Self::Buffer, &Self::Buffer),
        shape: &AttentionShape,
        opts: RunOptions,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// `gate = f(gate) * up` over `n` rows of `width` values.
    fn gated(
        &self,
        gate: &mut Self::Buffer,
        up: &Self::Buffer,
        n: usize,
        width: usize,
        f: Activation,
        opts: RunOptions,
    );
    /// `out = f(gate) * up` from `n` rows of `[gate | up]` (`width` values each half).
    fn gated_fused(
        &self,
        gate_up: &Self::Buffer,
        n: usize,
        width: usize,
        f: Activation,
        out: &mut Self::Buffer,
        opts: RunOptions,
    );
    /// `x = f(x)` over `n` rows of `width` values.
    fn activate(
        &self,
        x: &mut Self::Buffer,
        n: usize,
        width: usize,
        f: Activation,
        opts: RunOptions,
    );
    /// `x = cap * tanh(x / cap)` over the first `len` values.
    fn softcap(&self, x: &mut Self::Buffer, len: usize, cap: f32);

    /// Appends the first `len` values of `x` to `out` (logits, to the host).
    fn read(&self, x: &Self::Buffer, len: usize, out: &mut Vec<f32>);
}

/// [`Backend::attention`] for backends whose buffers are host memory: writes every run's
/// keys and values, then calls `attend(cache, runs, queries, output)` once for them all.
fn attend_runs(
    cache: &mut KvCache<HostPages>,
    layer: usize,
    runs: &[SeqRun],
    (q, k, v): (&[f32], &[f32], &[f32]),
    shape: &AttentionShape,
    out: &mut [f32],
    attend: impl FnOnce(&KvCache<HostPages>, &[SeqRun], &[f32], &mut [f32]) -> Result<()>,
) -> Result<()> {
    let (qd, kvd) = (
        shape.n_heads * shape.head_dim,
        shape.n_kv_heads * shape.head_dim,
    );
    for run in runs {
        let kv_rows = run.rows.start * kvd..run.rows.end * kvd;
        cache.write(layer, run.seq, run.pos, &k[kv_rows.clone()], &v[kv_rows])?;
    }
    let rows = runs.last().map_or(0, |run| run.rows.end);
    attend(cache, runs, &q[..rows * qd], &mut out[..rows * qd])
}
