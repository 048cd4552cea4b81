//! Matrix products with weights in their quantized form (shaders/matmul.wgsl, with one
//! `row_dot` per weight type).

use crate::{Gpu, GpuError, GpuMatrix};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use synapse_core::DType;
use wgpu::util::DeviceExt;

/// Rows per line of workgroups (see `Shape::row_span` in matmul.wgsl).
const ROW_SPAN: usize = 32768;

/// The bind group layout all weight types share, and their pipelines, each compiled on
/// first use.
pub(crate) struct Matmul {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: Mutex<HashMap<DType, Arc<wgpu::ComputePipeline>>>,
}

/// The WGSL that follows matmul.wgsl for each weight type with a kernel: its `row_dot`.
fn row_dot_source(dtype: DType) -> Vec<&'static str> {
    let blocks = include_str!("shaders/blocks.wgsl");
    let k_scales = include_str!("shaders/k_scales.wgsl");
    match dtype {
        DType::F32 => vec![include_str!("shaders/f32.wgsl")],
        DType::F16 => vec![include_str!("shaders/f16.wgsl")],
        DType::Q8_0 => vec![blocks, include_str!("shaders/q8_0.wgsl")],
        DType::Q4_0 => vec![blocks, include_str!("shaders/q4_0.wgsl")],
        DType::Q4_1 => vec![blocks, include_str!("shaders/q4_1.wgsl")],
        DType::Q4K => vec![blocks, k_scales, include_str!("shaders/q4_k.wgsl")],
        DType::Q5K => vec![blocks, k_scales, include_str!("shaders/q5_k.wgsl")],
        DType::Q6K => vec![blocks, include_str!("shaders/q6_k.wgsl")],
        _ => unreachable!("GpuMatrix only holds types with kernels"),
    }
}

impl Matmul {
    pub(crate) fn new(device: &wgpu::Device) -> Matmul {
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let read = wgpu::BufferBindingType::Storage { read_only: true };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("matmul"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Uniform),
                entry(1, read),
                entry(2, read),
                entry(3, read),
                entry(4, wgpu::BufferBindingType::Storage { read_only: false }),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("matmul"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        Matmul {
            layout,
            pipeline_layout,
            pipelines: Mutex::new(HashMap::new()),
        }
    }

    fn pipeline(&self, device: &wgpu::Device, dtype: DType) -> Arc<wgpu::ComputePipeline> {
        let mut pipelines = self.pipelines.lock().expect("no panic holds this lock");
        let pipeline = pipelines.entry(dtype).or_insert_with(|| {
            let mut source = vec![include_str!("shaders/matmul.wgsl")];
            source.extend(row_dot_source(dtype));
            let source = source.join("\n");
            let label = format!("matmul {dtype}");
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            Arc::new(
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: Some(&self.pipeline_layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }),
            )
        });
        pipeline.clone()
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
        let shape: Vec<u8> = [w.rows, w.cols, ROW_SPAN]
            .iter()
            .flat_map(|&v| (v as u32).to_le_bytes())
            .chain([0; 4]) // a uniform struct's size is a multiple of 16 bytes
            .collect();
        let shape = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("matmul shape"),
                contents: &shape,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let buffers = [&shape, &w.codes, &w.scales, x, out];
        let entries: Vec<_> = (0u32..)
            .zip(buffers)
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&w.name),
            layout: &self.matmul.layout,
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&w.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.matmul.pipeline(&self.device, w.dtype));
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(
            w.rows.min(ROW_SPAN) as u32,
            w.rows.div_ceil(ROW_SPAN) as u32,
            n_tokens as u32,
        );
    }

    /// [`Gpu::encode_matmul`] from and to host memory: `x` holds `n_tokens` rows of
    /// `w.cols` values; the result has `n_tokens` rows of `w.rows`.
    pub fn matmul(&self, w: &GpuMatrix, x: &[f32], n_tokens: usize) -> Result<Vec<f32>, GpuError> {
        assert_eq!(x.len(), n_tokens * w.cols, "{}: activation length", w.name);
        let x_bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let x = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("x"),
                contents: &x_bytes,
                usage: wgpu::BufferUsages::STORAGE,
            });
        let out_bytes = (n_tokens * w.rows * 4) as u64;
        let buffer = |label, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: out_bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let out = buffer(
            "out",
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let staging = buffer(
            "staging",
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        self.encode_matmul(&mut encoder, w, &x, n_tokens, &out);
        encoder.copy_buffer_to_buffer(&out, 0, &staging, 0, out_bytes);
        self.queue.submit([encoder.finish()]);
        self.read(&staging)
    }

    /// The f32s of a mappable buffer, once the work that writes it is done.
    fn read(&self, staging: &wgpu::Buffer) -> Result<Vec<f32>, GpuError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                let _ = sender.send(result);
            });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        receiver
            .recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let values = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        staging.unmap();
        Ok(values)
    }
}
