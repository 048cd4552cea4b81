//! `synapse quantize` on the default model: every tensor of every type it writes is
//! byte-for-byte what llama.cpp's own quantizer writes from the same file
//! (tests/fixtures/quantize/llamacpp.json, made by
//! tools/reference/check_quantize_llamacpp.py), Synapse runs the files, and its own Q8_0
//! keeps the f32 model's top token almost everywhere.

// The integration-test helpers of synapse-inference (default model, greedy argmax).
#[path = "../../synapse-inference/tests/common/mod.rs"]
mod common;

use common::argmax;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use synapse_core::gguf::{quantize_file, GgufFile};
use synapse_core::kernels::Precision;
use synapse_core::DType;
use synapse_inference::default_model::sha256_file;
use synapse_inference::{Model, Session, SessionOptions};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/quantize")
}

/// A scratch directory for this test's output files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("synapse-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Greedy tokens (argmax of the raw logits) after `prompt`.
fn greedy(path: &Path, prompt: &str, n: usize) -> Vec<u32> {
    let model = Arc::new(Model::load(path).unwrap());
    let ids = model.tokenizer().unwrap().encode(prompt, false, true);
    let mut session = Session::new(model, SessionOptions::default());
    let mut logits = session.eval(&ids, false).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let tok = argmax(&logits);
        out.push(tok);
        logits = session.eval(&[tok], false).unwrap();
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many tensors of each type the file has, and the digest the fixture records: the
/// sha256 of the lines `NAME TYPE SHA256-OF-ITS-BYTES`, one per tensor sorted by name.
fn tensors_digest(path: &Path) -> (BTreeMap<String, u64>, String) {
    let gguf = GgufFile::open(path).unwrap();
    let mut lines = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for t in &gguf.tensors {
        let start = t.offset as usize;
        let bytes = &gguf.storage()[start..start + t.size_bytes as usize];
        let line = format!("{} {} {}\n", t.name, t.dtype, hex(&Sha256::digest(bytes)));
        lines.insert(t.name.clone(), line);
        *counts.entry(t.dtype.to_string()).or_insert(0) += 1;
    }
    let all: String = lines.into_values().collect();
    (counts, hex(&Sha256::digest(all.as_bytes())))
}

#[test]
fn quantized_tensors_are_llama_cpps_and_synapse_runs_them() {
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("llamacpp.json")).unwrap())
            .unwrap();
    let model = common::model_path();
    assert_eq!(
        sha256_file(&model).unwrap(),
        fixture["model_sha256"].as_str().unwrap(),
        "{} is not the model the fixture was made from",
        model.display()
    );
    let prompt = fixture["prompt"].as_str().unwrap();
    let n = fixture["n_generate"].as_u64().unwrap() as usize;
    let dir = TempDir::new("quantize-cli");
    let outputs = fixture["outputs"].as_array().unwrap();
    // Every type `synapse quantize --type` takes.
    assert_eq!(outputs.len(), 11);
    for output in outputs {
        let ty = output["type"].as_str().unwrap();
        let path = dir.0.join(format!("{ty}.gguf"));
        let run = Command::new(env!("CARGO_BIN_EXE_synapse"))
            .args(["quantize", model.to_str().unwrap(), path.to_str().unwrap()])
            .args(["--type", ty])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        // Progress names every tensor; the summary gives the sizes.
        assert!(stderr.contains("blk.0.ffn_down.weight"), "{stderr}");
        assert!(String::from_utf8_lossy(&run.stdout).contains("MiB ->"));
        let (counts, digest) = tensors_digest(&path);
        let want: BTreeMap<String, u64> =
            serde_json::from_value(output["tensor_types"].clone()).unwrap();
        assert_eq!(counts, want, "{ty}: tensor types differ from llama.cpp's");
        assert_eq!(
            digest,
            output["tensors_digest"].as_str().unwrap(),
            "{ty}: some tensor's bytes differ from llama.cpp's (run \
             tools/reference/check_quantize_llamacpp.py --synapse target/release/synapse to see which)"
        );
        if let Some(tokens) = output.get("tokens") {
            let got = greedy(&path, prompt, n);
            let want: Vec<u32> = serde_json::from_value(tokens.clone()).unwrap();
            let same_prefix = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
            eprintln!("{ty}: Synapse {got:?}, llama.cpp {want:?}: first {same_prefix} agree");
            assert_eq!(got.len(), n);
            // Both engines round activations differently, so greedy paths may part after
            // a while, but the first token comes from the same weights and prompt.
            assert_eq!(got[0], want[0], "{ty}: first generated token");
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn synapse_q8_0_keeps_the_f32_models_top_token() {
    let model = common::model_path();
    let dir = TempDir::new("quantize-agreement");
    let (f32_path, q8_path) = (dir.0.join("f32.gguf"), dir.0.join("q8_0.gguf"));
    quantize_file(&model, &f32_path, DType::F32, |_| {}).unwrap();
    quantize_file(&model, &q8_path, DType::Q8_0, |_| {}).unwrap();
    let text = std::fs::read_to_string(fixtures().join("agreement.txt")).unwrap();

    let top_tokens = |path: &Path, precision: Precision| {
        let model = Arc::new(Model::load(path).unwrap());
        let ids = model.tokenizer().unwrap().encode(&text, false, true);
        let vocab = model.tokenizer().unwrap().vocab_size();
        let opts = SessionOptions {
            precision,
            ..SessionOptions::default()
        };
        let mut session = Session::new(model, opts);
        let logits = session.eval(&ids, true).unwrap();
        assert_eq!(logits.len(), ids.len() * vocab);
        logits.chunks_exact(vocab).map(argmax).collect::<Vec<u32>>()
    };
    let reference = top_tokens(&f32_path, Precision::F32);
    let q8 = top_tokens(&q8_path, Precision::FollowWeights);
    assert!(reference.len() >= 200, "{} tokens", reference.len());
    let agree = reference.iter().zip(&q8).filter(|(a, b)| a == b).count();
    let rate = agree as f64 / reference.len() as f64;
    eprintln!(
        "Q8_0 vs F32 top-1 agreement: {agree}/{} positions ({:.1}%)",
        reference.len(),
        100.0 * rate
    );
    assert!(rate >= 0.95, "agreement {:.1}%", 100.0 * rate);
}

/// The writer lays a file out as llama.cpp's converter did: copying every key and tensor
/// of the default model reproduces it byte for byte.
#[test]
fn a_verbatim_copy_of_the_default_model_is_byte_identical() {
    use synapse_core::gguf::{GgufFile, GgufWriter};
    let path = common::model_path();
    let gguf = GgufFile::open(&path).unwrap();
    let mut writer = GgufWriter::new();
    for (key, value) in &gguf.metadata {
        writer.set(key, value.clone()).unwrap();
    }
    for t in &gguf.tensors {
        writer.add_tensor(&t.name, &t.dims, t.dtype).unwrap();
    }
    let mut out = Vec::new();
    writer
        .write(&mut out, |i| {
            let t = &gguf.tensors[i];
            let start = t.offset as usize;
            Ok(std::borrow::Cow::Borrowed(
                &gguf.storage()[start..start + t.size_bytes as usize],
            ))
        })
        .unwrap();
    let original = std::fs::read(&path).unwrap();
    assert_eq!(out.len(), original.len());
    assert!(out == original, "the copy differs from {}", path.display());
}
