//! The CPU backend: `synapse_core`'s runtime-dispatched SIMD kernels on host buffers,
//! matmuls and attention split across the session's threads.

use super::{attend_runs, Backend, Linear, Norm, RopePositions, RunOptions};
use crate::config::NormKind;
use crate::error::Result;
use crate::kv_cache::{HostPages, KvCache, PageShape};
use crate::model::decoder::SeqRun;
use std::ops::Range;
use synapse_core::attention::AttentionShape;
use synapse_core::kernels::{matmul_many, MatmulScratch};
use synapse_core::ops::{
    activate, add_assign, add_bias, gated, layer_norm, rms_norm, rms_norm_in_place, softcap,
    Activation, RopeStyle, RopeTable,
};
use synapse_core::threads::parallel_chunks_mut;
use synapse_core::WeightTensor;

pub struct Cpu;

#[derive(Default)]
pub struct CpuScratch {
    matmul: MatmulScratch,
    rope: RopeTable,
}

/// Calls `f(rows, their part of x)` on runs of the rows of `x` (`len` values each), on up
/// to `threads` threads once a batch is large enough to pay for waking them.
fn per_row(x: &mut [f32], len: usize, threads: usize, f: impl Fn(Range<usize>, &mut [f32]) + Sync) {
    /// Values below which one thread does the work (about 10 us of activation functions).
    const PARALLEL_MIN: usize = 1 << 14;
    let threads = if x.len() >= PARALLEL_MIN { threads } else { 1 };
    parallel_chunks_mut(x, len, threads, f);
}

impl Backend for Cpu {
    type Buffer = Vec<f32>;
    type Matrix = WeightTensor;
    type Vector = Vec<f32>;
    type Scratch = CpuScratch;
    type Kv = HostPages;

    fn matrix(&self, _: &str, w: WeightTensor) -> crate::Result<WeightTensor> {
        Ok(w)
    }

    fn vector(&self, _: &str, v: Vec<f32>) -> Vec<f32> {
        v
    }

    fn buffer(&self, len: usize) -> Vec<f32> {
        vec![0.0; len]
    }

    fn kv_pages(&self, shape: PageShape) -> HostPages {
        HostPages::new(shape)
    }

    fn embed(&self, table: &WeightTensor, tokens: &[u32], x: &mut Vec<f32>) {
        for (row, &tok) in x.chunks_exact_mut(table.cols).zip(tokens) {
            table.dequantize_row(tok as usize, row);
        }
    }

    fn add_rows(&self, table: &WeightTensor, rows: &[usize], x: &mut Vec<f32>) {
        let mut row = vec![0.0; table.cols];
        for (out, &r) in x.chunks_exact_mut(table.cols).zip(rows) {
            table.dequantize_row(r, &mut row);
            add_assign(out, &row);
        }
    }

    fn scale(&self, x: &mut Vec<f32>, len: usize, factor: f32) {
        x[..len].iter_mut().for_each(|v| *v *= factor);
    }

    fn add(&self, acc: &mut Vec<f32>, x: &Vec<f32>, len: usize) {
        add_assign(&mut acc[..len], &x[..len]);
    }

    fn gather(&self, x: &Vec<f32>, width: usize, rows: &[usize], out: &mut Vec<f32>) {
        for (o, &r) in out.chunks_exact_mut(width).zip(rows) {
            o.copy_from_slice(&x[r * width..][..width]);
        }
    }

    fn split_qkv(
        &self,
        qkv: &Vec<f32>,
        n: usize,
        (qd, kvd): (usize, usize),
        (q, k, v): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
    ) {
        for (t, row) in qkv.chunks_exact(qd + 2 * kvd).take(n).enumerate() {
            q[t * qd..][..qd].copy_from_slice(&row[..qd]);
            k[t * kvd..][..kvd].copy_from_slice(&row[qd..qd + kvd]);
            v[t * kvd..][..kvd].copy_from_slice(&row[qd + kvd..]);
        }
    }

    fn norm(&self, norm: &Norm<Self>, eps: f32, x: &Vec<f32>, n: usize, out: &mut Vec<f32>) {
        let d = norm.weight.len();
        for (o, xi) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)).take(n) {
            match (norm.kind, &norm.bias) {
                (NormKind::Layer, Some(b)) => layer_norm(xi, &norm.weight, b, eps, o),
                _ => rms_norm(xi, &norm.weight, eps, o),
            }
        }
    }

    fn head_norm(&self, weight: &Vec<f32>, eps: f32, x: &mut Vec<f32>, len: usize) {
        for head in x[..len].chunks_exact_mut(weight.len()) {
            rms_norm_in_place(head, weight, eps);
        }
    }

    fn linears<const N: usize>(
        &self,
        mut parts: [(&Linear<Self>, &mut Vec<f32>); N],
        x: &Vec<f32>,
        n: usize,
        opts: RunOptions,
        scratch: &mut CpuScratch,
    ) {
        let x = &x[..n * parts[0].0.weight.cols];
        let mut matmuls = parts
            .each_mut()
            .map(|(l, out)| (&l.weight, &mut out[..n * l.weight.rows]));
        matmul_many(
            &mut matmuls,
            x,
            n,
            opts.precision,
            opts.threads,
            &mut scratch.matmul,
        );
        for (l, out) in parts.iter_mut() {
            if let Some(bias) = &l.bias {
                add_bias(&mut out[..n * l.weight.rows], bias);
            }
        }
    }

    fn prepare_rope(&self, rope: &RopePositions, scratch: &mut CpuScratch) {
        let positions = rope.positions.iter().copied();
        scratch.rope.fill(positions, rope.inv_freq, rope.mscale);
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        n: usize,
        width: usize,
        head_dim: usize,
        style: RopeStyle,
        scratch: &CpuScratch,
    ) {
        for (t, row) in x.chunks_exact_mut(width).take(n).enumerate() {
            for head in row.chunks_exact_mut(head_dim) {
                scratch.rope.apply(head, t, style);
            }
        }
    }

    fn attention(
        &self,
        cache: &mut KvCache<HostPages>,
        layer: usize,
        runs: &[SeqRun],
        (q, k, v): (&Vec<f32>, &Vec<f32>, &Vec<f32>),
        shape: &AttentionShape,
        opts: RunOptions,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        attend_runs(
            cache,
            layer,
            runs,
            (q, k, v),
            shape,
            out,
            |cache, runs, q, out| cache.attention(layer, runs, q, shape, opts.threads, out),
        )
    }

    fn gated(
        &self,
        gate: &mut Vec<f32>,
        up: &Vec<f32>,
        n: usize,
        width: usize,
        f: Activation,
        opts: RunOptions,
    ) {
        // Row by row, the rows split across threads (as all the element-wise work of a
        // batch large enough to pay for it).
        per_row(&mut gate[..n * width], width, opts.threads, |rows, gate| {
            gated(gate, &up[rows.start * width..rows.end * width], f)
        });
    }

    fn gated_fused(
        &self,
        gate_up: &Vec<f32>,
        n: usize,
        width: usize,
        f: Activation,
        out: &mut Vec<f32>,
        opts: RunOptions,
    ) {
        per_row(&mut out[..n * width], width, opts.threads, |rows, out| {
            let pairs = gate_up[rows.start * 2 * width..].chunks_exact(2 * width);
            for (o, row) in out.chunks_exact_mut(width).zip(pairs) {
                o.copy_from_slice(&row[..width]);
                gated(o, &row[width..], f);
            }
        });
    }

    fn activate(&self, x: &mut Vec<f32>, n: usize, width: usize, f: Activation, opts: RunOptions) {
        per_row(&mut x[..n * width], width, opts.threads, |_, x| {
            activate(x, f)
        });
    }

    fn softcap(&self, x: &mut Vec<f32>, len: usize, cap: f32) {
        softcap(&mut x[..len], cap);
    }

    fn read(&self, x: &Vec<f32>, len: usize, out: &mut Vec<f32>) {
        out.extend_from_slice(&x[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::per_row;

    #[test]
    fn per_row_hands_each_run_of_rows_its_own_values() {
        // Enough values to split across threads.
        let (len, n) = (1000, 40);
        let mut x = vec![-1f32; n * len];
        per_row(&mut x, len, 2, |rows, part| {
            assert_eq!(part.len(), rows.len() * len);
            for (t, row) in rows.zip(part.chunks_exact_mut(len)) {
                row.fill(t as f32);
            }
        });
        for (t, row) in x.chunks_exact(len).enumerate() {
            assert!(row.iter().all(|&v| v == t as f32), "row {t}");
        }
    }
}
