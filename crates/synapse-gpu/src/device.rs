//! The adapter and device the kernels run on.

use crate::kernel::Pipelines;
use crate::GpuError;
use std::fmt;

/// A GPU device and its queue, with the kernels compiled for it.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pub(crate) pipelines: Pipelines,
    /// Whether the kernels' reductions use subgroup operations (see kernel::Reduction).
    pub(crate) subgroups: bool,
}

/// What `synapse inspect --devices` lists of an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    /// Discrete, integrated, virtual GPU or CPU (a software rasterizer such as lavapipe).
    pub kind: String,
    pub driver: String,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.kind)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

impl From<&wgpu::AdapterInfo> for AdapterSummary {
    fn from(info: &wgpu::AdapterInfo) -> AdapterSummary {
        let driver = [info.driver.as_str(), info.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        // A browser's WebGPU may not say (Chromium gives SwiftShader no description).
        let name = match info.name.as_str() {
            "" => "unnamed adapter".to_string(),
            name => name.to_string(),
        };
        AdapterSummary {
            name,
            backend: format!("{:?}", info.backend),
            kind: format!("{:?}", info.device_type),
            driver,
        }
    }
}

fn instance() -> wgpu::Instance {
    // The usual variables (WGPU_BACKEND, WGPU_ADAPTER_NAME) pick among several.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter wgpu sees, best first.
async fn sorted_adapters() -> Vec<wgpu::Adapter> {
    let mut found = instance().enumerate_adapters(wgpu::Backends::all()).await;
    found.sort_by_key(|a| preference(&a.get_info()));
    found
}

/// Every adapter wgpu sees, best first (the first is the one [`Gpu::new`] takes).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapters() -> Vec<AdapterSummary> {
    let found = pollster::block_on(sorted_adapters());
    found.iter().map(|a| (&a.get_info()).into()).collect()
}

/// Discrete GPUs first, then integrated, virtual, other, and software ones last.
fn preference(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// The best adapter wgpu sees (a discrete GPU, else an integrated one, else a
    /// software one such as lavapipe), with the largest buffers it allows: a 1B model's
    /// output matrix alone can pass WebGPU's default limit of 128 MiB per binding.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Gpu, GpuError> {
        pollster::block_on(Gpu::request())
    }

    /// [`Gpu::new`] as a future, for a browser, which cannot block.
    pub async fn request() -> Result<Gpu, GpuError> {
        let adapter = sorted_adapters()
            .await
            .into_iter()
            .next()
            .ok_or(GpuError::NoAdapter)?;
        let info = adapter.get_info();
        let features = adapter.features() & wgpu::Features::SUBGROUP;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("synapse"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) =
            adapter
                .request_device(&descriptor)
                .await
                .map_err(|e| GpuError::Device {
                    adapter: info.name.clone(),
                    reason: e.to_string(),
                })?;
        Ok(Gpu {
            device,
            queue,
            info,
            pipelines: Pipelines::default(),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
        })
    }

    /// Whether the kernels use the adapter's subgroup operations.
    pub fn has_subgroups(&self) -> bool {
        self.subgroups
    }

    /// The same device with the kernels' shared-memory reductions, as on an adapter
    /// without subgroup operations (the tests check both).
    pub fn without_subgroups(self) -> Gpu {
        Gpu {
            subgroups: false,
            pipelines: Pipelines::default(),
            ..self
        }
    }

    /// Whether the adapter is a GPU (discrete, integrated or virtual), not a software
    /// rasterizer on the CPU such as lavapipe.
    pub fn is_hardware(&self) -> bool {
        preference(&self.info) <= 2
    }

    /// The adapter this device is on.
    pub fn adapter(&self) -> AdapterSummary {
        (&self.info).into()
    }
}
