//! Arbitrary text (lossily decoded from the bytes) through every tokenizer kind Synapse
//! has: llama.cpp's test vocabularies (GPT-2, LLaMA 3 BPE, LLaMA SentencePiece, Phi-3,
//! Qwen2, Gemma 4 ...), encoded with and without special-token parsing, then decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use synapse_core::gguf::GgufFile;
use synapse_fuzz::exercise;
use synapse_inference::tokenizer::Tokenizer;

fn tokenizers() -> &'static [Tokenizer] {
    static ALL: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    ALL.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/llama-vocab");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| Tokenizer::from_gguf(&GgufFile::open(p).unwrap()).unwrap())
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for tokenizer in tokenizers() {
        exercise(tokenizer, &text);
    }
});
