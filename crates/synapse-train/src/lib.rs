//! Training: the engine's own decoder differentiated, on the engine's kernels.
//!
//! [`autodiff::Autodiff`] is the engine's `Backend` with a tape: the decoder that serves
//! inference runs unchanged on it, and `backward` takes the logits' gradient back to every
//! weight (every weight in f32, or LoRA adapters over frozen weights kept as loaded). Each
//! operation's forward and backward lives in its own module (linear, attention, norm,
//! rope, elementwise, loss), each gradient checked against finite differences.
//! [`trainer::train`] runs steps ([`step`]) with an optimizer ([`optim`]) over batches
//! ([`data`]); [`checkpoint`] saves and resumes a run, [`export`] writes GGUF files and
//! PEFT adapters, [`plot`] the loss curve.
//!
//! Layout: activations are row-major `[tokens][width]`; a weight matrix is `[out][in]`
//! as the engine stores it, so a linear layer is `y = x · Wᵀ`.

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
