//! The tokenizer against llama.cpp: its own conformance vocabularies
//! (models/ggml-vocab-NAME.gguf with .inp/.out, read as tests/test-tokenizer-0.cpp does)
//! and token ids that llama.cpp gave for SmolLM2 prompts
//! (tests/fixtures/smollm2-q4_1/llamacpp.json, made by tools/reference/make_llamacpp_fixtures.py).

use std::path::{Path, PathBuf};
use synapse_core::gguf::GgufFile;
use synapse_inference::tokenizer::Tokenizer;

/// SYNAPSE_LLAMA_VOCAB_DIR, else the shared data folder next to the repository.
fn vocab_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SYNAPSE_LLAMA_VOCAB_DIR") {
        return Some(dir.into());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/llama-vocab");
    if dir.is_dir() {
        return Some(dir);
    }
    eprintln!(
        "skipped: llama.cpp's ggml-vocab-*.gguf files not found. They ship in the llama-cpp-python \
         source distribution under vendor/llama.cpp/models/; set SYNAPSE_LLAMA_VOCAB_DIR to that folder."
    );
    None
}

fn ids(line: &str) -> Vec<u32> {
    line.split_whitespace().map(|t| t.parse().expect("token id")).collect()
}

fn check_vocab(name: &str) {
    let Some(dir) = vocab_dir() else { return };
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let tok = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
    let read = |ext: &str| {
        let file = format!("{}.{ext}", path.display());
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let inputs = read("inp");
    let outputs = read("out");
    // The file ends with the separator: the last piece is the empty text, which expects
    // no tokens (llama.cpp's reader drops it; it has no line in .out).
    let cases: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<Vec<u32>> = outputs.lines().map(ids).collect();
    assert!(
        cases.len() == expected.len() || (cases.len() == expected.len() + 1 && cases.last() == Some(&"")),
        "{name}: {} texts but {} expected lines",
        cases.len(),
        expected.len()
    );

    let mut failures = Vec::new();
    for (i, text) in cases.iter().enumerate() {
        let want = expected.get(i).cloned().unwrap_or_default();
        let got = tok.encode(text, false, false);
        if got != want {
            failures.push(format!("case {i} {text:?}\n  expected {want:?}\n  got      {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{name}: {} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
    eprintln!("{name}: {} cases match", cases.len());
}

#[test]
fn llama_bpe() {
    check_vocab("llama-bpe");
}

#[test]
fn qwen2() {
    check_vocab("qwen2");
}

#[test]
fn qwen35() {
    check_vocab("qwen35");
}

#[test]
fn gpt2() {
    check_vocab("gpt-2");
}
