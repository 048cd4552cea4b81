//! The `synapse` binary end to end on the default model.

// The integration-test helpers of synapse-inference (default model, fixtures, llama.cpp's
// vocabularies).
#[path = "../../synapse-inference/tests/common/mod.rs"]
mod common;
mod run;

use run::{failure, json, stdout, synapse};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `synapse run --json` on the default model with `prompt` and `flags` (as typed on a
/// command line); it must succeed.
fn run_json(prompt: &str, flags: &str) -> Value {
    let model = common::model_path();
    let model = model.to_str().unwrap();
    json(&synapse(
        &format!("run --json {flags}"),
        &["--model", model, "--prompt", prompt],
    ))
}

/// Prompt `name` of a reference's fixture for the default model (`llamacpp` or
/// `transformers`).
fn fixture_prompt(reference: &str, name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../tests/fixtures/smollm2-q4_1/{reference}.json"
    ));
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
        .clone()
}

/// How many of `tokens` follow `reference`'s greedy continuation up to its first
/// near-tie (a top-1/top-2 gap under 0.3, where rounding may pick either token), or
/// `None` if they part before it.
fn follows_greedy(tokens: &[Value], reference: &Value) -> Option<usize> {
    let gaps = reference["greedy_gaps"].as_array().unwrap();
    let sure = gaps
        .iter()
        .take_while(|g| g.as_f64().unwrap() >= 0.3)
        .count()
        .min(tokens.len());
    let want = &reference["greedy_ids"].as_array().unwrap()[..sure];
    (&tokens[..sure] == want).then_some(sure)
}

#[test]
fn run_json_reports_tokens_text_and_timings() {
    let reference = fixture_prompt("llamacpp", "plain");
    let text = reference["text"].as_str().unwrap();
    let out = run_json(text, "--temperature 0 -n 8 --ignore-eos --logits-top 5");
    assert_eq!(out["prompt_tokens"], reference["prompt_ids"]);
    // The 8-bit path follows llama.cpp's or transformers' greedy continuation up to that
    // reference's first near-tie: on this prompt llama.cpp and transformers part at step 5,
    // where llama.cpp's gap is 0.36 and transformers' 0.22, and rounding alone can move a
    // logit by a few tenths (see tools/reference/smollm2_rounding_spread.py).
    let tokens = out["tokens"].as_array().unwrap();
    let references = [reference.clone(), fixture_prompt("transformers", "plain")];
    let followed: Vec<Option<usize>> = references
        .iter()
        .map(|r| follows_greedy(tokens, r))
        .collect();
    assert!(
        followed.iter().any(|f| f.is_some_and(|sure| sure >= 5)),
        "{tokens:?} parts early from both references ({followed:?})"
    );
    assert_eq!(out["stop_reason"], "length");
    assert!(
        out["text"].as_str().unwrap().starts_with(" Paris"),
        "{}",
        out["text"]
    );
    let timings = &out["timings"];
    for key in [
        "load_ms",
        "prefill_ms",
        "prefill_tok_s",
        "decode_ms",
        "decode_tok_s",
    ] {
        assert!(timings[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(timings["prefill_tokens"], 5);
    assert_eq!(timings["decode_tokens"], 8);
    let top = out["top_logits"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert_eq!(top[0][0], reference["greedy_ids"][0]);
    assert!(top.windows(2).all(|w| w[0][1].as_f64() >= w[1][1].as_f64()));
}

/// `--logprobs K` reports, per generated token, its logprob and the K most likely
/// tokens', as OpenAI's `logprobs`: greedy picks the first of them, they fall in order,
/// and at the first step their gaps are the raw logits' gaps at the last prompt position
/// (`--logits-top`, computed apart from the sampler).
#[test]
fn run_json_reports_logprobs() {
    let out = run_json(
        "The capital of France is",
        "-n 6 --temperature 0 --logprobs 3 --logits-top 3",
    );
    let tokens = out["tokens"].as_array().unwrap();
    let steps = out["logprobs"].as_array().unwrap();
    assert_eq!(steps.len(), tokens.len());
    let f = |v: &Value| v.as_f64().unwrap();
    for (step, token) in steps.iter().zip(tokens) {
        let top = step["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(&step["token"], token);
        assert_eq!(&top[0][0], token, "greedy takes the most likely token");
        assert_eq!(f(&top[0][1]), f(&step["logprob"]));
        assert!(f(&step["logprob"]) <= 0.0);
        assert!(
            top.windows(2).all(|w| f(&w[0][1]) >= f(&w[1][1])),
            "{top:?}"
        );
    }
    let (first, logits) = (
        steps[0]["top_logprobs"].as_array().unwrap(),
        out["top_logits"].as_array().unwrap(),
    );
    for (lp, logit) in first.iter().zip(logits) {
        assert_eq!(lp[0], logit[0]);
        let gap = |pair: &Value, top: &Value| f(&top[1]) - f(&pair[1]);
        let (a, b) = (gap(lp, &first[0]), gap(logit, &logits[0]));
        assert!((a - b).abs() < 1e-3, "logprob gap {a} vs logit gap {b}");
    }
}

/// `run --json` reports the precision policy in effect: by default each matmul's
/// activations follow its weights (the Q4_1 blocks meet Q8_1 activations, the tied Q8_0
/// embedding table Q8_0 ones) with an f16 KV cache; `--f32-activations` keeps every
/// activation and the cache in f32, and `--kv-type` overrides the cache alone.
#[test]
fn run_json_reports_the_precision_policy() {
    let matmuls = |v: &Value| -> Vec<(String, String, u64)> {
        v["matmuls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let s = |k: &str| m[k].as_str().unwrap().to_string();
                (
                    s("weights"),
                    s("activations"),
                    m["matrices"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let row = |w: &str, a: &str, n: u64| (w.to_string(), a.to_string(), n);
    let default = &run_json("Hi", "-n 1")["precision"];
    assert_eq!(default["policy"], "follow-weights");
    assert_eq!(default["kv_cache"], "F16");
    // 30 blocks of 7 matrices; the output projection is the embedding table.
    assert_eq!(
        matmuls(default),
        [row("Q4_1", "Q8_1", 210), row("Q8_0", "Q8_0", 1)]
    );
    let f32 = &run_json("Hi", "-n 1 --f32-activations")["precision"];
    assert_eq!(
        (&f32["policy"], &f32["kv_cache"]),
        (&"f32".into(), &"F32".into())
    );
    assert_eq!(
        matmuls(f32),
        [row("Q4_1", "F32", 210), row("Q8_0", "F32", 1)]
    );
    let f32_kv = &run_json("Hi", "-n 1 --kv-type f32")["precision"];
    assert_eq!(f32_kv["kv_cache"], "F32");
    assert_eq!(f32_kv["policy"], "follow-weights");
}

#[test]
fn peak_memory_stays_under_one_and_a_half_times_the_model_file() {
    let size = std::fs::metadata(common::model_path()).unwrap().len() as f64;
    let out = run_json("Once upon a time", "-n 64 --ignore-eos --seed 1");
    let rss = out["peak_rss_bytes"].as_f64().expect("peak RSS on Linux");
    assert!(rss < 1.5 * size, "peak RSS {rss} vs model {size}");
}

#[test]
fn the_same_seed_gives_the_same_sample() {
    let (prompt, flags) = ("Once upon a time", "-n 12 --temperature 1.0 --seed 42");
    assert_eq!(
        run_json(prompt, flags)["tokens"],
        run_json(prompt, flags)["tokens"]
    );
}

#[test]
fn chat_template_prompts_stop_at_end_of_turn() {
    let prompt = fixture_prompt("llamacpp", "chat");
    let out = run_json(prompt["text"].as_str().unwrap(), "--temperature 0 -n 64");
    assert_eq!(out["prompt_tokens"], prompt["prompt_ids"]);
    assert_eq!(out["stop_reason"], "eos");
    assert!(
        out["text"].as_str().unwrap().contains('4'),
        "{}",
        out["text"]
    );
}

#[test]
fn stop_strings_end_generation_and_are_not_printed() {
    let out = run_json("The capital of France is", "--temperature 0 -n 32 --stop .");
    assert_eq!(out["stop_reason"], "stop");
    assert_eq!(out["text"], " Paris");
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let model = common::model_path();
    let long = "word ".repeat(100);
    let model = model.to_str().unwrap();
    let out = synapse("run --ctx-size 32", &["--model", model, "--prompt", &long]);
    let err = failure(&out);
    assert!(
        err.contains("does not fit the context of 32 tokens"),
        "{err}"
    );
}

#[test]
fn a_missing_or_corrupt_model_file_names_the_file() {
    let run_on = |model: &str| synapse("run --prompt hi", &["--model", model]);
    assert!(failure(&run_on("/nonexistent/model.gguf")).contains("/nonexistent/model.gguf"));

    let corrupt = std::env::temp_dir().join(format!("synapse-corrupt-{}.gguf", std::process::id()));
    let bytes = std::fs::read(common::model_path()).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_on(corrupt.to_str().unwrap());
    std::fs::remove_file(&corrupt).ok();
    let err = failure(&out);
    assert!(
        err.contains(corrupt.to_str().unwrap()) && err.contains("outside the file"),
        "{err}"
    );
}

#[test]
fn tokenize_prints_ids_and_pieces() {
    let model = common::model_path();
    let model = model.to_str().unwrap();
    let v = json(&synapse(
        "tokenize --json",
        &["--model", model, "<|im_start|>user 12"],
    ));
    // The special token is one id; smollm splits digits one by one.
    assert_eq!(v["ids"], serde_json::json!([1, 4093, 216, 33, 34]));
    assert_eq!(
        v["pieces"],
        serde_json::json!(["<|im_start|>", "user", " ", "1", "2"])
    );

    let out = synapse("tokenize --no-special", &["--model", model, "<|im_start|>"]);
    let ids = String::from_utf8_lossy(&out.stdout);
    assert!(ids.split_whitespace().count() > 1, "{ids}");
}

#[test]
fn tokenize_works_on_a_vocab_only_file() {
    let Some(vocab) = common::llama_vocab("llama-bpe") else {
        return;
    };
    let out = synapse(
        "tokenize",
        &["--model", vocab.to_str().unwrap(), "Hello world"],
    );
    assert_eq!(stdout(&out).trim(), "9906 1917");
}

#[test]
fn inspect_lists_metadata_and_tensors() {
    let model = common::model_path();
    let text = stdout(&synapse("inspect", &[model.to_str().unwrap()]));
    assert!(
        text.contains("general.architecture (string) = \"llama\""),
        "{text}"
    );
    assert!(
        text.contains("token_embd.weight") && text.contains("Q8_0") && text.contains("272 tensors")
    );
}

fn chat(stdin: &str) -> String {
    chat_with(stdin, "-n 48")
}

/// `synapse chat` on the default model, greedy, with `flags`, fed `stdin`.
fn chat_with(stdin: &str, flags: &str) -> String {
    use std::io::Write;
    let model = common::model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_synapse"))
        .args([
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--temperature",
            "0",
        ])
        .args(flags.split_whitespace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn chat_answers_each_line_with_the_models_template() {
    let text = chat("What is 2+2? Answer briefly.\nAnd 3+3?\n");
    let turns: Vec<&str> = text.split("> ").filter(|t| !t.is_empty()).collect();
    assert_eq!(turns.len(), 2, "{text}");
    // The first reply is exactly what a raw run of the template-rendered prompt gives
    // (the GGUF template adds SmolLM2's default system prompt).
    let rendered = fixture_prompt("llamacpp", "chat")["text"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = run_json(&rendered, "--temperature 0 -n 48");
    let first = turns[0]
        .strip_prefix("What is 2+2? Answer briefly.\n")
        .unwrap()
        .trim_end();
    assert_eq!(first, raw["text"].as_str().unwrap().trim_end());
    assert!(first.contains('4'), "{first}");
    assert!(
        turns[1].len() > "And 3+3?\n".len(),
        "second turn answered: {text}"
    );
}

#[test]
fn chat_answers_a_json_conversation() {
    let messages = r#"[{"role": "user", "content": "What is 2+2? Answer briefly."}]"#;
    let json_reply = chat(messages);
    let line_reply = chat("What is 2+2? Answer briefly.\n");
    assert_eq!(
        json_reply.trim_end(),
        line_reply
            .trim_start_matches("> What is 2+2? Answer briefly.\n")
            .trim_end()
    );
}

/// Ctrl-C (SIGINT) during a generation stops it, not the program: what was generated is
/// printed, the stop reason says so, and the exit status is success.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_generation_and_keeps_its_output() {
    use std::io::Read;
    let model = common::model_path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_synapse"))
        .args(["run", "--model", model.to_str().unwrap()])
        .args(["--prompt", "Once upon a time", "-n", "4000", "--ignore-eos"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synapse");
    // The first streamed byte: generation, and with it the handler, has started.
    let mut stdout = child.stdout.take().unwrap();
    let mut text = vec![0u8; 1];
    stdout.read_exact(&mut text).expect("generated text");
    // The shell's own `kill`, which every POSIX system has.
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .expect("run sh");
    assert!(kill.success());
    stdout.read_to_end(&mut text).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("stop: cancelled"), "{stderr}");
    let generated: usize = stderr
        .split("generated: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a token count");
    assert!(generated > 0 && generated < 4000, "{stderr}");
    assert!(String::from_utf8(text).unwrap().trim().len() > 1);
}

/// `--device gpu` runs `run`, `chat` and `bench` on the GPU (lavapipe in CI, which installs
/// it and sets SYNAPSE_REQUIRE_GPU): the same greedy tokens as the CPU's f32-activation
/// run, and a bench that says where it ran.
#[test]
fn run_chat_and_bench_on_the_gpu() {
    let devices = stdout(&synapse("inspect --devices", &[]));
    eprintln!("{devices}");
    if devices.starts_with("no GPU adapters") && std::env::var_os("SYNAPSE_REQUIRE_GPU").is_none() {
        eprintln!("skipped: no GPU adapter");
        return;
    }
    assert!(devices.starts_with("0: "), "{devices}");
    let flags = "--temperature 0 -n 6 --ignore-eos";
    let gpu = run_json("The capital of France is", &format!("{flags} --device gpu"));
    let cpu = run_json(
        "The capital of France is",
        &format!("{flags} --f32-activations"),
    );
    assert_eq!(gpu["tokens"], cpu["tokens"]);

    let two_turns = "Hi!\nWhat is 2+2?\n";
    assert_eq!(
        chat_with(two_turns, "-n 3 --device gpu"),
        chat_with(two_turns, "-n 3 --f32-activations")
    );

    let bench = stdout(&synapse(
        "bench --device gpu --prompt-tokens 2 --gen-tokens 1 --repetitions 1 --json",
        &[],
    ));
    let bench: Value = serde_json::from_str(&bench).unwrap();
    assert!(
        bench["kernel"].as_str().unwrap().starts_with("gpu: "),
        "{bench}"
    );
    assert!(bench["decode_tok_s"].as_f64().unwrap() > 0.0, "{bench}");
}
