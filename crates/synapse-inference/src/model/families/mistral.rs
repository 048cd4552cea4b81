//! Mistral: LLaMA with sliding-window attention (`sliding_window` in config.json).
//! llama.cpp converts it to the `llama` architecture, so its GGUF files load as LLaMA.

use super::LLAMA_LIKE;
use crate::model::Family;

pub static MISTRAL: Family = Family {
    name: "mistral",
    hf_model_types: &["mistral"],
    ..LLAMA_LIKE
};
