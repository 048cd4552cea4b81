//! Running WGSL kernels: each a compute pipeline, compiled on first use, whose bindings
//! are a uniform of parameters then storage buffers; and the buffers they read and write,
//! with their way to and from the host.

use crate::{Gpu, GpuError};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use wgpu::util::DeviceExt;

/// Workgroups per line of a dispatch (one dimension holds at most 65535).
const LINE: usize = 32768;

/// A kernel: its name and its WGSL, a prelude (the parameters and helpers it shares)
/// followed by its own files, and the workgroup reductions it calls, if any.
pub(crate) struct Kernel {
    pub name: &'static str,
    pub source: &'static [&'static str],
    pub reduction: Option<&'static Reduction>,
}

/// Workgroup reductions in two builds: with the adapter's subgroup operations, or in
/// shared memory where it has none (shaders/reduce).
pub(crate) struct Reduction {
    subgroups: &'static str,
    shared: &'static str,
}

/// A browser's WGSL compiler needs the extension named; wgpu's own (naga) refuses the
/// directive and takes the operations once the device has the feature.
const ENABLE_SUBGROUPS: &str = match cfg!(target_arch = "wasm32") {
    true => "enable subgroups;",
    false => "",
};

/// `workgroup_sum` and `workgroup_max`, over the kernel's WG lanes.
pub(crate) const WORKGROUP: Reduction = Reduction {
    subgroups: include_str!("shaders/reduce/subgroups.wgsl"),
    shared: include_str!("shaders/reduce/shared.wgsl"),
};

/// matmul.wgsl's `tile_sums`.
pub(crate) const TILE_SUMS: Reduction = Reduction {
    subgroups: include_str!("shaders/reduce/tile_subgroups.wgsl"),
    shared: include_str!("shaders/reduce/tile_shared.wgsl"),
};

/// The kernels' pipelines, each compiled on first use (their bind group layouts come
/// from the shaders).
#[derive(Default)]
pub(crate) struct Pipelines(Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>);

impl Gpu {
    fn pipeline(&self, kernel: &Kernel) -> Arc<wgpu::ComputePipeline> {
        let mut pipelines = self.pipelines.0.lock().expect("no panic holds this lock");
        let pipeline = pipelines.entry(kernel.name).or_insert_with(|| {
            let reduction: &[&str] = match kernel.reduction {
                Some(r) if self.subgroups => &[ENABLE_SUBGROUPS, r.subgroups],
                Some(r) => &[r.shared],
                None => &[],
            };
            let source = [reduction, kernel.source].concat().join("\n");
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
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
    pub(crate) fn lines(len: usize) -> [u32; 3] {
        let groups = len.div_ceil(256);
        [groups.min(LINE) as u32, groups.div_ceil(LINE) as u32, 1]
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

    /// Submits `encoder` with a copy of the first `len` words of `buffer` for the host,
    /// which [`Readback::words`] gives once the GPU is done.
    pub fn start_read(
        &self,
        mut encoder: wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Readback {
        let bytes = 4 * len as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let mapped = Mapped::default();
        let done = mapped.clone();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| done.finish(result));
        Readback {
            staging,
            len,
            mapped,
        }
    }

    /// Waits for `read` (natively; a browser cannot block, and awaits it instead).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self, read: Readback) -> Result<Vec<u32>, GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        pollster::block_on(read.words())
    }

    /// Submits `encoder`, then copies the first `len` words of `buffer` to the host once
    /// the GPU is done.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_words(
        &self,
        encoder: wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<u32>, GpuError> {
        self.wait(self.start_read(encoder, buffer, len))
    }

    /// [`Gpu::read_words`] as f32s.
    #[cfg(not(target_arch = "wasm32"))]
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
}

/// Words on their way back from the GPU (see [`Gpu::start_read`]).
pub struct Readback {
    staging: wgpu::Buffer,
    len: usize,
    mapped: Mapped,
}

impl Readback {
    /// The words, once the staging buffer is mapped: natively after [`Gpu::wait`]'s
    /// poll, in a browser when its event loop has run the mapping.
    pub async fn words(self) -> Result<Vec<u32>, GpuError> {
        let failed = |e: &dyn std::fmt::Display| GpuError::Readback(e.to_string());
        self.mapped.await.map_err(|e| failed(&e))?;
        let words = self
            .staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| failed(&e))?
            .chunks_exact(4)
            .take(self.len)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        self.staging.unmap();
        Ok(words)
    }
}

type MapResult = Result<(), wgpu::BufferAsyncError>;

/// A buffer mapping's outcome as a future: wgpu reports it to a callback.
#[derive(Clone, Default)]
struct Mapped(Arc<Mutex<(Option<MapResult>, Option<Waker>)>>);

impl Mapped {
    fn finish(&self, result: MapResult) {
        let mut state = self.0.lock().expect("no panic holds this lock");
        state.0 = Some(result);
        if let Some(waker) = state.1.take() {
            waker.wake();
        }
    }
}

impl Future for Mapped {
    type Output = MapResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<MapResult> {
        let mut state = self.0.lock().expect("no panic holds this lock");
        match state.0.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
