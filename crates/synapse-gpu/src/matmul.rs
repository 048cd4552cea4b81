//! Matrix products with weights in their quantized form (shaders/matmul.wgsl, with one
//! `row_dots` per weight type).

use crate::kernel::{Kernel, TILE_SUMS};
use crate::{Gpu, GpuMatrix};
use synapse_core::DType;

/// Rows per line of workgroups (see `Shape::row_span` in matmul.wgsl).
const ROW_SPAN: usize = 32768;
/// Tokens a workgroup takes (`TILE` in matmul.wgsl).
const TILE: usize = 8;

/// The matrix product for weights of `dtype`: matmul.wgsl, then the type's `row_dots`.
fn kernel(dtype: DType) -> Kernel {
    const MATMUL: &str = include_str!("shaders/matmul.wgsl");
    const BLOCKS: &str = include_str!("shaders/blocks.wgsl");
    const K_SCALES: &str = include_str!("shaders/k_scales.wgsl");
    let (name, source): (_, &'static [&'static str]) = match dtype {
        DType::F32 => ("matmul F32", &[MATMUL, include_str!("shaders/f32.wgsl")]),
        DType::F16 => ("matmul F16", &[MATMUL, include_str!("shaders/f16.wgsl")]),
        DType::Q8_0 => (
            "matmul Q8_0",
            &[MATMUL, BLOCKS, include_str!("shaders/q8_0.wgsl")],
        ),
        DType::Q4_0 => (
            "matmul Q4_0",
            &[MATMUL, BLOCKS, include_str!("shaders/q4_0.wgsl")],
        ),
        DType::Q4_1 => (
            "matmul Q4_1",
            &[MATMUL, BLOCKS, include_str!("shaders/q4_1.wgsl")],
        ),
        DType::Q4K => (
            "matmul Q4_K",
            &[MATMUL, BLOCKS, K_SCALES, include_str!("shaders/q4_k.wgsl")],
        ),
        DType::Q5K => (
            "matmul Q5_K",
            &[MATMUL, BLOCKS, K_SCALES, include_str!("shaders/q5_k.wgsl")],
        ),
        DType::Q6K => (
            "matmul Q6_K",
            &[MATMUL, BLOCKS, include_str!("shaders/q6_k.wgsl")],
        ),
        _ => unreachable!("GpuMatrix only holds types with kernels"),
    };
    Kernel {
        name,
        source,
        reduction: Some(&TILE_SUMS),
    }
}

impl Gpu {
    /// Records `out[t * w.rows + r] = dot(row r of w, row t of x)` for `n_tokens` rows of
    /// `x` (each `w.cols` long) into `encoder`.
    pub fn encode_matmul(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        w: &GpuMatrix,
        x: &wgpu::Buffer,
        n_tokens: usize,
        out: &wgpu::Buffer,
    ) {
        for part in &w.parts {
            let rows = part.rows.len();
            let params = [
                rows as u32,
                w.cols as u32,
                ROW_SPAN as u32,
                part.scales_start,
                n_tokens as u32,
                w.rows as u32,
                part.rows.start as u32,
            ];
            let groups = [
                rows.min(ROW_SPAN) as u32,
                rows.div_ceil(ROW_SPAN) as u32,
                n_tokens.div_ceil(TILE) as u32,
            ];
            let buffers = [&part.words, x, out];
            self.dispatch(encoder, &kernel(w.dtype), &params, &buffers, groups);
        }
    }

    /// [`Gpu::encode_matmul`] from and to host memory: `x` holds `n_tokens` rows of
    /// `w.cols` values; the result has `n_tokens` rows of `w.rows`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn matmul(
        &self,
        w: &GpuMatrix,
        x: &[f32],
        n_tokens: usize,
    ) -> Result<Vec<f32>, crate::GpuError> {
        assert_eq!(x.len(), n_tokens * w.cols, "{}: activation length", w.name);
        let x = self.upload_f32(x);
        let out = self.buffer(n_tokens * w.rows);
        let mut encoder = self.encoder();
        self.encode_matmul(&mut encoder, w, &x, n_tokens, &out);
        self.read_f32(encoder, &out, n_tokens * w.rows)
    }
}
