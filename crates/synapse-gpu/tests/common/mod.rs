//! What the GPU tests share: the device, and reproducible values.

#![allow(dead_code)] // each test file uses part of it

use synapse_gpu::{Gpu, GpuError};

/// The GPU, or None (the test then passes without running) when there is none and
/// SYNAPSE_REQUIRE_GPU is unset; CI installs lavapipe and sets it.
pub fn gpu() -> Option<Gpu> {
    match Gpu::new() {
        Ok(gpu) => {
            eprintln!("adapter: {}", gpu.adapter());
            Some(gpu)
        }
        Err(GpuError::NoAdapter) if std::env::var_os("SYNAPSE_REQUIRE_GPU").is_none() => {
            eprintln!("skipped: no GPU adapter (set SYNAPSE_REQUIRE_GPU=1 to fail instead)");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// The GPU as [`gpu`] gives it and, where it has subgroup operations, again without
/// them: the kernels' two builds of their reductions.
pub fn gpus() -> Vec<Gpu> {
    let Some(gpu) = gpu() else {
        return Vec::new();
    };
    match gpu.has_subgroups() {
        true => vec![gpu, Gpu::new().expect("found above").without_subgroups()],
        false => {
            eprintln!("the adapter has no subgroup operations: shared-memory reductions only");
            vec![gpu]
        }
    }
}

/// Uniform values in [-1, 1) from a fixed seed.
pub fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
