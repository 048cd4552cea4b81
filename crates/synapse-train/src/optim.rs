//! Optimizers (AdamW, SGD with momentum), the learning-rate schedule (linear warm-up,
//! then cosine decay) and gradient clipping by global norm, with PyTorch's semantics so
//! that a run can be checked step by step against `torch.optim`.

use crate::autodiff::Param;

/// An optimizer's update of every parameter from its gradient.
pub trait Optimizer {
    /// Updates `params` with learning rate `lr` from their gradients (which it leaves as
    /// they are).
    fn step(&mut self, params: &mut [Param], lr: f32);
}

/// AdamW (`torch.optim.AdamW`): decoupled weight decay, bias-corrected moments.
pub struct AdamW {
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Updates made so far.
    pub steps: i32,
    /// First and second moments, per parameter (empty for a frozen one).
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl AdamW {
    pub fn new(betas: (f32, f32), eps: f32, weight_decay: f32) -> AdamW {
        AdamW {
            betas,
            eps,
            weight_decay,
            steps: 0,
            moments: Vec::new(),
        }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &mut [Param], lr: f32) {
        let (b1, b2) = self.betas;
        self.steps += 1;
        let correction1 = 1.0 - b1.powi(self.steps);
        let correction2_sqrt = (1.0 - b2.powi(self.steps)).sqrt();
        self.moments
            .resize_with(params.len(), || (Vec::new(), Vec::new()));
        for (p, (m, v)) in params.iter_mut().zip(&mut self.moments) {
            if p.frozen {
                continue;
            }
            m.resize(p.value.len(), 0.0);
            v.resize(p.value.len(), 0.0);
            for (((x, &g), m), v) in p
                .value
                .iter_mut()
                .zip(&p.grad)
                .zip(m.iter_mut())
                .zip(v.iter_mut())
            {
                *x *= 1.0 - lr * self.weight_decay;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() / correction2_sqrt + self.eps;
                *x -= lr / correction1 * *m / denom;
            }
        }
    }
}

/// SGD with momentum (`torch.optim.SGD`, no dampening, not Nesterov) and L2 weight decay.
pub struct Sgd {
    pub momentum: f32,
    pub weight_decay: f32,
    /// Per parameter; empty until its first step.
    buffers: Vec<Vec<f32>>,
}

impl Sgd {
    pub fn new(momentum: f32, weight_decay: f32) -> Sgd {
        Sgd {
            momentum,
            weight_decay,
            buffers: Vec::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [Param], lr: f32) {
        self.buffers.resize_with(params.len(), Vec::new);
        for (p, buf) in params.iter_mut().zip(&mut self.buffers) {
            if p.frozen {
                continue;
            }
            let first = buf.is_empty();
            buf.resize(p.value.len(), 0.0);
            for ((x, &g), b) in p.value.iter_mut().zip(&p.grad).zip(buf.iter_mut()) {
                let g = g + self.weight_decay * *x;
                *b = if first { g } else { self.momentum * *b + g };
                *x -= lr * *b;
            }
        }
    }
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then a cosine down to `floor` at
/// `total` steps.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub peak: f32,
    pub floor: f32,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The learning rate of step `step` (counted from 0).
    pub fn lr(&self, step: usize) -> f32 {
        if step < self.warmup {
            return self.peak * (step + 1) as f32 / self.warmup as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f32 / span as f32).min(1.0);
        self.floor
            + 0.5 * (self.peak - self.floor) * (1.0 + (std::f32::consts::PI * progress).cos())
    }
}

/// The global L2 norm of every gradient.
pub fn gradient_norm(params: &[Param]) -> f32 {
    let squares: f64 = params
        .iter()
        .flat_map(|p| &p.grad)
        .map(|&g| (g as f64) * (g as f64))
        .sum();
    squares.sqrt() as f32
}

/// Scales every gradient so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_gradients(params: &mut [Param], max_norm: f32) -> f32 {
    let norm = gradient_norm(params);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        params
            .iter_mut()
            .flat_map(|p| &mut p.grad)
            .for_each(|g| *g *= factor);
    }
    norm
}

/// Sets every gradient to zero (before the next step's backward passes add theirs).
pub fn zero_gradients(params: &mut [Param]) {
    params.iter_mut().for_each(|p| p.grad.fill(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(value: &[f32], grad: &[f32]) -> Vec<Param> {
        vec![Param {
            name: "p".into(),
            rows: 1,
            cols: value.len(),
            value: value.to_vec(),
            grad: grad.to_vec(),
            frozen: false,
        }]
    }

    #[test]
    fn adamw_takes_steps_of_lr_at_first_and_decays_weights() {
        // The first step of Adam moves each weight by lr (times the gradient's sign).
        let mut p = param(&[1.0, -2.0], &[0.5, -3.0]);
        let mut adam = AdamW::new((0.9, 0.999), 1e-8, 0.0);
        adam.step(&mut p, 0.1);
        assert!(
            (p[0].value[0] - 0.9).abs() < 1e-6 && (p[0].value[1] + 1.9).abs() < 1e-6,
            "{:?}",
            p[0].value
        );
        // With a zero gradient, only the decoupled decay acts: x(1 - lr·wd).
        let mut p = param(&[2.0], &[0.0]);
        AdamW::new((0.9, 0.999), 1e-8, 0.5).step(&mut p, 0.1);
        assert!((p[0].value[0] - 1.9).abs() < 1e-6);
    }

    #[test]
    fn frozen_parameters_are_not_updated() {
        let mut p = param(&[1.0], &[0.5]);
        p[0].frozen = true;
        AdamW::new((0.9, 0.999), 1e-8, 0.5).step(&mut p, 0.1);
        Sgd::new(0.9, 0.5).step(&mut p, 0.1);
        assert_eq!(p[0].value, [1.0]);
    }

    #[test]
    fn sgd_momentum_accumulates_the_gradients() {
        let mut p = param(&[0.0], &[1.0]);
        let mut sgd = Sgd::new(0.9, 0.0);
        sgd.step(&mut p, 0.1); // buffer 1: -0.1
        sgd.step(&mut p, 0.1); // buffer 1.9: -0.29
        assert!((p[0].value[0] + 0.29).abs() < 1e-6, "{}", p[0].value[0]);
    }

    #[test]
    fn the_schedule_warms_up_then_follows_a_cosine() {
        let s = Schedule {
            peak: 1.0,
            floor: 0.1,
            warmup: 4,
            total: 14,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((s.lr(4) - 1.0).abs() < 1e-6);
        assert!((s.lr(9) - 0.55).abs() < 1e-6);
        assert!((s.lr(14) - 0.1).abs() < 1e-6 && (s.lr(100) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn clipping_scales_gradients_to_the_norm() {
        let mut p = param(&[0.0, 0.0], &[3.0, 4.0]);
        assert_eq!(clip_gradients(&mut p, 1.0), 5.0);
        assert!((p[0].grad[0] - 0.6).abs() < 1e-6 && (p[0].grad[1] - 0.8).abs() < 1e-6);
        let norm = clip_gradients(&mut p, 10.0);
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert!(
            (p[0].grad[0] - 0.6).abs() < 1e-6,
            "a norm under the limit is kept"
        );
    }
}
