//! Synapse on the GPU through wgpu: one set of WGSL kernels for Vulkan (Linux, Windows,
//! Android), Metal (macOS, iOS), DirectX 12 and, built for wasm32, WebGPU in the browser.
//!
//! [`GpuBackend`] is the engine's `Backend` on the GPU: the model code that runs on the
//! CPU runs here unchanged. Under it:
//! - weights go to the GPU once, in their quantized form: [`Gpu::upload`] lays each
//!   block's codes out as aligned words, its scales after them ([`GpuMatrix`]);
//! - each operation is a kernel recorded into a command encoder: the matrix products
//!   (`matmul.rs`), the norms, RoPE, activations, adds and argmax (`ops.rs`), and
//!   attention over key/value pages in the engine's own page layout (`attention.rs`).
//!
//! Without a GPU, Mesa's lavapipe runs the Vulkan path on the CPU (Debian
//! `mesa-vulkan-drivers`): the tests run there.

mod attention;
mod backend;
mod device;
mod kernel;
mod matmul;
mod matrix;
mod ops;

pub use attention::KvPlacement;
pub use backend::{GpuBackend, GpuPages, GpuWeights};
#[cfg(not(target_arch = "wasm32"))]
pub use device::adapters;
pub use device::{AdapterSummary, Gpu};
pub use kernel::Readback;
pub use matrix::GpuMatrix;
pub use ops::NormWeights;

use synapse_core::DType;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[cfg_attr(not(target_arch = "wasm32"), error("no GPU adapter: wgpu found none for Vulkan, Metal or DirectX 12 (on Linux without a GPU, Mesa's lavapipe provides one: Debian package mesa-vulkan-drivers)"))]
    #[cfg_attr(target_arch = "wasm32", error("no WebGPU adapter: the browser offers none (its GPU may be off or blocked; Chromium without a GPU has a software one behind --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader)"))]
    NoAdapter,
    #[error("{adapter}: the device request failed: {reason}")]
    Device { adapter: String, reason: String },
    #[error("{tensor}: {dtype} weights have no GPU kernel")]
    UnsupportedType { tensor: String, dtype: DType },
    #[error("{tensor}: F16 rows of {cols} values: the GPU reads them in pairs")]
    OddF16Row { tensor: String, cols: usize },
    #[error("{tensor}: {reason}")]
    BadShape { tensor: String, reason: String },
    #[error("reading a result back from the GPU failed: {0}")]
    Readback(String),
}
