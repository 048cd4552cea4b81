//! Qwen3: LLaMA with an RMSNorm on each query and key head (no Q/K/V biases) and
//! NeoX-order RoPE.

use super::LLAMA_LIKE;
use crate::model::Family;

pub static QWEN3: Family = Family {
    name: "qwen3",
    gguf_arch: Some("qwen3"),
    hf_model_types: &["qwen3"],
    qk_norm: true,
    ..LLAMA_LIKE
};
