//! SmolLM2-135M-Instruct Q4_1 against the committed references: llama.cpp (llama-cpp-python
//! 0.3.36) and transformers on the same GGUF (tools/reference/ made the fixtures).

mod common;

use common::{fixture, ids};
use serde_json::Value;
use synapse_core::kernels::Precision;
use synapse_inference::generation::sampler::SamplerConfig;
use synapse_inference::generation::{generate, top_k_logits, GenerateOptions};
use synapse_inference::{Session, SessionOptions};

/// A reference's own top-1/top-2 gap under which its greedy choice is a coin flip
/// (llama.cpp's 8-bit activations move logits by up to ~0.6 on this model).
const MIN_GAP: f64 = 0.3;

fn prompts(file: &str) -> Vec<Value> {
    fixture(&format!("smollm2-q4_1/{file}"))["prompts"]
        .as_array()
        .expect("prompts")
        .clone()
}

fn greedy(precision: Precision, threads: usize, prompt: &[u32]) -> Vec<u32> {
    let opts = SessionOptions {
        precision,
        threads,
        ..SessionOptions::default()
    };
    let mut session = Session::new(common::model(), opts);
    let gen = GenerateOptions {
        max_tokens: 32,
        sampler: SamplerConfig::greedy(),
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    generate(&mut session, prompt, &gen, |_| {})
        .expect("generate")
        .tokens
}

/// Checks `ours` against one reference continuation up to the first step where the
/// reference's own gap is under MIN_GAP; returns a description of where they part.
fn agrees(ours: &[u32], reference: &Value) -> Result<String, String> {
    let want = ids(&reference["greedy_ids"]);
    let gaps: Vec<f64> = reference["greedy_gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_f64().unwrap())
        .collect();
    let cutoff = gaps.iter().position(|&g| g < MIN_GAP).unwrap_or(want.len());
    let first_diff = ours.iter().zip(&want).position(|(a, b)| a != b);
    match first_diff {
        Some(i) if i < cutoff => Err(format!(
            "differs at step {i} (reference gap {:.3}) before cutoff {cutoff}",
            gaps[i]
        )),
        Some(i) => Ok(format!(
            "identical up to step {i} (reference gap there {:.3})",
            gaps[i]
        )),
        None => Ok("all 32 tokens identical".into()),
    }
}

#[test]
fn prompt_tokenization_matches_llama_cpp() {
    let model = common::model();
    for p in prompts("llamacpp.json") {
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            model.tokenizer().unwrap().encode(text, true, true),
            ids(&p["prompt_ids"]),
            "{}",
            p["name"]
        );
        assert_eq!(
            model.tokenizer().unwrap().encode(text, true, false),
            ids(&p["prompt_ids_no_special"]),
            "{}",
            p["name"]
        );
    }
}

#[test]
fn greedy_continuations_match_a_reference() {
    let llama = prompts("llamacpp.json");
    let hf = prompts("transformers.json");
    for (precision, threads) in [
        (Precision::FollowWeights, 1),
        (Precision::FollowWeights, 2),
        (Precision::F32, 2),
    ] {
        for (l, h) in llama.iter().zip(&hf) {
            let ours = greedy(precision, threads, &ids(&l["prompt_ids"]));
            let (vs_llama, vs_hf) = (agrees(&ours, l), agrees(&ours, h));
            println!(
                "{:?} x{threads} {:8} llama.cpp: {vs_llama:?}; transformers: {vs_hf:?}",
                precision,
                l["name"].as_str().unwrap()
            );
            assert!(
                vs_llama.is_ok() || vs_hf.is_ok(),
                "{precision:?} {}: {vs_llama:?} / {vs_hf:?}",
                l["name"]
            );
        }
    }
}

#[test]
fn top_logits_match_transformers() {
    let model = common::model();
    for p in prompts("transformers.json") {
        let hf_top: Vec<(u32, f64)> = p["top_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_f64().unwrap()))
            .collect();
        let llama_distance = p["llamacpp_max_abs_diff_top10"].as_f64().unwrap();
        for precision in [Precision::F32, Precision::FollowWeights] {
            let opts = SessionOptions {
                precision,
                ..SessionOptions::default()
            };
            let mut session = Session::new(model.clone(), opts);
            let logits = session.eval(&ids(&p["prompt_ids"]), false).unwrap();
            let distance = hf_top
                .iter()
                .map(|&(id, l)| (logits[id as usize] as f64 - l).abs())
                .fold(0.0, f64::max);
            let bound = match precision {
                Precision::F32 => 0.05,
                Precision::FollowWeights => 1.5 * llama_distance,
            };
            println!(
                "{:8} {precision:?}: max |synapse - transformers| over its top-10 = {distance:.2e} (bound {bound:.4}; llama.cpp {llama_distance:.4}); our top-1 {:?}",
                p["name"].as_str().unwrap(),
                top_k_logits(&logits, 1)
            );
            assert!(
                distance <= bound,
                "{} {precision:?}: {distance} > {bound}",
                p["name"]
            );
        }
    }
}
