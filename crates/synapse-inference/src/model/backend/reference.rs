//! The reference backend: every operation in the plainest arithmetic, one thread, sharing
//! no kernel with [`super::Cpu`]. Matmuls dequantize each weight row (the scalar
//! dequantizers, checked against gguf-py) and sum in f64; attention gathers the
//! sequence's keys and values and runs the textbook softmax in f64. Slow by design: it is
//! the second implementation the conformance tests hold the engine's to. Only the
//! plumbing that does no arithmetic (host buffers, row copies) is [`Cpu`]'s.

use super::{attend_runs, Backend, Cpu, Linear, Norm, RopePositions, RunOptions};
use crate::config::NormKind;
use crate::error::Result;
use crate::kv_cache::{HostPages, KvCache, PageShape};
use crate::model::decoder::SeqRun;
use synapse_core::attention::{reference_attention, AttentionShape};
use synapse_core::ops::{Activation, RopeStyle};
use synapse_core::WeightTensor;

pub struct Reference;

/// The angles of every row of the batch: `[row][inv_freq.len()]` cosines and sines.
#[derive(Default)]
pub struct Angles {
    cos: Vec<f64>,
    sin: Vec<f64>,
    half: usize,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

impl Backend for Reference {
    type Buffer = Vec<f32>;
    type Matrix = WeightTensor;
    type Vector = Vec<f32>;
    type Scratch = Angles;
    type Kv = HostPages;

    fn matrix(&self, name: &str, w: WeightTensor) -> crate::Result<WeightTensor> {
        Cpu.matrix(name, w)
    }

    fn vector(&self, name: &str, v: Vec<f32>) -> Vec<f32> {
        Cpu.vector(name, v)
    }

    fn buffer(&self, len: usize) -> Vec<f32> {
        Cpu.buffer(len)
    }

    fn kv_pages(&self, shape: PageShape) -> HostPages {
        Cpu.kv_pages(shape)
    }

    fn embed(&self, table: &WeightTensor, tokens: &[u32], x: &mut Vec<f32>) {
        Cpu.embed(table, tokens, x)
    }

    fn add_rows(&self, table: &WeightTensor, rows: &[usize], x: &mut Vec<f32>) {
        let mut row = vec![0.0; table.cols];
        for (out, &r) in x.chunks_exact_mut(table.cols).zip(rows) {
            table.dequantize_row(r, &mut row);
            out.iter_mut().zip(&row).for_each(|(o, v)| *o += v);
        }
    }

    fn scale(&self, x: &mut Vec<f32>, len: usize, factor: f32) {
        x[..len].iter_mut().for_each(|v| *v *= factor);
    }

    fn add(&self, acc: &mut Vec<f32>, x: &Vec<f32>, len: usize) {
        acc[..len].iter_mut().zip(x).for_each(|(a, v)| *a += v);
    }

    fn gather(&self, x: &Vec<f32>, width: usize, rows: &[usize], out: &mut Vec<f32>) {
        Cpu.gather(x, width, rows, out)
    }

    fn split_qkv(
        &self,
        qkv: &Vec<f32>,
        n: usize,
        dims: (usize, usize),
        out: (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
    ) {
        Cpu.split_qkv(qkv, n, dims, out)
    }

    fn norm(&self, norm: &Norm<Self>, eps: f32, x: &Vec<f32>, n: usize, out: &mut Vec<f32>) {
        let d = norm.weight.len();
        for t in 0..n {
            let row = &x[t * d..][..d];
            let mean = match norm.kind {
                NormKind::Layer => row.iter().map(|&v| v as f64).sum::<f64>() / d as f64,
                NormKind::Rms => 0.0,
            };
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for i in 0..d {
                let shift = norm.bias.as_ref().map_or(0.0, |b| b[i] as f64);
                out[t * d + i] =
                    ((row[i] as f64 - mean) * inv * norm.weight[i] as f64 + shift) as f32;
            }
        }
    }

    fn head_norm(&self, weight: &Vec<f32>, eps: f32, x: &mut Vec<f32>, len: usize) {
        for head in x[..len].chunks_exact_mut(weight.len()) {
            let ms = head.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / head.len() as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            for (v, &w) in head.iter_mut().zip(weight) {
                *v = (*v as f64 * inv * w as f64) as f32;
            }
        }
    }

    fn linears<const N: usize>(
        &self,
        parts: [(&Linear<Self>, &mut Vec<f32>); N],
        x: &Vec<f32>,
        n: usize,
        _: RunOptions,
        _: &mut Angles,
    ) {
        for (linear, out) in parts {
            let w = &linear.weight;
            let mut row = vec![0.0; w.cols];
            for r in 0..w.rows {
                w.dequantize_row(r, &mut row);
                let bias = linear.bias.as_ref().map_or(0.0, |b| b[r] as f64);
                for t in 0..n {
                    out[t * w.rows + r] = (dot(&row, &x[t * w.cols..][..w.cols]) + bias) as f32;
                }
            }
        }
    }

    fn prepare_rope(&self, rope: &RopePositions, angles: &mut Angles) {
        angles.half = rope.inv_freq.len();
        angles.cos.clear();
        angles.sin.clear();
        for &p in rope.positions {
            for &f in rope.inv_freq {
                let a = p as f64 * f as f64;
                angles.cos.push(a.cos() * rope.mscale as f64);
                angles.sin.push(a.sin() * rope.mscale as f64);
            }
        }
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        n: usize,
        width: usize,
        head_dim: usize,
        style: RopeStyle,
        angles: &Angles,
    ) {
        let h = angles.half;
        for t in 0..n {
            for head in x[t * width..][..width].chunks_exact_mut(head_dim) {
                for i in 0..h {
                    let (a, b) = match style {
                        RopeStyle::AdjacentPairs => (2 * i, 2 * i + 1),
                        RopeStyle::HalfSplit => (i, i + h),
                    };
                    let (c, s) = (angles.cos[t * h + i], angles.sin[t * h + i]);
                    let (x0, x1) = (head[a] as f64, head[b] as f64);
                    head[a] = (x0 * c - x1 * s) as f32;
                    head[b] = (x0 * s + x1 * c) as f32;
                }
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
        _: RunOptions,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        attend_runs(
            cache,
            layer,
            runs,
            (q, k, v),
            shape,
            out,
            |cache, runs, q, out| {
                let qd = shape.n_heads * shape.head_dim;
                for run in runs {
                    let (keys, values) = cache.history(layer, run.seq, run.pos + run.rows.len())?;
                    let rows = run.rows.start * qd..run.rows.end * qd;
                    let o = reference_attention(&q[rows.clone()], &keys, &values, run.pos, shape);
                    out[rows].copy_from_slice(&o);
                }
                Ok(())
            },
        )
    }

    fn gated(
        &self,
        gate: &mut Vec<f32>,
        up: &Vec<f32>,
        n: usize,
        width: usize,
        f: Activation,
        _: RunOptions,
    ) {
        for (g, &u) in gate[..n * width].iter_mut().zip(up) {
            *g = f.apply(*g) * u;
        }
    }

    fn gated_fused(
        &self,
        gate_up: &Vec<f32>,
        n: usize,
        width: usize,
        f: Activation,
        out: &mut Vec<f32>,
        _: RunOptions,
    ) {
        for t in 0..n {
            for i in 0..width {
                let (g, u) = (
                    gate_up[t * 2 * width + i],
                    gate_up[t * 2 * width + width + i],
                );
                out[t * width + i] = f.apply(g) * u;
            }
        }
    }

    fn activate(&self, x: &mut Vec<f32>, n: usize, width: usize, f: Activation, _: RunOptions) {
        x[..n * width].iter_mut().for_each(|v| *v = f.apply(*v));
    }

    fn softcap(&self, x: &mut Vec<f32>, len: usize, cap: f32) {
        for v in &mut x[..len] {
            *v = (cap as f64 * (*v as f64 / cap as f64).tanh()) as f32;
        }
    }

    fn read(&self, x: &Vec<f32>, len: usize, out: &mut Vec<f32>) {
        Cpu.read(x, len, out)
    }
}
