//! The training loop: steps over batches with a schedule, gradient clipping and a
//! held-out loss every so often, reporting each step to its caller (which logs it, draws
//! progress and saves checkpoints).

use crate::autodiff::Autodiff;
use crate::optim::{Optimizer, Schedule};
use crate::step::{evaluate, train_step, Example, StepOptions};
use std::ops::ControlFlow;
use std::time::Instant;
use synapse_inference::Session;

/// What a run does.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The last step (counted from 0, exclusive); a resumed run starts later.
    pub steps: usize,
    pub schedule: Schedule,
    pub clip: Option<f32>,
    /// Measure the held-out loss every this many steps and after the last.
    pub eval_every: usize,
}

/// One step, as the run reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepLog {
    /// The step just taken, counted from 1.
    pub step: usize,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    /// Trained tokens (positions with a target) so far, over the whole run.
    pub tokens: u64,
    /// This step's trained tokens a second (forward, backward and update).
    pub tokens_per_s: f32,
    /// The held-out loss after this step, when it was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<f32>,
}

/// Runs steps `start..plan.steps`: each takes `batch_of(step)` (a step's examples
/// depend only on the step, so that a resumed run sees the batches an unbroken one
/// would) and reports to `after_step` (with the model and the optimizer, to save them),
/// which may end the run early (`Break`) or with an error. Returns the steps done. `tokens`
/// counts what earlier runs trained.
pub fn train<O: Optimizer>(
    session: &mut Session<Autodiff>,
    optimizer: &mut O,
    plan: Plan,
    (start, mut tokens): (usize, u64),
    mut batch_of: impl FnMut(usize) -> Vec<Example>,
    held_out: &[Example],
    mut after_step: impl FnMut(&StepLog, &mut Session<Autodiff>, &O) -> Result<ControlFlow<()>, String>,
) -> Result<usize, String> {
    for step in start..plan.steps {
        let batch = batch_of(step);
        let trained: usize = batch
            .iter()
            .map(|e| e.targets.iter().flatten().count())
            .sum();
        let began = Instant::now();
        let lr = plan.schedule.lr(step);
        let opts = StepOptions {
            lr,
            clip: plan.clip,
        };
        let report = train_step(session, &batch, optimizer, opts).map_err(|e| e.to_string())?;
        let seconds = began.elapsed().as_secs_f32();
        tokens += trained as u64;
        let done = step + 1;
        let held_out = match done % plan.eval_every.max(1) == 0 || done == plan.steps {
            true => held_out_loss(session, held_out)?,
            false => None,
        };
        let log = StepLog {
            step: done,
            loss: report.loss,
            lr,
            grad_norm: report.grad_norm,
            tokens,
            tokens_per_s: trained as f32 / seconds.max(1e-9),
            held_out,
        };
        if after_step(&log, session, optimizer)?.is_break() {
            return Ok(done);
        }
    }
    Ok(plan.steps.max(start))
}

/// The mean loss over `held_out`, if it holds any example.
pub fn held_out_loss(
    session: &mut Session<Autodiff>,
    held_out: &[Example],
) -> Result<Option<f32>, String> {
    match held_out.is_empty() {
        true => Ok(None),
        false => evaluate(session, held_out)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}
