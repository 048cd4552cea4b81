//! Synapse on the GPU through wgpu: one set of WGSL kernels for Vulkan (Linux, Windows,
//! Android), Metal (macOS, iOS) and DirectX 12, and later WebGPU in the browser.
//!
//! Weights go to the GPU once, in their quantized form: [`Gpu::upload`] splits each block
//! into its codes and its scales ([`GpuMatrix`]), so that the kernels read aligned words.
//! [`Gpu::encode_matmul`] records a matrix product into a command encoder, so that a whole
//! forward pass can be one submission; the norms, the gated activation, residual adds and
//! greedy argmax record the same way (`ops.rs`). [`Gpu::matmul`] is the product from and
//! to host memory.
//!
//! Without a GPU, Mesa's lavapipe runs the Vulkan path on the CPU (Debian
//! `mesa-vulkan-drivers`): the tests run there.

mod attention;
mod backend;
mod device;
mod matmul;
mod matrix;
mod ops;

pub use attention::KvPlacement;
pub use backend::{GpuBackend, GpuPages, GpuWeights};
pub use device::{adapters, AdapterSummary, Gpu};
pub use matrix::GpuMatrix;
pub use ops::NormWeights;

use synapse_core::DType;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter: wgpu found none for Vulkan, Metal or DirectX 12 (on Linux without a GPU, Mesa's lavapipe provides one: Debian package mesa-vulkan-drivers)")]
    NoAdapter,
    #[error("{adapter}: the device request failed: {reason}")]
    Device { adapter: String, reason: String },
    #[error("{tensor}: {dtype} weights have no GPU kernel")]
    UnsupportedType { tensor: String, dtype: DType },
    #[error("{tensor}: {reason}")]
    BadShape { tensor: String, reason: String },
    #[error("reading a result back from the GPU failed: {0}")]
    Readback(String),
}
