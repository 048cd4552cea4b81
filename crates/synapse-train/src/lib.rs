//! Training (issue 15), first part: every operation of the LLaMA forward pass with its
//! backward pass, over f32 rows in host memory, each gradient checked against finite
//! differences. The matrix products, forward and backward, run on the engine's own f32
//! kernels (`synapse_core::kernels::matmul`).
//!
//! Layout: activations are row-major `[tokens][width]`; a weight matrix is `[out][in]`
//! as the engine stores it, so a linear layer is `y = x · Wᵀ`.
//!
//! Still to come on top of these: the tape that records a forward pass through the
//! engine's `Backend` seam, the layers and optimizers, and the `train`/`finetune` commands.

pub mod attention;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod rope;

#[cfg(test)]
mod gradcheck;
