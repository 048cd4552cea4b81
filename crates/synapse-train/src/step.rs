//! One training step of a model on [`Autodiff`]: each sequence's forward and backward
//! pass through the engine's decoder, adding up the gradient of the batch's mean loss,
//! then clipping and the optimizer's update.

use crate::autodiff::Autodiff;
use crate::loss::{cross_entropy, cross_entropy_backward};
use crate::optim::{clip_gradients, gradient_norm, zero_gradients, Optimizer};
use synapse_inference::{Result, Session};

/// How a step treats the gradients.
#[derive(Clone, Copy, Debug)]
pub struct StepOptions {
    pub lr: f32,
    /// Clip the gradients' global norm to this, if set.
    pub clip: Option<f32>,
}

/// What a step measured.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// The batch's mean next-token loss, before the update.
    pub loss: f32,
    /// The gradients' global norm before clipping.
    pub grad_norm: f32,
}

/// The next-token targets of `tokens`: each position's successor; the last has none.
pub fn next_tokens(tokens: &[u32]) -> Vec<Option<u32>> {
    tokens[1..].iter().map(|&t| Some(t)).chain([None]).collect()
}

/// The gradient of the mean over `batch` of each sequence's mean next-token loss,
/// added to the parameters' gradients (sequences of equal length weigh each token
/// equally, as a framework's mean over the batch does); returns that mean loss.
pub fn accumulate_gradients(session: &mut Session<Autodiff>, batch: &[Vec<u32>]) -> Result<f32> {
    let model = session.model.clone();
    let (backend, vocab) = (model.backend(), model.config().vocab_size);
    let mut total = 0.0;
    for tokens in batch {
        session.truncate(0);
        backend.clear_tape();
        let logits = session.eval(tokens, true)?;
        backend.check()?;
        let targets = next_tokens(tokens);
        total += cross_entropy(&logits, vocab, &targets);
        let mut dz = cross_entropy_backward(&logits, vocab, &targets);
        dz.iter_mut().for_each(|g| *g /= batch.len() as f32);
        backend.backward(backend.output().expect("the pass read its logits"), &dz);
    }
    backend.clear_tape();
    Ok(total / batch.len() as f32)
}

/// A whole step: zeroed gradients, [`accumulate_gradients`], clipping, the update.
pub fn train_step(
    session: &mut Session<Autodiff>,
    batch: &[Vec<u32>],
    optimizer: &mut impl Optimizer,
    opts: StepOptions,
) -> Result<StepReport> {
    let model = session.model.clone();
    zero_gradients(&mut model.backend().state().params);
    let loss = accumulate_gradients(session, batch)?;
    let mut state = model.backend().state();
    let grad_norm = match opts.clip {
        Some(max) => clip_gradients(&mut state.params, max),
        None => gradient_norm(&state.params),
    };
    optimizer.step(&mut state.params, opts.lr);
    Ok(StepReport { loss, grad_norm })
}
