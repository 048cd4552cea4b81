//! A SentencePiece `tokenizer.model` (protobuf) from arbitrary bytes, loaded as a model
//! folder's tokenizer, then used to encode and decode.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| synapse_fuzz::load_tokenizer_file(
    "tokenizer.model",
    data
));
