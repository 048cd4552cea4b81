//! The forward pass's other kernels (shaders/ops): norms, RoPE, activations (gated, fused
//! or plain), soft-capping, scaling, residual and bias adds, and greedy argmax, on
//! buffers of f32 in GPU memory.

use crate::kernel::{Kernel, WORKGROUP};
use crate::Gpu;
use synapse_core::ops::{Activation, RopeStyle, RopeTable};

const ROWS: &str = include_str!("shaders/ops/rows.wgsl");
const ELEMENTWISE: &str = include_str!("shaders/ops/elementwise.wgsl");
/// The kernel of shaders/ops/NAME.wgsl after `prelude`, with `reduction`.
macro_rules! kernel {
    ($prelude:expr, $name:literal, $reduction:expr) => {
        Kernel {
            name: $name,
            source: &[
                $prelude,
                include_str!(concat!("shaders/ops/", $name, ".wgsl")),
            ],
            reduction: $reduction,
        }
    };
}

const RMS_NORM: Kernel = kernel!(ROWS, "rms_norm", Some(&WORKGROUP));
const LAYER_NORM: Kernel = kernel!(ROWS, "layer_norm", Some(&WORKGROUP));
const ARGMAX: Kernel = kernel!(ROWS, "argmax", None);
const GATED: Kernel = kernel!(ELEMENTWISE, "gated", None);
const GATED_FUSED: Kernel = kernel!(ELEMENTWISE, "gated_fused", None);
const ACTIVATE: Kernel = kernel!(ELEMENTWISE, "activate", None);
const ADD: Kernel = kernel!(ELEMENTWISE, "add", None);
const ADD_BIAS: Kernel = kernel!(ELEMENTWISE, "add_bias", None);
const SCALE: Kernel = kernel!(ELEMENTWISE, "scale", None);
const SOFTCAP: Kernel = kernel!(ELEMENTWISE, "softcap", None);
const ROPE: Kernel = Kernel {
    name: "rope",
    source: &[include_str!("shaders/ops/rope.wgsl")],
    reduction: None,
};

/// A norm's weights: RMSNorm's scale, or LayerNorm's scale and shift.
pub enum NormWeights<'a> {
    Rms(&'a wgpu::Buffer),
    Layer(&'a wgpu::Buffer, &'a wgpu::Buffer),
}

impl Gpu {
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
