//! One training step of a model on [`Autodiff`]: each sequence's forward and backward
//! pass through the engine's decoder, adding up the gradient of the batch's mean loss,
//! then clipping and the optimizer's update.

use crate::autodiff::Autodiff;
use crate::loss::{cross_entropy, cross_entropy_into};
use crate::optim::{clip_gradients, gradient_norm, zero_gradients, Optimizer};
use synapse_inference::{Batch, Logits, Result, SeqId, Session};

/// A sequence and what each of its positions is trained to predict (`None`: nothing,
/// such as a prompt's tokens in a fine-tune).
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub targets: Vec<Option<u32>>,
}

impl Example {
    /// Every position predicts its successor; the last has none.
    pub fn next_tokens(tokens: Vec<u32>) -> Example {
        let targets = tokens[1..].iter().map(|&t| Some(t)).chain([None]).collect();
        Example { tokens, targets }
    }
}

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
    /// The batch's mean loss, before the update.
    pub loss: f32,
    /// The gradients' global norm before clipping.
    pub grad_norm: f32,
}

/// One forward pass over `examples` (each a sequence of its own, from position 0; the tape
/// holds the pass): their logits, one row a token, example after example.
fn forward(session: &mut Session<Autodiff>, examples: &[Example]) -> Result<Vec<f32>> {
    let model = session.model.clone();
    model.backend().clear_tape();
    let (engine, _) = session.engine();
    let seqs: Vec<SeqId> = examples.iter().map(|_| engine.add_sequence()).collect();
    let mut batch = Batch::new();
    for (&seq, example) in seqs.iter().zip(examples) {
        batch.add(seq, &example.tokens, Logits::All);
    }
    let mut logits = Vec::new();
    let evaluated = engine.eval(&batch, &mut logits);
    for seq in seqs {
        engine.remove_sequence(seq)?;
    }
    evaluated?;
    model.backend().check()?;
    Ok(logits)
}

/// `examples` in groups that fit one forward pass of the session (`options().batch`
/// tokens; at least one example a group).
fn passes<'a>(session: &Session<Autodiff>, examples: &'a [Example]) -> Vec<&'a [Example]> {
    let room = session.options().batch.max(1);
    let mut groups = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, e) in examples.iter().enumerate() {
        if i > start && tokens + e.tokens.len() > room {
            groups.push(&examples[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += e.tokens.len();
    }
    if start < examples.len() {
        groups.push(&examples[start..]);
    }
    groups
}

/// Each example's rows of `logits`, with its targets.
fn per_example<'a>(
    logits: &'a [f32],
    vocab: usize,
    examples: &'a [Example],
) -> impl Iterator<Item = (&'a [f32], &'a Example)> {
    let mut at = 0;
    examples.iter().map(move |e| {
        let rows = &logits[at..at + e.tokens.len() * vocab];
        at += rows.len();
        (rows, e)
    })
}

/// The gradient of the mean over `batch` of each example's mean loss, added to the
/// parameters' gradients (sequences of equal length weigh each token equally, as a
/// framework's mean over the batch does); returns that mean loss. The examples run in as
/// few forward passes as the session's pass size allows.
pub fn accumulate_gradients(session: &mut Session<Autodiff>, batch: &[Example]) -> Result<f32> {
    let model = session.model.clone();
    let (backend, vocab) = (model.backend(), model.config().vocab_size);
    let threads = session.options().threads;
    let mut total = 0.0;
    for pass in passes(session, batch) {
        let logits = forward(session, pass)?;
        let mut dz = vec![0.0; logits.len()];
        let mut at = 0;
        for (rows, example) in per_example(&logits, vocab, pass) {
            let grad = &mut dz[at..at + rows.len()];
            let weight = 1.0 / batch.len() as f32;
            total += cross_entropy_into(rows, vocab, &example.targets, weight, grad, threads);
            at += rows.len();
        }
        backend.backward(backend.output().expect("the pass read its logits"), &dz);
    }
    backend.clear_tape();
    Ok(total / batch.len() as f32)
}

/// The mean loss over `examples`, with no gradient (a held-out set).
pub fn evaluate(session: &mut Session<Autodiff>, examples: &[Example]) -> Result<f32> {
    let vocab = session.model.config().vocab_size;
    let mut total = 0.0;
    for pass in passes(session, examples) {
        let logits = forward(session, pass)?;
        for (rows, example) in per_example(&logits, vocab, pass) {
            total += cross_entropy(rows, vocab, &example.targets);
        }
    }
    session.model.backend().clear_tape();
    Ok(total / examples.len().max(1) as f32)
}

/// A whole step: zeroed gradients, [`accumulate_gradients`], clipping, the update.
pub fn train_step(
    session: &mut Session<Autodiff>,
    batch: &[Example],
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
