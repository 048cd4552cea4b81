//! Model families. A family is a [`Family`] value in its own file under `families/`: the
//! components it is built from and the names of its weights. The one generic
//! [`decoder`] assembles the forward pass from a [`ModelConfig`](crate::ModelConfig);
//! adding a family touches no engine code.

pub mod backend;
pub mod decoder;
mod families;
pub mod rope;
pub mod weights;

use crate::config::{FfnKind, NormKind};
pub use families::FAMILIES;
use synapse_core::ops::RopeStyle;

/// What a model family fixes about its architecture and where its weights live.
pub struct Family {
    pub name: &'static str,
    /// GGUF's `general.architecture`, where llama.cpp defines the family.
    pub gguf_arch: Option<&'static str>,
    /// Hugging Face `model_type` values.
    pub hf_model_types: &'static [&'static str],
    pub norm: NormKind,
    /// The feed-forward block (its activation may be overridden by `hidden_act`).
    pub ffn: FfnKind,
    /// `config.json` keys naming the activation.
    pub hf_activation_keys: &'static [&'static str],
    /// Rotary positions (else learned absolute positions).
    pub rope: bool,
    /// RoPE pairing in GGUF files (Hugging Face checkpoints always rotate halves).
    pub gguf_rope_style: RopeStyle,
    pub qk_norm: bool,
    /// Q/K/V biases unless `config.json` says otherwise (`attention_bias`).
    pub qkv_bias: bool,
    pub linear_bias: bool,
    pub fused_qkv: bool,
    pub fused_gate_up: bool,
    pub scaled_embeddings: bool,
    pub tied_by_default: bool,
    /// Added to every norm weight of a Hugging Face checkpoint (Gemma stores `w` for a
    /// `(1 + w)` scale; llama.cpp's converter folds the 1 into GGUF files).
    pub hf_norm_offset: f32,
    /// Hugging Face stores the block's linear weights as `[in, out]` (GPT-2's Conv1D).
    pub hf_transposed: bool,
    pub hf_names: HfNames,
}

impl Family {
    pub fn gated(&self) -> bool {
        matches!(self.ffn, FfnKind::Gated(_))
    }
}

/// Hugging Face names of the weights, by their GGUF names (without `.weight`/`.bias`).
pub struct HfNames {
    /// Tensors outside the blocks: (`token_embd`, `model.embed_tokens`), ...
    pub global: &'static [(&'static str, &'static str)],
    /// The prefix of block `i`'s names, with `{}` for `i`.
    pub block_prefix: &'static str,
    /// Tensors of a block: (`attn_q`, `self_attn.q_proj`), ...
    pub block: &'static [(&'static str, &'static str)],
}

impl HfNames {
    /// The Hugging Face name of a GGUF-style tensor name such as `blk.3.attn_q.weight`.
    pub fn map(&self, gguf_name: &str) -> Option<String> {
        let (stem, suffix) = gguf_name.rsplit_once('.')?;
        if let Some(rest) = stem.strip_prefix("blk.") {
            let (layer, part) = rest.split_once('.')?;
            let hf = self.block.iter().find(|(g, _)| *g == part)?.1;
            let prefix = self.block_prefix.replace("{}", layer);
            return Some(format!("{prefix}{hf}.{suffix}"));
        }
        let hf = self.global.iter().find(|(g, _)| *g == stem)?.1;
        Some(format!("{hf}.{suffix}"))
    }
}

/// The family with GGUF architecture `arch`.
pub fn family_for_gguf(arch: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.gguf_arch == Some(arch))
}

/// The family with Hugging Face `model_type`.
#[cfg(feature = "hf")]
pub fn family_for_hf(model_type: &str) -> Option<&'static Family> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.hf_model_types.contains(&model_type))
}

/// The architectures this build runs, for error messages: GGUF names, then HF ones.
pub fn supported_architectures() -> String {
    let gguf: Vec<&str> = FAMILIES.iter().filter_map(|f| f.gguf_arch).collect();
    let hf: Vec<&str> = FAMILIES
        .iter()
        .flat_map(|f| f.hf_model_types.iter().copied())
        .collect();
    format!(
        "GGUF: {}; Hugging Face model_type: {}",
        gguf.join(", "),
        hf.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_block_and_global_tensors() {
        let llama = family_for_hf("llama").unwrap();
        assert_eq!(
            llama.hf_names.map("blk.12.attn_q.weight").as_deref(),
            Some("model.layers.12.self_attn.q_proj.weight")
        );
        assert_eq!(
            llama.hf_names.map("output_norm.weight").as_deref(),
            Some("model.norm.weight")
        );
        assert_eq!(llama.hf_names.map("blk.0.nonsense.weight"), None);
    }

    #[test]
    fn every_family_is_reachable_and_names_are_unique() {
        for f in FAMILIES {
            for t in f.hf_model_types {
                assert_eq!(family_for_hf(t).unwrap().name, f.name);
            }
            if let Some(a) = f.gguf_arch {
                assert_eq!(family_for_gguf(a).unwrap().name, f.name, "{a}");
            }
        }
    }
}
