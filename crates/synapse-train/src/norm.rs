//! RMSNorm: `y = g ⊙ x / sqrt(mean(x²) + eps)` per row.

/// Each row's `1 / sqrt(mean(x²) + eps)`.
fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let mean = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    1.0 / (mean + eps).sqrt()
}

/// RMSNorm of each row of `x` (rows of `g.len()` values) with scale `g`.
pub fn rms_norm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(g.len()) {
        let r = inverse_rms(row, eps);
        y.extend(row.iter().zip(g).map(|(v, g)| g * v * r));
    }
    y
}

/// The gradients of [`rms_norm`] given `dy`: `(dx, dg)`. With `u = g ⊙ dy` and `r` the
/// row's inverse RMS, `dx = r·u - x·r³·mean(u ⊙ x)` and `dg = Σ_rows dy ⊙ x·r`.
pub fn rms_norm_backward(dy: &[f32], x: &[f32], g: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let width = g.len();
    let mut dx = Vec::with_capacity(x.len());
    let mut dg = vec![0.0; width];
    for (row, dy) in x.chunks_exact(width).zip(dy.chunks_exact(width)) {
        let r = inverse_rms(row, eps);
        let mean_ux = row
            .iter()
            .zip(dy)
            .zip(g)
            .map(|((x, d), g)| g * d * x)
            .sum::<f32>()
            / width as f32;
        dx.extend(
            row.iter()
                .zip(dy)
                .zip(g)
                .map(|((x, d), g)| r * g * d - x * r * r * r * mean_ux),
        );
        for ((dg, x), d) in dg.iter_mut().zip(row).zip(dy) {
            *dg += d * x * r;
        }
    }
    (dx, dg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_gradient, values};

    #[test]
    fn rms_norm_gradients_match_finite_differences() {
        let (rows, width, eps) = (3, 16, 1e-5);
        let (x, r) = (values(1, rows * width), values(2, rows * width));
        let g: Vec<f32> = values(3, width).iter().map(|v| 1.0 + 0.5 * v).collect();
        let (dx, dg) = rms_norm_backward(&r, &x, &g, eps);
        let loss = |x: &[f32], g: &[f32]| -> f64 {
            let y = rms_norm(x, g, eps);
            y.iter().zip(&r).map(|(&y, &r)| (y * r) as f64).sum()
        };
        assert_gradient("rms_norm dx", &x, &dx, |x| loss(x, &g));
        assert_gradient("rms_norm dg", &g, &dg, |g| loss(&x, g));
    }
}
