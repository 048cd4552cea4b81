//! The GPU backend runs the engine's own model code to transformers' logits and greedy
//! tokens, on every family fixture's GGUF conversion (f32 random weights, made by
//! tools/reference/make_family_fixtures.py): the same check as the CPU's and the reference
//! backend's in synapse-inference/tests/families.rs.

mod common;

use common::gpu;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use synapse_core::kernels::Precision;
use synapse_gpu::GpuBackend;
use synapse_inference::{Model, Session, SessionOptions};

/// f32 arithmetic in another order than PyTorch's; the issue asks for 1e-3.
const TOLERANCE: f32 = 1e-3;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn argmax(x: &[f32]) -> u32 {
    let best = x
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > x[best] { i } else { best });
    best as u32
}

#[test]
fn every_family_matches_transformers_on_the_gpu() {
    if gpu().is_none() {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families");
    // llama.cpp's Mistral conversion drops the sliding window (see the CPU's test).
    for family in [
        "llama3",
        "qwen2",
        "qwen3",
        "qwen3-yarn",
        "phi3",
        "gemma",
        "gpt2",
    ] {
        let dir = fixtures.join(family);
        let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        let reference: Value = serde_json::from_str(&text).unwrap();
        let (input, greedy) = (ids(&reference["input_ids"]), ids(&reference["greedy"]));
        let want: Vec<Vec<f32>> = serde_json::from_value(reference["logits"].clone()).unwrap();

        let backend = GpuBackend::new(gpu().expect("the adapter found above"));
        let model = Model::load(dir.join("model.gguf")).unwrap();
        let model = Arc::new(model.with_backend(backend).unwrap());
        let opts = SessionOptions {
            context: 64,
            threads: 1,
            precision: Precision::FollowWeights,
            kv_type: None,
            batch: 64,
            kv_memory: 0,
        };
        let mut session = Session::new(model.clone(), opts);
        let vocab = model.config().vocab_size;
        let logits = session.eval(&input, true).unwrap();
        let worst = want
            .iter()
            .enumerate()
            .flat_map(|(t, row)| row.iter().zip(&logits[t * vocab..(t + 1) * vocab]))
            .fold(0f32, |worst, (a, b)| worst.max((a - b).abs()));
        eprintln!("{family}: max |logit - transformers'| {worst:.2e}");
        assert!(worst <= TOLERANCE, "{family}: logits differ by {worst}");
        let mut next = argmax(&logits[(input.len() - 1) * vocab..]);
        let mut got = Vec::new();
        for _ in 0..greedy.len() {
            got.push(next);
            next = argmax(&session.eval(&[next], false).unwrap());
        }
        assert_eq!(got, greedy, "{family}: greedy continuation");
    }
}
