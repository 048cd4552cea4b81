//! Synapse inference: turns a model file into text. Model configuration, the model
//! families' forward passes, tokenizers, the KV cache and generation.

pub mod tokenizer;
