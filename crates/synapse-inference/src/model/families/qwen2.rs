//! Qwen2 and Qwen2.5: LLaMA with biases on the Q/K/V projections and NeoX-order RoPE.

use super::LLAMA_LIKE;
use crate::model::Family;

pub static QWEN2: Family = Family {
    name: "qwen2",
    gguf_arch: Some("qwen2"),
    hf_model_types: &["qwen2"],
    qkv_bias: true,
    ..LLAMA_LIKE
};
