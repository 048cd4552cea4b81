//! The forward pass's other kernels (shaders/ops): norms, RoPE, activations (gated, fused
//! or plain), soft-capping, scaling, residual and bias adds, and greedy argmax, on
//! buffers of f32 in GPU memory; and moving f32s between the host and the GPU.

use crate::{Gpu, GpuError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use synapse_core::ops::{Activation, RopeStyle, RopeTable};
use wgpu::util::DeviceExt;

/// Element-wise kernels' workgroups per line (see elementwise.wgsl).
const LINE: usize = 32768;

/// A kernel: its name and its WGSL, a prelude (the parameters and helpers it shares)
/// followed by its own files.
pub(crate) struct Kernel {
    pub name: &'static str,
    pub source: &'static [&'static str],
}

const ROWS: &str = include_str!("shaders/ops/rows.wgsl");
const ELEMENTWISE: &str = include_str!("shaders/ops/elementwise.wgsl");
/// The kernel of shaders/ops/NAME.wgsl after `prelude`.
macro_rules! kernel {
    ($prelude:expr, $name:literal) => {
        Kernel {
            name: $name,
            source: &[
                $prelude,
                include_str!(concat!("shaders/ops/", $name, ".wgsl")),
            ],
        }
    };
}

const RMS_NORM: Kernel = kernel!(ROWS, "rms_norm");
const LAYER_NORM: Kernel = kernel!(ROWS, "layer_norm");
const ARGMAX: Kernel = kernel!(ROWS, "argmax");
const GATED: Kernel = kernel!(ELEMENTWISE, "gated");
const GATED_FUSED: Kernel = kernel!(ELEMENTWISE, "gated_fused");
const ACTIVATE: Kernel = kernel!(ELEMENTWISE, "activate");
const ADD: Kernel = kernel!(ELEMENTWISE, "add");
const ADD_BIAS: Kernel = kernel!(ELEMENTWISE, "add_bias");
const SCALE: Kernel = kernel!(ELEMENTWISE, "scale");
const SOFTCAP: Kernel = kernel!(ELEMENTWISE, "softcap");
const ROPE: Kernel = Kernel {
    name: "rope",
    source: &[include_str!("shaders/ops/rope.wgsl")],
};

/// A norm's weights: RMSNorm's scale, or LayerNorm's scale and shift.
pub enum NormWeights<'a> {
    Rms(&'a wgpu::Buffer),
    Layer(&'a wgpu::Buffer, &'a wgpu::Buffer),
}

/// The kernels' pipelines, each compiled on first use (their bind group layouts come
/// from the shaders).
#[derive(Default)]
pub(crate) struct Pipelines(Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>);

impl Gpu {
    pub(crate) fn pipeline(&self, kernel: &Kernel) -> Arc<wgpu::ComputePipeline> {
        let mut pipelines = self.ops.0.lock().expect("no panic holds this lock");
        let pipeline = pipelines.entry(kernel.name).or_insert_with(|| {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name),
                    source: wgpu::ShaderSource::Wgsl(kernel.source.join("\n").into()),
                });
            Arc::new(
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(kernel.name),
                        layout: None,
                        module: &module,
                        entry_point: Some("main"),
                        compilation_options: Default::default(),
                        cache: None,
                    }),
            )
        });
        pipeline.clone()
    }

    /// Records `kernel` over `groups` workgroups, with `params` (the words of its
    /// `Params`, a multiple of four) at binding 0 and `buffers` at the bindings that
    /// follow.
    pub(crate) fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) {
        let params: Vec<u8> = params.iter().flat_map(|p| p.to_le_bytes()).collect();
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(kernel.name),
                contents: &params,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let pipeline = self.pipeline(kernel);
        let entries: Vec<_> = (0u32..)
            .zip(std::iter::once(&params).chain(buffers.iter().copied()))
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// Workgroups for `len` threads of 256, in lines of [`LINE`].
    fn lines(len: usize) -> [u32; 3] {
        let groups = len.div_ceil(256);
        [groups.min(LINE) as u32, groups.div_ceil(LINE) as u32, 1]
    }

    /// An element-wise kernel over `len` values, with elementwise.wgsl's other
    /// parameters.
    fn dispatch_elements(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        (len, width, activation, value): (usize, usize, Option<Activation>, f32),
        buffers: &[&wgpu::Buffer],
    ) {
        let activation = match activation {
            Some(Activation::Silu) | None => 0,
            Some(Activation::GeluTanh) => 1,
            Some(Activation::Gelu) => 2,
        };
        let params = [len as u32, width as u32, activation, value.to_bits()];
        self.dispatch(encoder, kernel, &params, buffers, Gpu::lines(len));
    }

    /// A buffer of `len` f32s (or u32s) for the kernels, zeroed.
    pub fn buffer(&self, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 4 * len.max(1) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A buffer holding `values`.
    pub fn upload_f32(&self, values: &[f32]) -> wgpu::Buffer {
        let words: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        self.upload_words(&words)
    }

    /// A buffer holding `words`.
    pub fn upload_words(&self, words: &[u32]) -> wgpu::Buffer {
        let buffer = self.buffer(words.len());
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.queue.write_buffer(&buffer, 0, &bytes);
        buffer
    }

    /// Submits `encoder`, then copies the first `len` words of `buffer` to the host once
    /// the GPU is done.
    pub fn read_words(
        &self,
        mut encoder: wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<u32>, GpuError> {
        let bytes = 4 * len as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = std::sync::mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = sender.send(result);
            });
        let failed = |e: &dyn std::fmt::Display| GpuError::Readback(e.to_string());
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| failed(&e))?;
        receiver
            .recv()
            .map_err(|e| failed(&e))?
            .map_err(|e| failed(&e))?;
        let words = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| failed(&e))?
            .chunks_exact(4)
            .take(len)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        staging.unmap();
        Ok(words)
    }

    /// [`Gpu::read_words`] as f32s.
    pub fn read_f32(
        &self,
        encoder: wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let words = self.read_words(encoder, buffer, len)?;
        Ok(words.into_iter().map(f32::from_bits).collect())
    }

    /// A command encoder to record kernels into.
    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Normalises `rows` rows of `x` (`width` values each) into `out`: RMSNorm's
    /// `x / rms(x) * weight`, or LayerNorm's `(x - mean) / std * weight + bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_norm(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        weights: NormWeights,
        rows: usize,
        width: usize,
        eps: f32,
        out: &wgpu::Buffer,
    ) {
        let params = [rows as u32, width as u32, eps.to_bits(), 0];
        let groups = [rows as u32, 1, 1];
        match weights {
            NormWeights::Rms(weight) => {
                self.dispatch(encoder, &RMS_NORM, &params, &[x, weight, out], groups)
            }
            NormWeights::Layer(weight, bias) => {
                let buffers = [x, weight, bias, out];
                self.dispatch(encoder, &LAYER_NORM, &params, &buffers, groups)
            }
        }
    }

    /// `gate = activation(gate) * up` over `len` values.
    pub fn encode_gated(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        gate: &wgpu::Buffer,
        up: &wgpu::Buffer,
        len: usize,
        activation: Activation,
    ) {
        let params = (len, 0, Some(activation), 0.0);
        self.dispatch_elements(encoder, &GATED, params, &[gate, up]);
    }

    /// `out = activation(gate) * up` from `rows` rows of `[gate | up]` (`width` values
    /// each half).
    pub fn encode_gated_fused(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        gate_up: &wgpu::Buffer,
        (rows, width): (usize, usize),
        activation: Activation,
        out: &wgpu::Buffer,
    ) {
        let params = (rows * width, width, Some(activation), 0.0);
        self.dispatch_elements(encoder, &GATED_FUSED, params, &[gate_up, out]);
    }

    /// `x = activation(x)` over `len` values.
    pub fn encode_activate(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        len: usize,
        activation: Activation,
    ) {
        let params = (len, 0, Some(activation), 0.0);
        self.dispatch_elements(encoder, &ACTIVATE, params, &[x]);
    }

    /// `acc += x` over `len` values.
    pub fn encode_add(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        acc: &wgpu::Buffer,
        x: &wgpu::Buffer,
        len: usize,
    ) {
        self.dispatch_elements(encoder, &ADD, (len, 0, None, 0.0), &[acc, x]);
    }

    /// Adds `bias` (`width` values) to each of `rows` rows.
    pub fn encode_add_bias(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        (rows, width): (usize, usize),
    ) {
        let params = (rows * width, width, None, 0.0);
        self.dispatch_elements(encoder, &ADD_BIAS, params, &[x, bias]);
    }

    /// `x *= factor` over `len` values.
    pub fn encode_scale(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        len: usize,
        factor: f32,
    ) {
        self.dispatch_elements(encoder, &SCALE, (len, 0, None, factor), &[x]);
    }

    /// `x = cap * tanh(x / cap)` over `len` values.
    pub fn encode_softcap(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        len: usize,
        cap: f32,
    ) {
        self.dispatch_elements(encoder, &SOFTCAP, (len, 0, None, cap), &[x]);
    }

    /// Rotates every head (`head_dim` values) of `rows` rows of `width` by the angles of
    /// its row's position, as [`RopeTable::apply`] does; `table` holds the batch's.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_rope(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        (rows, width, head_dim): (usize, usize, usize),
        style: RopeStyle,
        table: &RopeTable,
    ) {
        let (cos, sin) = table.cos_sin();
        let half = table.half();
        let angles = self.upload_f32(&[cos, sin].concat());
        let pairs = rows * (width / head_dim) * half;
        let style = match style {
            RopeStyle::AdjacentPairs => 0,
            RopeStyle::HalfSplit => 1,
        };
        let params = [pairs, width, head_dim, half, style, 0, 0, 0].map(|p| p as u32);
        self.dispatch(encoder, &ROPE, &params, &[x, &angles], Gpu::lines(pairs));
    }

    /// `out[r]` = the index of the largest value of row `r` of `x` (`rows` rows of
    /// `width`), the first of equals: greedy decoding that reads back one word a row.
    pub fn encode_argmax(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        x: &wgpu::Buffer,
        rows: usize,
        width: usize,
        out: &wgpu::Buffer,
    ) {
        let params = [rows as u32, width as u32, 0, 0];
        self.dispatch(encoder, &ARGMAX, &params, &[x, out], [rows as u32, 1, 1]);
    }
}
