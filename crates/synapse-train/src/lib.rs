//! Training (issue 15), first part: every operation of the LLaMA forward pass with its
//! backward pass, over f32 rows in host memory, each gradient checked against finite
//! differences. The matrix products, forward and backward, run as the engine's CPU
//! backend runs a linear layer in f32 (its `Backend::linears`).
//!
//! Layout: activations are row-major `[tokens][width]`; a weight matrix is `[out][in]`
//! as the engine stores it, so a linear layer is `y = x · Wᵀ`.
//!
//! [`autodiff::Autodiff`] is the engine's `Backend` with a tape: the decoder that serves
//! inference runs unchanged on it, and `backward` takes the logits' gradient back to every
//! weight. Still to come: the optimizers and schedule, LoRA, the checks against PyTorch,
//! and the `train`/`finetune` commands.

pub mod attention;
pub mod autodiff;
pub mod checkpoint;
pub mod data;
pub mod elementwise;
pub mod export;
pub mod init;
pub mod linear;
pub mod lora;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod plot;
pub mod rope;
pub mod step;
pub mod trainer;

#[cfg(test)]
mod gradcheck;
