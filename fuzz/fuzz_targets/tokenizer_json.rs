//! A Hugging Face `tokenizer.json` from arbitrary bytes, loaded as a model folder's
//! tokenizer, then used: texts encoded (with and without special tokens) and decoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synapse_fuzz::load_tokenizer_file(
    "tokenizer.json",
    data
));
