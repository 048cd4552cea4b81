//! Shared by the integration tests: the default model (fetched by the test setup if
//! missing) and the committed reference fixtures.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use synapse_inference::Model;

/// The default model's path: `$SYNAPSE_MODEL`, else fetched into `$SYNAPSE_HOME`.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SYNAPSE_MODEL") {
        return PathBuf::from(p);
    }
    synapse_inference::default_model::ensure().expect("fetch the default model")
}

/// The default model, loaded once per test binary.
pub fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(Model::load(model_path()).expect("load the default model")))
        .clone()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// llama.cpp's conformance vocabulary `ggml-vocab-NAME.gguf` (its `.inp`/`.out` files
/// lie beside it): in `$SYNAPSE_LLAMA_VOCAB_DIR`, else in `../shared/data/llama-vocab`
/// beside the repository. `None` if it is missing: the caller skips its test. A skipped
/// test passes, and cargo hides what passing tests print, so the skip is written to the
/// process's stderr, past the capture; under `CI=true`, where `../shared` is beside the
/// clone, a missing vocabulary fails the test instead.
pub fn llama_vocab(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("SYNAPSE_LLAMA_VOCAB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("../shared/data/llama-vocab"),
    };
    let path = dir.join(format!("ggml-vocab-{name}.gguf"));
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "{} not found (llama.cpp's vocabularies ship in the llama-cpp-python source \
         distribution under vendor/llama.cpp/models/; set SYNAPSE_LLAMA_VOCAB_DIR to that folder)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{message}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {message}");
    None
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = repo_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The index of the largest logit, the first of equals (greedy decoding's choice).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// A small deterministic generator for test inputs (splitmix64).
pub struct TestRng(pub u64);

impl TestRng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
