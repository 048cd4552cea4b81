//! The model families this build runs, one file each. Each states how it differs from
//! [`LLAMA_LIKE`].

mod gemma;
mod gpt2;
mod llama;
mod mistral;
mod phi3;
mod qwen2;
mod qwen3;

use super::{Family, HfNames};
use crate::config::{FfnKind, NormKind};
use synapse_core::ops::{Activation, RopeStyle};

pub static FAMILIES: &[&Family] = &[
    &llama::LLAMA,
    &mistral::MISTRAL,
    &qwen2::QWEN2,
    &qwen3::QWEN3,
    &phi3::PHI3,
    &gemma::GEMMA,
    &gpt2::GPT2,
];

/// The pre-norm LLaMA block most families start from: RMSNorm, RoPE, separate Q/K/V
/// projections without biases, SwiGLU, untied output, Hugging Face LLaMA names.
const LLAMA_LIKE: Family = Family {
    name: "",
    gguf_arch: None,
    hf_model_types: &[],
    norm: NormKind::Rms,
    ffn: FfnKind::Gated(Activation::Silu),
    hf_activation_keys: &["hidden_act"],
    rope: true,
    gguf_rope_style: RopeStyle::HalfSplit,
    qk_norm: false,
    qkv_bias: false,
    linear_bias: false,
    fused_qkv: false,
    fused_gate_up: false,
    scaled_embeddings: false,
    tied_by_default: false,
    hf_norm_offset: 0.0,
    hf_transposed: false,
    hf_names: HfNames {
        global: LLAMA_GLOBAL_NAMES,
        block_prefix: "model.layers.{}.",
        block: &[
            ("attn_norm", "input_layernorm"),
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            // Only read by families with per-head Q/K norms (Qwen3).
            ("attn_q_norm", "self_attn.q_norm"),
            ("attn_k_norm", "self_attn.k_norm"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_norm", "post_attention_layernorm"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ],
    },
};

const LLAMA_GLOBAL_NAMES: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];
