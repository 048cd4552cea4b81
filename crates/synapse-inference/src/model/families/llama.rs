//! LLaMA 1-3 (and SmolLM2, and other checkpoints GGUF tags `llama`): RMSNorm, RoPE with
//! LLaMA 3.1 scaling, grouped-query attention, SwiGLU.

use super::LLAMA_LIKE;
use crate::model::Family;
use synapse_core::ops::RopeStyle;

pub static LLAMA: Family = Family {
    name: "llama",
    gguf_arch: Some("llama"),
    hf_model_types: &["llama"],
    // llama.cpp's converter permutes Q/K rows so that GGML's adjacent-pair RoPE applies.
    gguf_rope_style: RopeStyle::AdjacentPairs,
    ..LLAMA_LIKE
};
