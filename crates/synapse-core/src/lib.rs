//! Synapse core: model files as borrowed bytes, weight dtypes and their block formats,
//! and the CPU kernels that compute with them.
//!
//! Nothing here assumes a filesystem, a memory map or threads unless the `native`
//! feature is on, so the crate builds for `wasm32-unknown-unknown`.

// The browser build (scripts/build-web.sh) sets `--cfg synapse_wasm_size`: this crate is
// compiled for speed there, since it holds the kernels, and the code that runs once per
// load (the GGUF reader, dequantization, quantization) is marked to be compiled for size.
#![cfg_attr(synapse_wasm_size, feature(optimize_attribute))]

pub mod attention;
pub mod dtype;
pub mod gguf;
pub mod kernels;
pub mod ops;
pub mod quant;
pub mod storage;
pub mod tensor;
pub mod threads;

pub use dtype::DType;
pub use storage::Storage;
pub use tensor::{Layout, WeightTensor};
