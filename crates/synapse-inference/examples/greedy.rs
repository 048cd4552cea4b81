//! The library's smallest whole use: load a model, generate greedily, print the result.
//! Prints one JSON line per prompt, `{"prompt": ..., "tokens": [...], "text": ...}`; the
//! Rust library's path in `tests/cross_path.py`.
//!
//!     cargo run --release -p synapse-inference --example greedy -- MODEL N PROMPT...

use std::sync::Arc;
use synapse_inference::generation::sampler::SamplerConfig;
use synapse_inference::generation::{generate, GenerateOptions};
use synapse_inference::{Model, Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, n, prompts @ ..] = args.as_slice() else {
        return Err("usage: greedy MODEL N PROMPT...".into());
    };
    let model = Arc::new(Model::load(path)?);
    let opts = GenerateOptions {
        max_tokens: n.parse()?,
        sampler: SamplerConfig::greedy(),
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    for prompt in prompts {
        let mut session = Session::new(model.clone(), SessionOptions::default().resolve(&model));
        let ids = model.tokenizer()?.encode(prompt, true, true);
        let generation = generate(&mut session, &ids, &opts, |_| {})?;
        let line = serde_json::json!({
            "prompt": prompt,
            "tokens": generation.tokens,
            "text": generation.text,
        });
        println!("{line}");
    }
    Ok(())
}
