//! Gemma (1): embeddings scaled by sqrt(d_model), RMSNorm with a `(1 + w)` scale, GeGLU
//! with tanh GELU, multi-query attention in the 2B model, tied embeddings.

use super::LLAMA_LIKE;
use crate::config::FfnKind;
use crate::model::Family;
use synapse_core::ops::Activation;

pub static GEMMA: Family = Family {
    name: "gemma",
    gguf_arch: Some("gemma"),
    hf_model_types: &["gemma"],
    ffn: FfnKind::Gated(Activation::GeluTanh),
    hf_activation_keys: &["hidden_activation", "hidden_act"],
    scaled_embeddings: true,
    tied_by_default: true,
    // Hugging Face stores `w` of a `(1 + w)` scale; llama.cpp's converter folds the 1 in.
    hf_norm_offset: 1.0,
    ..LLAMA_LIKE
};
