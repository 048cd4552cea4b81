//! GPT-2: learned absolute positions, LayerNorm, a GELU MLP, biases everywhere, Q/K/V in
//! one weight; Hugging Face stores the block weights as `[in, out]` (Conv1D).

use super::LLAMA_LIKE;
use crate::config::{FfnKind, NormKind};
use crate::model::{Family, HfNames};
use synapse_core::ops::Activation;

pub static GPT2: Family = Family {
    name: "gpt2",
    gguf_arch: Some("gpt2"),
    hf_model_types: &["gpt2"],
    norm: NormKind::Layer,
    ffn: FfnKind::Plain(Activation::GeluTanh),
    hf_activation_keys: &["activation_function"],
    rope: false,
    qkv_bias: true,
    linear_bias: true,
    fused_qkv: true,
    tied_by_default: true,
    hf_transposed: true,
    hf_names: HfNames {
        global: &[
            ("token_embd", "transformer.wte"),
            ("position_embd", "transformer.wpe"),
            ("output_norm", "transformer.ln_f"),
            ("output", "lm_head"),
        ],
        block_prefix: "transformer.h.{}.",
        block: &[
            ("attn_norm", "ln_1"),
            ("attn_qkv", "attn.c_attn"),
            ("attn_output", "attn.c_proj"),
            ("ffn_norm", "ln_2"),
            ("ffn_up", "mlp.c_fc"),
            ("ffn_down", "mlp.c_proj"),
        ],
    },
    ..LLAMA_LIKE
};
