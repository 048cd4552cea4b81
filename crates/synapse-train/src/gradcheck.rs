//! Gradients against central finite differences, for the tests.

/// `n` values spread over [-1, 1): a golden-ratio sequence, started where `seed` puts it
/// (seeds far apart on the circle), irregular enough that no gradient component vanishes
/// by symmetry.
pub fn values(seed: u64, n: usize) -> Vec<f32> {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    const PLASTIC: f64 = 0.754_877_666_246_693;
    (0..n)
        .map(|i| ((seed as f64 * PLASTIC + i as f64 * GOLDEN).fract() * 2.0 - 1.0) as f32)
        .collect()
}

/// Checks that `analytic` is the gradient of `loss` at `x`: each component against
/// `(loss(x + h) - loss(x - h)) / 2h`, within 1e-3 of the largest component (f32 forward
/// passes limit what finite differences resolve).
pub fn assert_gradient(what: &str, x: &[f32], analytic: &[f32], loss: impl Fn(&[f32]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let h = 1e-2f32;
    let scale = analytic.iter().fold(1e-3f32, |m, g| m.max(g.abs()));
    let mut worst = 0.0f32;
    let mut probe = x.to_vec();
    for i in 0..x.len() {
        probe[i] = x[i] + h;
        let up = loss(&probe);
        probe[i] = x[i] - h;
        let down = loss(&probe);
        probe[i] = x[i];
        let numeric = ((up - down) / (2.0 * h as f64)) as f32;
        let error = (numeric - analytic[i]).abs() / scale;
        worst = worst.max(error);
        assert!(
            error < 1e-3,
            "{what}[{i}]: analytic {} vs finite differences {numeric} (largest component {scale})",
            analytic[i]
        );
    }
    eprintln!(
        "{what}: worst relative difference {worst:.2e} over {} components",
        x.len()
    );
}
