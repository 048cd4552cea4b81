//! The engine's [`Backend`] on the GPU: activations, norms, biases and the key/value pages
//! live in GPU buffers, every operation runs as kernels, and only the logits come back.
//! The model code is the engine's own decoder, unchanged.
//!
//! Operations are recorded, not run: a forward pass goes to the GPU as one submission,
//! when its logits are read (or before the host writes into a buffer that recorded work
//! uses).

use crate::{Gpu, GpuError, GpuMatrix, KvPlacement, NormWeights};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use synapse_core::ops::{Activation, RopeStyle, RopeTable};
use synapse_core::{DType, Storage, WeightTensor};
use synapse_inference::config::NormKind;
use synapse_inference::kv_cache::{KvCache, KvPages, PageShape, TILE};
use synapse_inference::model::backend::{
    AttentionShape, Backend, Linear, Norm, RopePositions, RunOptions,
};
use synapse_inference::model::decoder::SeqRun;

/// The work recorded since the last submission, shared by the backend and its key/value
/// pages, so that their commands stay in the order the engine gave them.
#[derive(Clone)]
struct Pending {
    device: wgpu::Device,
    queue: wgpu::Queue,
    encoder: Arc<Mutex<Option<wgpu::CommandEncoder>>>,
}

impl Pending {
    fn take(&self) -> Option<wgpu::CommandEncoder> {
        self.encoder
            .lock()
            .expect("no panic holds this lock")
            .take()
    }

    /// Records what `record` asks for after the work already pending.
    fn record(&self, record: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.encoder.lock().expect("no panic holds this lock");
        let encoder = pending.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        record(encoder);
    }

    /// Sends the pending work to the GPU.
    fn submit(&self) {
        if let Some(encoder) = self.take() {
            self.queue.submit([encoder.finish()]);
        }
    }
}

/// The GPU as the engine's backend.
pub struct GpuBackend {
    gpu: Gpu,
    pending: Pending,
    /// Reads still in flight, with where their values go in the output (see `settle`).
    #[cfg(target_arch = "wasm32")]
    reads: Mutex<Vec<(crate::Readback, usize)>>,
}

impl GpuBackend {
    pub fn new(gpu: Gpu) -> GpuBackend {
        let pending = Pending {
            device: gpu.device.clone(),
            queue: gpu.queue.clone(),
            encoder: Arc::default(),
        };
        GpuBackend {
            gpu,
            pending,
            #[cfg(target_arch = "wasm32")]
            reads: Mutex::default(),
        }
    }

    /// In a browser, which cannot block, a forward pass leaves its logits in flight and
    /// room for them in the output it wrote to: this waits for them and writes them there.
    #[cfg(target_arch = "wasm32")]
    pub async fn settle(&self, out: &mut [f32]) -> Result<(), GpuError> {
        let reads = std::mem::take(&mut *self.reads.lock().expect("no panic holds this lock"));
        for (read, at) in reads {
            let words = read.words().await?;
            for (value, word) in out[at..].iter_mut().zip(words) {
                *value = f32::from_bits(word);
            }
        }
        Ok(())
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Records what `record` asks for (see [`Pending`]).
    fn run(&self, record: impl FnOnce(&mut wgpu::CommandEncoder)) {
        self.pending.record(record);
    }

    /// Copies `len` f32s from `from` at `from_at` to `to` at `to_at` (in values).
    fn copy(
        encoder: &mut wgpu::CommandEncoder,
        (from, from_at): (&wgpu::Buffer, usize),
        (to, to_at): (&wgpu::Buffer, usize),
        len: usize,
    ) {
        let bytes = |n: usize| 4 * n as u64;
        encoder.copy_buffer_to_buffer(from, bytes(from_at), to, bytes(to_at), bytes(len));
    }
}

/// A weight matrix on the GPU, and its rows on the host for embedding lookups.
pub struct GpuWeights {
    matrix: GpuMatrix,
    host: WeightTensor,
}

/// The same weights as F32, for a type without a GPU kernel.
fn widened(w: &WeightTensor) -> WeightTensor {
    let bytes: Vec<u8> = w.to_f32().iter().flat_map(|v| v.to_le_bytes()).collect();
    let len = bytes.len();
    WeightTensor::new(
        w.name.clone(),
        DType::F32,
        w.rows,
        w.cols,
        Storage::from_vec(bytes),
        0..len,
    )
}

/// Key/value pages in one GPU buffer, in the host pages' layout (f32 whatever the cache's
/// type: the GPU keeps full precision), grown by copying into a larger one.
pub struct GpuPages {
    pending: Pending,
    buffer: wgpu::Buffer,
    pages: usize,
    shape: PageShape,
}

impl GpuPages {
    fn page_len(&self) -> usize {
        self.shape.n_layers * 2 * TILE * self.shape.kv_dim
    }
}

impl KvPages for GpuPages {
    fn grow(&mut self, n: usize) {
        let buffer = self.pending.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kv pages"),
            size: 4 * ((self.pages + n) * self.page_len()) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // After the work recorded so far, which the old buffer stays alive for.
        let old = 4 * (self.pages * self.page_len()) as u64;
        let from = &self.buffer;
        self.pending
            .record(|e| e.copy_buffer_to_buffer(from, 0, &buffer, 0, old));
        self.buffer = buffer;
        self.pages += n;
    }

    fn copy_page(&mut self, from: u32, to: u32) {
        let len = self.page_len();
        let at = |page: u32| (&self.buffer, page as usize * len);
        self.pending
            .record(|e| GpuBackend::copy(e, at(from), at(to), len));
    }
}

impl Backend for GpuBackend {
    type Buffer = wgpu::Buffer;
    type Matrix = GpuWeights;
    type Vector = wgpu::Buffer;
    type Scratch = RopeTable;
    type Kv = GpuPages;
    // The kernels compute in f32 and keep the cache in f32 so far.
    const F32_ONLY: bool = true;

    fn matrix(&self, _: &str, w: WeightTensor) -> synapse_inference::Result<GpuWeights> {
        let matrix = match self.gpu.upload(&w) {
            Err(GpuError::UnsupportedType { .. } | GpuError::OddF16Row { .. }) => {
                eprintln!(
                    "note: {}: {} weights run as F32 on the GPU (no kernel reads them as they are)",
                    w.name, w.dtype
                );
                self.gpu.upload(&widened(&w))
            }
            uploaded => uploaded,
        };
        let matrix = matrix.map_err(|e| synapse_inference::Error::Device {
            device: self.gpu.adapter().name,
            reason: e.to_string(),
        })?;
        Ok(GpuWeights { matrix, host: w })
    }

    fn vector(&self, _: &str, v: Vec<f32>) -> wgpu::Buffer {
        self.gpu.upload_f32(&v)
    }

    fn buffer(&self, len: usize) -> wgpu::Buffer {
        self.gpu.buffer(len)
    }

    fn kv_pages(&self, shape: PageShape) -> GpuPages {
        GpuPages {
            pending: self.pending.clone(),
            buffer: self.gpu.buffer(1),
            pages: 0,
            shape,
        }
    }

    fn embed(&self, table: &GpuWeights, tokens: &[u32], x: &mut wgpu::Buffer) {
        let width = table.host.cols;
        let mut rows = vec![0f32; tokens.len() * width];
        for (row, &token) in rows.chunks_exact_mut(width).zip(tokens) {
            table.host.dequantize_row(token as usize, row);
        }
        let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
        // The host's write comes before anything still pending, which may read `x`.
        self.pending.submit();
        self.gpu.queue.write_buffer(x, 0, &bytes);
    }

    fn add_rows(&self, table: &GpuWeights, rows: &[usize], x: &mut wgpu::Buffer) {
        let width = table.host.cols;
        let mut values = vec![0f32; rows.len() * width];
        for (row, &r) in values.chunks_exact_mut(width).zip(rows) {
            table.host.dequantize_row(r, row);
        }
        let values = self.gpu.upload_f32(&values);
        self.run(|e| self.gpu.encode_add(e, x, &values, rows.len() * width));
    }

    fn scale(&self, x: &mut wgpu::Buffer, len: usize, factor: f32) {
        self.run(|e| self.gpu.encode_scale(e, x, len, factor));
    }

    fn add(&self, acc: &mut wgpu::Buffer, x: &wgpu::Buffer, len: usize) {
        self.run(|e| self.gpu.encode_add(e, acc, x, len));
    }

    fn gather(&self, x: &wgpu::Buffer, width: usize, rows: &[usize], out: &mut wgpu::Buffer) {
        self.run(|e| {
            for (i, &r) in rows.iter().enumerate() {
                GpuBackend::copy(e, (x, r * width), (out, i * width), width);
            }
        });
    }

    fn split_qkv(
        &self,
        qkv: &wgpu::Buffer,
        n: usize,
        (q_dim, kv_dim): (usize, usize),
        (q, k, v): (&mut wgpu::Buffer, &mut wgpu::Buffer, &mut wgpu::Buffer),
    ) {
        let width = q_dim + 2 * kv_dim;
        self.run(|e| {
            for row in 0..n {
                let at = row * width;
                GpuBackend::copy(e, (qkv, at), (q, row * q_dim), q_dim);
                GpuBackend::copy(e, (qkv, at + q_dim), (k, row * kv_dim), kv_dim);
                GpuBackend::copy(e, (qkv, at + q_dim + kv_dim), (v, row * kv_dim), kv_dim);
            }
        });
    }

    fn norm(
        &self,
        norm: &Norm<Self>,
        eps: f32,
        x: &wgpu::Buffer,
        n: usize,
        out: &mut wgpu::Buffer,
    ) {
        let weights = match (norm.kind, &norm.bias) {
            (NormKind::Rms, _) => NormWeights::Rms(&norm.weight),
            (NormKind::Layer, Some(bias)) => NormWeights::Layer(&norm.weight, bias),
            (NormKind::Layer, None) => unreachable!("the loader gives LayerNorm a bias"),
        };
        let width = (norm.weight.size() / 4) as usize;
        self.run(|e| self.gpu.encode_norm(e, x, weights, n, width, eps, out));
    }

    fn head_norm(&self, weight: &wgpu::Buffer, eps: f32, x: &mut wgpu::Buffer, len: usize) {
        let head_dim = (weight.size() / 4) as usize;
        let normed = self.gpu.buffer(len);
        self.run(|e| {
            let rows = len / head_dim;
            self.gpu
                .encode_norm(e, x, NormWeights::Rms(weight), rows, head_dim, eps, &normed);
            GpuBackend::copy(e, (&normed, 0), (x, 0), len);
        });
    }

    fn linears<const N: usize>(
        &self,
        parts: [(&Linear<Self>, &mut wgpu::Buffer); N],
        x: &wgpu::Buffer,
        n: usize,
        _opts: RunOptions,
        _scratch: &mut RopeTable,
    ) {
        self.run(|e| {
            for (linear, out) in parts {
                let w = &linear.weight.matrix;
                self.gpu.encode_matmul(e, w, x, n, out);
                if let Some(bias) = &linear.bias {
                    self.gpu.encode_add_bias(e, out, bias, (n, w.rows));
                }
            }
        });
    }

    fn prepare_rope(&self, rope: &RopePositions, scratch: &mut RopeTable) {
        scratch.fill(rope.positions.iter().copied(), rope.inv_freq, rope.mscale);
    }

    fn rope(
        &self,
        x: &mut wgpu::Buffer,
        n: usize,
        width: usize,
        head_dim: usize,
        style: RopeStyle,
        scratch: &RopeTable,
    ) {
        let shape = (n, width, head_dim);
        self.run(|e| self.gpu.encode_rope(e, x, shape, style, scratch));
    }

    fn attention(
        &self,
        cache: &mut KvCache<GpuPages>,
        layer: usize,
        runs: &[SeqRun],
        (q, k, v): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        shape: &AttentionShape,
        _opts: RunOptions,
        out: &mut wgpu::Buffer,
    ) -> synapse_inference::Result<()> {
        let slots = cache.slots();
        // Every run's keys and values first, as the CPU does, then the queries.
        for write in [true, false] {
            for run in runs {
                let (pages, table) = cache.pages(run.seq)?;
                let kv = KvPlacement {
                    pages: &pages.buffer,
                    table,
                    slots,
                    n_layers: pages.shape.n_layers,
                    layer,
                };
                let rows: (Range<usize>, usize) = (run.rows.clone(), run.pos);
                self.run(|e| match write {
                    true => self.gpu.encode_kv_write(e, &kv, shape, (k, v), rows),
                    false => self.gpu.encode_attention(e, &kv, shape, (q, out), rows),
                });
            }
        }
        Ok(())
    }

    fn gated(
        &self,
        gate: &mut wgpu::Buffer,
        up: &wgpu::Buffer,
        n: usize,
        width: usize,
        f: Activation,
        _opts: RunOptions,
    ) {
        self.run(|e| self.gpu.encode_gated(e, gate, up, n * width, f));
    }

    fn gated_fused(
        &self,
        gate_up: &wgpu::Buffer,
        n: usize,
        width: usize,
        f: Activation,
        out: &mut wgpu::Buffer,
        _opts: RunOptions,
    ) {
        self.run(|e| self.gpu.encode_gated_fused(e, gate_up, (n, width), f, out));
    }

    fn activate(
        &self,
        x: &mut wgpu::Buffer,
        n: usize,
        width: usize,
        f: Activation,
        _opts: RunOptions,
    ) {
        self.run(|e| self.gpu.encode_activate(e, x, n * width, f));
    }

    fn softcap(&self, x: &mut wgpu::Buffer, len: usize, cap: f32) {
        self.run(|e| self.gpu.encode_softcap(e, x, len, cap));
    }

    fn read(&self, x: &wgpu::Buffer, len: usize, out: &mut Vec<f32>) {
        let encoder = self.pending.take().unwrap_or_else(|| self.gpu.encoder());
        let read = self.gpu.start_read(encoder, x, len);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let words = self.gpu.wait(read).unwrap_or_else(|e| panic!("{e}"));
            out.extend(words.into_iter().map(f32::from_bits));
        }
        // A browser cannot wait here: the values come in `settle`, into the room left.
        #[cfg(target_arch = "wasm32")]
        {
            let mut reads = self.reads.lock().expect("no panic holds this lock");
            reads.push((read, out.len()));
            out.resize(out.len() + len, f32::NAN);
        }
    }
}
