//! Softmax cross-entropy over the vocabulary, averaged over the tokens that are trained
//! (a fine-tune trains on the assistant's tokens only).

use std::sync::Mutex;
use synapse_core::ops::exp;
use synapse_core::threads::parallel_chunks_mut;

/// Lanes of the running maxima and sums below: independent accumulators let the
/// compiler vectorise them (one running value would chain every addition to the last).
const LANES: usize = 16;

fn max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

fn sum(row: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Each row's `log Σ exp(z)`, computed from its largest value.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = max(row);
    max + row.iter().map(|&v| exp(v - max)).sum::<f32>().ln()
}

/// The mean of `-log softmax(z)[target]` over the rows of `logits` (`[rows][vocab]`)
/// whose target is `Some`; 0 when none is.
pub fn cross_entropy(logits: &[f32], vocab: usize, targets: &[Option<u32>]) -> f32 {
    let mut total = 0.0f64;
    let mut count = 0;
    for (row, target) in logits.chunks_exact(vocab).zip(targets) {
        if let Some(t) = target {
            total += (log_sum_exp(row) - row[*t as usize]) as f64;
            count += 1;
        }
    }
    if count == 0 {
        return 0.0;
    }
    (total / count as f64) as f32
}

/// [`cross_entropy`], with its gradient with respect to the logits times `weight` written
/// into `dz`: `weight · (softmax(z) - onehot(target)) / trained rows` on trained rows, 0
/// on the others. One pass of exponentials, rows split over `threads`.
pub fn cross_entropy_into(
    logits: &[f32],
    vocab: usize,
    targets: &[Option<u32>],
    weight: f32,
    dz: &mut [f32],
    threads: usize,
) -> f32 {
    let count = targets.iter().filter(|t| t.is_some()).count();
    let scale = weight / count.max(1) as f32;
    // Each task's first row and loss total, summed in row order afterwards.
    let totals = Mutex::new(Vec::new());
    parallel_chunks_mut(dz, vocab, threads, |range, grads| {
        let (first, mut total) = (range.start, 0.0f64);
        for (r, grad) in range.zip(grads.chunks_exact_mut(vocab)) {
            let Some(t) = targets[r] else {
                grad.fill(0.0);
                continue;
            };
            let row = &logits[r * vocab..][..vocab];
            let max = max(row);
            for (g, &z) in grad.iter_mut().zip(row) {
                *g = exp(z - max);
            }
            let sum = sum(grad);
            total += (max + sum.ln() - row[t as usize]) as f64;
            let factor = scale / sum;
            grad.iter_mut().for_each(|g| *g *= factor);
            grad[t as usize] -= scale;
        }
        totals
            .lock()
            .expect("no panic holds it")
            .push((first, total));
    });
    let mut totals = totals.into_inner().expect("no panic held it");
    totals.sort_by_key(|&(first, _)| first);
    let total: f64 = totals.iter().map(|&(_, t)| t).sum();
    (total / count.max(1) as f64) as f32
}

/// The gradient of [`cross_entropy`] (see [`cross_entropy_into`]).
pub fn cross_entropy_backward(logits: &[f32], vocab: usize, targets: &[Option<u32>]) -> Vec<f32> {
    let mut dz = vec![0.0; logits.len()];
    cross_entropy_into(logits, vocab, targets, 1.0, &mut dz, 1);
    dz
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_gradient, values};

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_vocab() {
        let loss = cross_entropy(&[0.0; 8], 4, &[Some(1), Some(3)]);
        assert!((loss - 4f32.ln()).abs() < 1e-6, "{loss}");
        assert_eq!(cross_entropy(&[0.0; 8], 4, &[None, None]), 0.0);
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let vocab = 7;
        let targets = [Some(3), None, Some(0), Some(6)];
        let z: Vec<f32> = values(1, targets.len() * vocab)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let dz = cross_entropy_backward(&z, vocab, &targets);
        assert!(
            dz[vocab..2 * vocab].iter().all(|&g| g == 0.0),
            "an untrained row has a gradient"
        );
        assert_gradient("cross_entropy", &z, &dz, |z| {
            cross_entropy(z, vocab, &targets) as f64
        });
    }
}
