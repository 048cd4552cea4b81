//! The default model (SmolLM2-135M-Instruct, Q4_1) on the GPU: its greedy tokens equal
//! the CPU's with f32 activations (`--f32-activations`), up to near-ties: where they part,
//! the CPU's two best logits at that step are under 0.05 apart.

mod common;

use common::gpu;
use std::sync::Arc;
use synapse_core::kernels::Precision;
use synapse_gpu::GpuBackend;
use synapse_inference::model::backend::Backend;
use synapse_inference::{Model, Session, SessionOptions};

/// The prompts of tests/cross_path/check.py.
const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "A shopping list:\n1. Apples\n2.",
];
/// Tokens per prompt: lavapipe runs a forward pass in about 3 s here, so CI checks 8 of
/// the first prompt; SYNAPSE_GPU_FULL=1 checks 32 of each (what the issue asks).
fn plan() -> (&'static [&'static str], usize) {
    match std::env::var_os("SYNAPSE_GPU_FULL") {
        Some(_) => (&PROMPTS, 32),
        None => (&PROMPTS[..1], 8),
    }
}
const NEAR_TIE: f32 = 0.05;

/// The greedy continuation of `prompt`, with each step's logits.
fn greedy<B: Backend>(model: &Arc<Model<B>>, prompt: &str, tokens: usize) -> Vec<(u32, Vec<f32>)> {
    let opts = SessionOptions {
        context: 256,
        threads: 2,
        precision: Precision::F32,
        kv_type: None,
        batch: 64,
        kv_memory: 0,
    };
    let mut session = Session::new(model.clone(), opts);
    let ids = model.tokenizer().unwrap().encode(prompt, true, true);
    let mut logits = session.eval(&ids, false).unwrap();
    let mut steps = Vec::new();
    for _ in 0..tokens {
        let next = logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, &v)| if v > logits[best] { i } else { best })
            as u32;
        steps.push((next, logits));
        logits = session.eval(&[next], false).unwrap();
    }
    steps
}

#[test]
fn greedy_tokens_equal_the_cpus_up_to_near_ties() {
    let Some(gpu) = gpu() else { return };
    let path = synapse_inference::default_model::ensure().expect("the default model");
    let cpu = Arc::new(Model::load(&path).unwrap());
    let on_gpu = Arc::new(
        Model::load(&path)
            .unwrap()
            .with_backend(GpuBackend::new(gpu))
            .unwrap(),
    );
    let (prompts, tokens) = plan();
    for prompt in prompts {
        let (want, got) = (
            greedy(&cpu, prompt, tokens),
            greedy(&on_gpu, prompt, tokens),
        );
        let mut worst = 0f32;
        for (step, ((w, cpu_logits), (g, gpu_logits))) in want.iter().zip(&got).enumerate() {
            let diff = cpu_logits
                .iter()
                .zip(gpu_logits)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            worst = worst.max(diff);
            if w != g {
                let mut sorted = cpu_logits.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let gap = sorted[0] - sorted[1];
                eprintln!("{prompt:?}: parts at step {step} (CPU's top-2 gap {gap:.4})");
                assert!(
                    gap < NEAR_TIE,
                    "{prompt:?} step {step}: {g} against {w}, gap {gap}"
                );
                break;
            }
        }
        eprintln!("{prompt:?}: max |logit difference| before parting {worst:.2e}");
    }
}
