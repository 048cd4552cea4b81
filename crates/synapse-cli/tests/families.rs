//! `synapse run` on the families' Hugging Face fixtures (tests/fixtures/families): the
//! `--logits-out` array against transformers' logits, a checkpoint without tokenizer
//! files, and the random-weights demo mode on a real config.

mod run;

use run::{failure, json, stdout, synapse};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference(family: &str) -> Value {
    let path = repo().join(format!("tests/fixtures/families/{family}/reference.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Reads a float32 `.npy` file: its shape and values.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "data is 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"));
    let dims = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = dims
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let values = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (shape, values)
}

fn ids_arg(ids: &Value) -> String {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn logits_out_matches_transformers_and_generation_follows() {
    let r = reference("qwen3");
    let npy = std::env::temp_dir().join(format!("synapse-logits-{}.npy", std::process::id()));
    let dir = repo().join("tests/fixtures/families/qwen3/hf");
    let json = json(&synapse(
        "run --f32-activations --temperature 0 --ignore-eos -n 20 --json",
        &[
            "--model",
            dir.to_str().unwrap(),
            "--prompt-ids",
            &ids_arg(&r["input_ids"]),
            "--logits-out",
            npy.to_str().unwrap(),
        ],
    ));
    let (shape, values) = read_npy(&npy);
    // Each number read as f64, then rounded to f32.
    let want: Vec<Vec<f32>> = serde_json::from_value(r["logits"].clone()).unwrap();
    let want = want.concat();
    assert_eq!(shape, vec![16, want.len() / 16]);
    let worst = values
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "logits differ by {worst}");
    assert_eq!(json["tokens"], r["greedy"]);
}

#[test]
fn checkpoint_without_tokenizer_runs_on_token_ids() {
    let from = repo().join("tests/fixtures/families/gpt2/hf");
    let dir = std::env::temp_dir().join(format!("synapse-no-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["config.json", "model.safetensors", "generation_config.json"] {
        std::fs::copy(from.join(name), dir.join(name)).unwrap();
    }
    let r = reference("gpt2");
    let dir_arg = dir.to_str().unwrap();
    let ids = ids_arg(&r["input_ids"]);
    let args = ["--model", dir_arg, "--prompt-ids", &ids];
    let json = json(&synapse(
        "run --temperature 0 --ignore-eos -n 5 --json",
        &args,
    ));
    let want: Vec<Value> = r["greedy"].as_array().unwrap()[..5].to_vec();
    assert_eq!(json["tokens"], Value::Array(want));

    let err = failure(&synapse("run --prompt hello", &["--model", dir_arg]));
    assert!(
        err.contains("no tokenizer") && err.contains(dir_arg),
        "{err}"
    );
}

#[test]
fn random_weights_demo_runs_a_real_config() {
    let config = repo().join("configs/qwen2.5-0.5b.json");
    let json = json(&synapse(
        "run --random-weights --quantize q8_0 --prompt-ids 1,2,3 -n 2 --ignore-eos --json",
        &["--config", config.to_str().unwrap()],
    ));
    assert_eq!(json["tokens"].as_array().unwrap().len(), 2);
}

#[test]
fn inspect_and_tokenize_read_hugging_face_directories() {
    let dir = repo().join("tests/fixtures/families/qwen3/hf");
    let dir = dir.to_str().unwrap();
    let text = stdout(&synapse("inspect", &[dir]));
    assert!(
        text.contains("model_type = \"qwen3\"") && text.contains("model.norm.weight  F32  [64]")
    );

    let json = json(&synapse(
        "tokenize --json",
        &["--model", dir, "hello world"],
    ));
    let pieces: Vec<&str> = json["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pieces.concat(), "hello world");
}
