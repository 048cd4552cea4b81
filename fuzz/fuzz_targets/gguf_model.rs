//! A GGUF file from arbitrary bytes: header, metadata and tensor table, every tensor's
//! checks, then the whole model load (config, tokenizer, weights) and, when that
//! succeeds, a short greedy generation. Errors are expected; a panic, a hang or an
//! allocation past libFuzzer's limit is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use synapse_core::gguf::GgufFile;
use synapse_core::Storage;
use synapse_inference::generation::{generate, GenerateOptions};
use synapse_inference::model::weights::LoadOptions;
use synapse_inference::{Model, Session, SessionOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(gguf) = GgufFile::parse("fuzz.gguf".into(), Storage::from_vec(data.to_vec())) else {
        return;
    };
    for info in &gguf.tensors {
        let _ = gguf.tensor(&info.name);
    }
    let Ok(model) = Model::from_gguf_with(gguf, LoadOptions::default()) else {
        return;
    };
    let model = Arc::new(model);
    let opts = SessionOptions {
        context: 16,
        threads: 1,
        ..SessionOptions::default()
    }
    .resolve(&model);
    let mut session = Session::new(model.clone(), opts);
    let Ok(tokenizer) = model.tokenizer() else {
        return;
    };
    let prompt = tokenizer.encode("hello", true, false);
    let opts = GenerateOptions {
        max_tokens: 4,
        ..GenerateOptions::default()
    };
    let _ = generate(&mut session, &prompt, &opts, |_| {});
});
