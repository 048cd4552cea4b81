//! `synapse finetune` and `synapse train` end to end, as a user runs them.
//!
//! The fine-tune is the one tools/reference/make_finetune_fixture.py ran (its settings come
//! from the fixture): LoRA on the default model's projections, from the committed chat set.
//! Its adapter, applied by PEFT to the Hugging Face form of the model, gave the fixture's
//! logits; the model with the adapter merged in (f32) must give them here within 1e-3. The
//! merged q8_0 file must run in the engine as it ran in llama.cpp.

#[path = "../../synapse-inference/tests/common/mod.rs"]
mod common;
mod run;

use run::{failure, json, stdout, synapse};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use synapse_core::kernels::Precision;
use synapse_inference::{Model, Session, SessionOptions};

fn fixture(name: &str) -> Value {
    common::fixture(&format!("finetune/{name}"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synapse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The log's entries.
fn log(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The logits of every position of `ids`.
fn logits(model: &Path, ids: &[u32], precision: Precision) -> (Vec<f32>, usize) {
    let model = Arc::new(Model::load(model).unwrap());
    let vocab = model.config().vocab_size;
    let opts = SessionOptions {
        precision,
        ..SessionOptions::default()
    };
    (Session::new(model, opts).eval(ids, true).unwrap(), vocab)
}

/// The largest |logit − reference| over each position's reference top list.
fn distances(logits: &[f32], vocab: usize, tops: &Value) -> Vec<f32> {
    tops.as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(p, top)| {
            top.as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let (id, want) = (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap());
                    (logits[p * vocab + id] - want as f32).abs()
                })
                .fold(0.0, f32::max)
        })
        .collect()
}

#[test]
fn a_lora_finetune_matches_peft_and_its_merged_model_runs_as_in_llama_cpp() {
    let settings = fixture("settings.json");
    let s = &settings["settings"];
    let out = scratch("finetune");
    let data = common::repo_root().join(settings["data"].as_str().unwrap());
    let model = common::model_path();
    let flags = format!(
        "finetune --steps {} --batch {} --lr {} --lora-rank {} --lora-alpha {} --seed {} \
         --held-out {} --max-len {} --threads {} --eval-every 3 --merge --merge-type f32,q8_0",
        s["steps"],
        s["batch"],
        s["lr"],
        s["lora_rank"],
        s["lora_alpha"],
        s["seed"],
        s["held_out"],
        s["max_len"],
        s["threads"]
    );
    let paths = [&model, &data, &out].map(|p| p.to_str().unwrap().to_string());
    stdout(&synapse(
        &flags,
        &[
            "--model", &paths[0], "--data", &paths[1], "--out", &paths[2],
        ],
    ));

    // The held-out loss falls.
    let entries = log(&out);
    let held: Vec<f64> = entries
        .iter()
        .filter_map(|e| e["held_out"].as_f64())
        .collect();
    eprintln!("held-out loss by evaluation: {held:?}");
    assert!(
        held.len() >= 2 && held[held.len() - 1] < 0.5 * held[0],
        "{held:?}"
    );
    assert!(out.join("loss.png").is_file());
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&config["peft_type"], &config["r"]),
        (&"LORA".into(), &s["lora_rank"])
    );

    let peft = fixture("peft.json");
    let llama = fixture("llamacpp.json");
    for ((prompt, by_peft), by_llama) in settings["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(peft["prompts"].as_array().unwrap())
        .zip(llama["prompts"].as_array().unwrap())
    {
        let ids = common::ids(&prompt["ids"]);
        let (merged, vocab) = logits(&out.join("merged-f32.gguf"), &ids, Precision::F32);
        let worst = distances(&merged, vocab, &by_peft["top_logits"])
            .into_iter()
            .fold(0.0, f32::max);
        eprintln!("{} tokens: merged f32 vs PEFT: {worst:.2e}", ids.len());
        assert!(worst <= 1e-3, "{worst}");

        // The merged q8_0 file: llama.cpp's own distance to transformers on the default
        // model is 0.25-0.48 per prompt (8-bit activations, f16 cache), so within 0.5 on
        // average, and the same greedy tokens.
        let q8 = out.join("merged-q8_0.gguf");
        let (logits, vocab) = logits(&q8, &ids, Precision::FollowWeights);
        let d = distances(&logits, vocab, &by_llama["top_logits"]);
        let mean = d.iter().sum::<f32>() / d.len() as f32;
        eprintln!(
            "{} tokens: merged q8_0 vs llama.cpp: mean {mean:.3}",
            ids.len()
        );
        assert!(mean <= 0.5, "{d:?}");
        let ids_text: Vec<String> = ids.iter().map(u32::to_string).collect();
        let run = json(&synapse(
            "run --json --temperature 0 --ignore-eos --max-tokens 8",
            &[
                "--model",
                q8.to_str().unwrap(),
                "--prompt-ids",
                &ids_text.join(","),
            ],
        ));
        let greedy = &by_llama["greedy_ids"].as_array().unwrap()[..8];
        assert_eq!(run["tokens"].as_array().unwrap()[..], greedy[..]);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A LLaMA small enough to train in seconds, with SmolLM2's vocabulary (a step takes
/// about half a second on 2 cores: the 49,152-row output projection dominates).
const TINY: &str = r#"{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
    "vocab_size": 49152, "max_position_embeddings": 64, "tie_word_embeddings": true}"#;

/// `synapse train` with `flags` on the README's text, into `out`, as a command ready to run.
fn train(out: &Path, flags: &str) -> Command {
    let config = out.with_extension("json");
    std::fs::write(&config, TINY).unwrap();
    let data = common::repo_root().join("README.md");
    let mut command = Command::new(env!("CARGO_BIN_EXE_synapse"));
    command
        .args(format!("train --seq-len 64 --batch 4 --steps 12 --save-every 4 --eval-every 4 --eval-sequences 4 {flags}").split_whitespace())
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(out);
    command
}

fn losses(dir: &Path) -> Vec<f64> {
    log(dir).iter().filter_map(|e| e["loss"].as_f64()).collect()
}

#[test]
fn training_from_scratch_resumes_exactly_and_exports_a_model_the_engine_runs() {
    let straight = scratch("train-straight");
    stdout(&train(&straight, "--export f32,q8_0").output().unwrap());
    let unbroken = losses(&straight);
    assert_eq!(unbroken.len(), 12);
    assert!(unbroken[11] < unbroken[0], "{unbroken:?}");

    // Ctrl-C after step 3 ends the run after the step in progress, with a checkpoint; the
    // same command with --resume then finishes it as the unbroken run did.
    let resumed = scratch("train-resumed");
    let mut child = train(&resumed, "--export f32")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !resumed.join("log.jsonl").is_file() || losses(&resumed).len() < 3 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    assert!(child.wait().unwrap().success());
    let stopped = losses(&resumed).len();
    assert!(stopped < 12, "the run ended before Ctrl-C reached it");
    let err = failure(&train(&resumed, "--resume --seed 7").output().unwrap());
    assert!(err.contains("was started with"), "{err}");
    stdout(&train(&resumed, "--export f32 --resume").output().unwrap());
    assert_eq!(losses(&resumed), unbroken, "resumed after step {stopped}");

    // The exported files run in the engine, and give the same logits.
    let ids = [1, 504, 3458, 282, 4649, 314];
    let (full, _) = logits(&straight.join("model-f32.gguf"), &ids, Precision::F32);
    let (again, _) = logits(&resumed.join("model-f32.gguf"), &ids, Precision::F32);
    assert_eq!(full, again);
    let (q8, _) = logits(&straight.join("model-q8_0.gguf"), &ids, Precision::F32);
    let worst = full
        .iter()
        .zip(&q8)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 0.05, "q8_0 export off by {worst}");
    let text = stdout(&synapse(
        "run --max-tokens 4 --prompt Synapse",
        &[
            "--model",
            straight.join("model-q8_0.gguf").to_str().unwrap(),
        ],
    ));
    assert!(!text.is_empty());
    for dir in [straight, resumed] {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(dir.with_extension("json"));
    }
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let out = scratch("bad-train");
    let dir = out.to_str().unwrap();
    let tiny = common::repo_root().join("tests/fixtures/train/tiny-llama/config.json");
    let data = common::repo_root().join("README.md");
    let err = failure(&synapse(
        "train --steps 1",
        &[
            "--config",
            tiny.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            dir,
        ],
    ));
    assert!(err.contains("vocab_size is 64"), "{err}");
    let err = failure(&synapse(
        "finetune --steps 1",
        &["--data", "/nonexistent.jsonl", "--out", dir],
    ));
    assert!(err.contains("/nonexistent.jsonl"), "{err}");
    // An empty text and an empty chat set: errors, not panics.
    let empty = out.with_extension("empty");
    std::fs::write(&empty, "").unwrap();
    let config = out.with_extension("json");
    std::fs::write(&config, TINY).unwrap();
    let paths = [&config, &empty].map(|p| p.to_str().unwrap().to_string());
    let err = failure(&synapse(
        "train --steps 1",
        &["--config", &paths[0], "--data", &paths[1], "--out", dir],
    ));
    assert!(err.contains("0 training tokens"), "{err}");
    let err = failure(&synapse(
        "finetune --steps 1",
        &["--data", &paths[1], "--out", dir],
    ));
    assert!(err.contains("no conversations"), "{err}");
    for file in [empty, config] {
        let _ = std::fs::remove_file(file);
    }
}
