//! Phi-3: LLaMA-like with Q/K/V in one weight and gate/up in one weight, NeoX-order RoPE
//! with LongRoPE scaling, and sliding-window attention.

use super::{LLAMA_GLOBAL_NAMES, LLAMA_LIKE};
use crate::model::{Family, HfNames};

pub static PHI3: Family = Family {
    name: "phi3",
    gguf_arch: Some("phi3"),
    hf_model_types: &["phi3"],
    fused_qkv: true,
    fused_gate_up: true,
    hf_names: HfNames {
        global: LLAMA_GLOBAL_NAMES,
        block_prefix: "model.layers.{}.",
        block: &[
            ("attn_norm", "input_layernorm"),
            ("attn_qkv", "self_attn.qkv_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_norm", "post_attention_layernorm"),
            // Gate rows first, then up rows; GGUF keeps the fused tensor as `ffn_up`.
            ("ffn_up", "mlp.gate_up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ],
    },
    ..LLAMA_LIKE
};
