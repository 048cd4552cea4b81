//! Hugging Face `tokenizer.json` files against the `tokenizers` library: the fixtures in
//! tests/fixtures/tokenizers/NAME/ (made by tools/reference/make_tokenizer_fixtures.py)
//! hold a tokenizer and the ids `tokenizers` gave for 3000 varied lines; llama-spm-model/
//! holds a SentencePiece tokenizer.model and the ids the `sentencepiece` library gave.

mod common;

use common::TestRng;
use flate2::read::GzDecoder;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use synapse_inference::tokenizer::Tokenizer;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tokenizers")
        .join(name)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
}

/// A fresh empty folder under the system's temporary folder.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "synapse-tokenizer-hf-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}

/// The fixture as a model folder: the tokenizer unpacked next to the other files.
fn model_dir(name: &str) -> PathBuf {
    let src = fixture_dir(name);
    let dir = scratch_dir(name);
    for file in ["tokenizer.json", "tokenizer.model"] {
        let packed = src.join(format!("{file}.gz"));
        if packed.is_file() {
            std::fs::write(dir.join(file), gunzip(&packed)).expect("write the tokenizer");
        }
    }
    for extra in ["tokenizer_config.json", "chat_template.jinja"] {
        if src.join(extra).is_file() {
            std::fs::copy(src.join(extra), dir.join(extra)).expect("copy");
        }
    }
    dir
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Encodes every case; returns (cases, failures described).
fn check(name: &str) -> Tokenizer {
    let dir = model_dir(name);
    let tok = Tokenizer::from_hf_dir(&dir)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .expect("a tokenizer");
    let _ = std::fs::remove_dir_all(&dir);
    let fixture: Value =
        serde_json::from_slice(&gunzip(&fixture_dir(name).join("cases.json.gz"))).expect("JSON");
    let cases = fixture["cases"].as_array().expect("cases");
    let parse_special = fixture["parse_special"].as_bool().expect("parse_special");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().expect("text");
        let want = ids(&case["ids"]);
        let got = tok.encode(text, false, parse_special);
        let mut problems = Vec::new();
        if got != want {
            problems.push(format!("ids\n    expected {want:?}\n    got      {got:?}"));
        }
        if let Some(special) = case.get("ids_special") {
            let (want, got) = (ids(special), tok.encode(text, true, parse_special));
            if got != want {
                problems.push(format!(
                    "ids with BOS/EOS\n    expected {want:?}\n    got      {got:?}"
                ));
            }
        }
        let decoded = tok.decode(&want);
        if decoded != case["decoded"].as_str().expect("decoded") {
            problems.push(format!(
                "decoded {decoded:?}, expected {:?}",
                case["decoded"]
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("case {i} {text:?}: {}", problems.join("; ")));
        }
    }
    eprintln!(
        "{name}: {} of {} cases match {}",
        cases.len() - failures.len(),
        cases.len(),
        fixture["reference"]
    );
    let shown: Vec<_> = failures.iter().take(20).cloned().collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        shown.join("\n")
    );
    tok
}

#[test]
fn llama_bpe() {
    let tok = check("llama-bpe");
    assert_eq!(tok.piece(tok.bos_id().expect("bos")), "<|begin_of_text|>");
}

#[test]
fn qwen2() {
    let tok = check("qwen2");
    assert!(tok
        .chat_template()
        .expect("template")
        .contains("<|im_start|>"));
    let im_end = tok.token_id("<|im_end|>").expect("<|im_end|>");
    assert!(tok.end_of_generation_ids().contains(&im_end));
}

#[test]
fn gpt2() {
    check("gpt-2");
}

#[test]
fn llama_spm() {
    let tok = check("llama-spm");
    assert_eq!(tok.encode("Hello", true, false), [1, 15043]);
}

#[test]
fn phi3() {
    let tok = check("phi-3");
    assert!(tok.chat_template().expect("template").contains("<|user|>"));
}

#[test]
fn sentencepiece_model() {
    let tok = check("llama-spm-model");
    // llama.cpp's ids for the same pieces (ggml-vocab-llama-spm.gguf.out).
    assert_eq!(
        tok.encode(" Hello world", true, false),
        [1, 29871, 15043, 3186]
    );
}

#[test]
fn a_folder_without_tokenizer_files_has_none() {
    let dir = scratch_dir("empty");
    assert!(Tokenizer::from_hf_dir(&dir).expect("no error").is_none());
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": 3}").unwrap();
    let err = Tokenizer::from_hf_dir(&dir)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("model"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A random JSON value, mostly of the kinds tokenizer.json fields hold.
fn random_value(rng: &mut TestRng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.below(70_000)),
        3 => Value::from(-(rng.below(5) as i64)),
        4 => Value::from(u64::MAX - rng.below(3)),
        5 => Value::from(
            ["", " ", "a b", "\u{2581}", "<0x41>", "BPE", "ByteLevel"][rng.below(7) as usize],
        ),
        6 => serde_json::json!([]),
        7 => serde_json::json!({}),
        _ => serde_json::json!(["a", "b"]),
    }
}

/// Replaces, deletes or duplicates something at a random place in `value`.
fn mutate(value: &mut Value, rng: &mut TestRng, depth: u32) {
    let descend = rng.below(4) != 0 && depth < 6;
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.below(map.len() as u64) as usize)
                .unwrap()
                .clone();
            if descend {
                mutate(map.get_mut(&key).unwrap(), rng, depth + 1);
            } else if rng.below(3) == 0 {
                map.remove(&key);
            } else {
                map.insert(key, random_value(rng));
            }
        }
        Value::Array(list) if !list.is_empty() => {
            let at = rng.below(list.len() as u64) as usize;
            if descend {
                mutate(&mut list[at], rng, depth + 1);
            } else if rng.below(2) == 0 {
                let copy = list[rng.below(list.len() as u64) as usize].clone();
                list[at] = copy;
            } else {
                list[at] = random_value(rng);
            }
        }
        _ => *value = random_value(rng),
    }
}

/// Mutated tokenizer.json files load or fail with an error, never panic; those that load
/// tokenize and decode.
#[test]
fn mutated_tokenizer_json_never_panics() {
    let dir = scratch_dir("fuzz");
    let mut rng = TestRng(11);
    let (mut loaded, mut rejected) = (0, 0);
    for name in ["llama-spm", "gpt-2", "phi-3"] {
        let original: Value =
            serde_json::from_slice(&gunzip(&fixture_dir(name).join("tokenizer.json.gz")))
                .expect("JSON");
        for _ in 0..40 {
            let mut json = original.clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut json, &mut rng, 0);
            }
            std::fs::write(dir.join("tokenizer.json"), json.to_string()).unwrap();
            let mut config = serde_json::json!({"bos_token": "<s>", "chat_template": "x"});
            if rng.below(2) == 0 {
                mutate(&mut config, &mut rng, 0);
            }
            std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
            match Tokenizer::from_hf_dir(&dir) {
                Ok(Some(tok)) => {
                    loaded += 1;
                    let ids = tok.encode("Hello <s> wörld 123 ☃ <|endoftext|>", true, true);
                    let _ = tok.decode(&ids);
                }
                Ok(None) => panic!("the folder has a tokenizer.json"),
                Err(e) => {
                    assert!(e.to_string().contains(".json"), "{e}");
                    rejected += 1;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{loaded} mutated tokenizer.json files loaded, {rejected} rejected with an error");
    assert!(loaded > 0 && rejected > 0);
}
