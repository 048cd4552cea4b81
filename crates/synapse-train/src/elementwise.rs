//! The gated feed-forward's activation: `h = silu(a) ⊙ b` (SwiGLU), and residual adds.

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `silu(a) ⊙ b`, with `silu(a) = a·σ(a)`.
pub fn swiglu(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(&a, &b)| a * sigmoid(a) * b).collect()
}

/// The gradients of [`swiglu`] given `dh`: `(da, db)`, with
/// `silu'(a) = σ(a)·(1 + a·(1 - σ(a)))`.
pub fn swiglu_backward(dh: &[f32], a: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut da = Vec::with_capacity(a.len());
    let mut db = Vec::with_capacity(a.len());
    for ((&d, &a), &b) in dh.iter().zip(a).zip(b) {
        let s = sigmoid(a);
        da.push(d * b * s * (1.0 + a * (1.0 - s)));
        db.push(d * a * s);
    }
    (da, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_gradient, values};

    #[test]
    fn swiglu_gradients_match_finite_differences() {
        let n = 40;
        let a: Vec<f32> = values(1, n).iter().map(|v| 4.0 * v).collect();
        let (b, r) = (values(2, n), values(3, n));
        let (da, db) = swiglu_backward(&r, &a, &b);
        let loss = |a: &[f32], b: &[f32]| -> f64 {
            swiglu(a, b)
                .iter()
                .zip(&r)
                .map(|(&h, &r)| (h * r) as f64)
                .sum()
        };
        assert_gradient("swiglu da", &a, &da, |a| loss(a, &b));
        assert_gradient("swiglu db", &b, &db, |b| loss(&a, b));
    }
}
