//! Qwen3: LLaMA with an RMSNorm on each query and key head (no Q/K/V biases) and
//! NeoX-order RoPE.

use super::{LLAMA_GLOBAL_NAMES, LLAMA_LIKE};
use crate::model::{Family, HfNames};

pub static QWEN3: Family = Family {
    name: "qwen3",
    gguf_arch: Some("qwen3"),
    hf_model_types: &["qwen3"],
    qk_norm: true,
    hf_names: HfNames {
        global: LLAMA_GLOBAL_NAMES,
        block_prefix: "model.layers.{}.",
        block: &[
            ("attn_norm", "input_layernorm"),
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_q_norm", "self_attn.q_norm"),
            ("attn_k_norm", "self_attn.k_norm"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_norm", "post_attention_layernorm"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ],
    },
    ..LLAMA_LIKE
};
