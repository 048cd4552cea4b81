//! Softmax cross-entropy over the vocabulary, averaged over the tokens that are trained
//! (a fine-tune trains on the assistant's tokens only).

/// Each row's `log Σ exp(z)`, computed from its largest value.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
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

/// The gradient of [`cross_entropy`] with respect to the logits:
/// `(softmax(z) - onehot(target)) / trained rows` on trained rows, 0 on the others.
pub fn cross_entropy_backward(logits: &[f32], vocab: usize, targets: &[Option<u32>]) -> Vec<f32> {
    let count = targets.iter().filter(|t| t.is_some()).count().max(1) as f32;
    let mut dz = vec![0.0; logits.len()];
    for ((row, grad), target) in logits
        .chunks_exact(vocab)
        .zip(dz.chunks_exact_mut(vocab))
        .zip(targets)
    {
        let Some(t) = target else { continue };
        let lse = log_sum_exp(row);
        for (g, &z) in grad.iter_mut().zip(row) {
            *g = (z - lse).exp() / count;
        }
        grad[*t as usize] -= 1.0 / count;
    }
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
