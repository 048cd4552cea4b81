//! Model hyper-parameters and the components they select, read from GGUF metadata or a
//! Hugging Face `config.json`. What a family fixes (its norm, FFN, naming) comes from its
//! [`Family`](crate::model::Family); what varies between checkpoints comes from the file.

use crate::error::{Error, Result};
use crate::model::rope::{Rope, RopeScaling};
use crate::model::Family;
use synapse_core::gguf::{GgufFile, Value};
use synapse_core::ops::Activation;

/// The normalisation before each block and at the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// RMSNorm (Gemma's `(1 + w)` variant is folded into the weights at load).
    Rms,
    /// LayerNorm with weight and bias.
    Layer,
}

/// The feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// `down(act(gate(x)) * up(x))`: SwiGLU with SiLU, GeGLU with GELU.
    Gated(Activation),
    /// `down(act(up(x)))`.
    Plain(Activation),
}

/// How positions enter the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Position {
    /// Rotary embeddings on queries and keys.
    Rope(Rope),
    /// A learned table of position vectors added to the token embeddings (GPT-2).
    Learned,
}

/// The shape of a decoder-only transformer and the components it is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The family's name (see [`crate::model::FAMILIES`]).
    pub architecture: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab_size: usize,
    /// The context length the model was trained for.
    pub context_length: usize,
    pub norm: NormKind,
    pub norm_eps: f32,
    pub ffn: FfnKind,
    pub position: Position,
    /// RMSNorm over each query and key head before RoPE (Qwen3).
    pub qk_norm: bool,
    /// Biases on the query, key and value projections (Qwen2).
    pub qkv_bias: bool,
    /// Biases on every linear layer (GPT-2).
    pub linear_bias: bool,
    /// Q, K and V in one weight (Phi-3, GPT-2).
    pub fused_qkv: bool,
    /// Gate and up projections in one weight, gate first (Phi-3).
    pub fused_gate_up: bool,
    /// Sliding-window attention: each position sees this many positions, itself included.
    pub window: Option<usize>,
    pub attention_scale: f32,
    pub attention_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Factor on token embeddings (Gemma: sqrt(d_model)).
    pub embedding_scale: Option<f32>,
    pub tied_embeddings: bool,
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// A configuration with the family's fixed components and the given sizes; readers
    /// fill in the rest.
    pub(crate) fn new(family: &Family, s: Sizes) -> ModelConfig {
        ModelConfig {
            architecture: family.name.to_string(),
            n_layers: s.n_layers,
            d_model: s.d_model,
            n_heads: s.n_heads,
            n_kv_heads: s.n_kv_heads,
            head_dim: s.head_dim,
            d_ff: s.d_ff,
            vocab_size: s.vocab_size,
            context_length: s.context_length,
            norm: family.norm,
            norm_eps: s.norm_eps,
            ffn: family.ffn,
            position: Position::Learned,
            qk_norm: family.qk_norm,
            qkv_bias: family.qkv_bias,
            linear_bias: family.linear_bias,
            fused_qkv: family.fused_qkv,
            fused_gate_up: family.fused_gate_up,
            window: None,
            attention_scale: 1.0 / (s.head_dim as f32).sqrt(),
            attention_softcap: None,
            final_softcap: None,
            embedding_scale: family.scaled_embeddings.then(|| (s.d_model as f32).sqrt()),
            tied_embeddings: family.tied_by_default,
        }
    }

    /// Checks the sizes against each other before any buffer is sized by them. `keys`
    /// names the KV-head count, the RoPE dimensions and the window as the source spells
    /// them.
    pub(crate) fn validate(
        self,
        keys: [&str; 3],
        bad: impl Fn(&str, String) -> Error,
    ) -> Result<ModelConfig> {
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(bad(
                keys[0],
                format!(
                    "{} does not divide the {} query heads",
                    self.n_kv_heads, self.n_heads
                ),
            ));
        }
        if let Position::Rope(rope) = &self.position {
            if rope.dims > self.head_dim || !rope.dims.is_multiple_of(2) || rope.dims == 0 {
                return Err(bad(
                    keys[1],
                    format!("{} for heads of {}", rope.dims, self.head_dim),
                ));
            }
        }
        if self.window == Some(0) {
            return Err(bad(keys[2], "0".into()));
        }
        Ok(self)
    }
}

/// The sizes every reader must find.
pub(crate) struct Sizes {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub norm_eps: f32,
}

// ---------------------------------------------------------------------------------------
// GGUF metadata
// ---------------------------------------------------------------------------------------

/// Reads typed metadata values of one GGUF file, with errors that name the key.
pub struct Metadata<'a> {
    pub gguf: &'a GgufFile,
}

impl<'a> Metadata<'a> {
    pub fn value(&self, key: &str) -> Result<&'a Value> {
        self.gguf.get(key).ok_or_else(|| Error::MissingMetadata {
            file: self.gguf.path.clone(),
            key: key.to_string(),
        })
    }

    fn bad(&self, key: &str, reason: String) -> Error {
        Error::BadMetadata {
            file: self.gguf.path.clone(),
            key: key.to_string(),
            reason,
        }
    }

    pub fn string(&self, key: &str) -> Result<&'a str> {
        let v = self.value(key)?;
        v.as_str()
            .ok_or_else(|| self.bad(key, format!("expected a string, found {}", v.type_name())))
    }

    /// A positive integer that fits comfortably in memory arithmetic.
    pub fn count(&self, key: &str) -> Result<usize> {
        let v = self.value(key)?;
        match v.as_u64() {
            Some(n) if (1..=1 << 24).contains(&n) => Ok(n as usize),
            Some(n) => Err(self.bad(key, format!("{n} is out of range"))),
            None => Err(self.bad(key, format!("expected an integer, found {}", v.type_name()))),
        }
    }

    pub fn count_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.gguf.get(key).is_some() {
            self.count(key)
        } else {
            Ok(default)
        }
    }

    pub fn float_or(&self, key: &str, default: f32) -> Result<f32> {
        Ok(self.optional_float(key)?.unwrap_or(default))
    }

    pub fn optional_float(&self, key: &str) -> Result<Option<f32>> {
        match self.gguf.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                // Named, not printed: float formatting would grow the browser module.
                Some(_) => Err(self.bad(
                    key,
                    "expected a finite number, found NaN or infinity".into(),
                )),
                None => Err(self.bad(key, format!("expected a number, found {}", v.type_name()))),
            },
        }
    }
}

impl ModelConfig {
    pub fn from_gguf(gguf: &GgufFile, family: &Family) -> Result<ModelConfig> {
        let meta = Metadata { gguf };
        let arch = meta.string("general.architecture")?;
        let key = |name: &str| format!("{arch}.{name}");
        let d_model = meta.count(&key("embedding_length"))?;
        let n_heads = meta.count(&key("attention.head_count"))?;
        let head_dim = meta.count_or(&key("attention.key_length"), d_model / n_heads)?;
        let vocab_size = match gguf.tensor_info("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => meta.count(&key("vocab_size"))?,
        };
        let eps_key = match family.norm {
            NormKind::Rms => "attention.layer_norm_rms_epsilon",
            NormKind::Layer => "attention.layer_norm_epsilon",
        };
        let mut c = ModelConfig::new(
            family,
            Sizes {
                n_layers: meta.count(&key("block_count"))?,
                d_model,
                n_heads,
                n_kv_heads: meta.count_or(&key("attention.head_count_kv"), n_heads)?,
                head_dim,
                d_ff: meta.count(&key("feed_forward_length"))?,
                vocab_size,
                context_length: meta.count(&key("context_length"))?,
                norm_eps: meta.float_or(&key(eps_key), 1e-5)?,
            },
        );
        let has = |name: &str| gguf.tensor_info(name).is_some();
        c.tied_embeddings = !has("output.weight");
        c.qkv_bias = has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias");
        c.fused_qkv = has("blk.0.attn_qkv.weight");
        c.fused_gate_up = family.gated() && !has("blk.0.ffn_gate.weight");
        // llama.cpp's converter writes 0 for "no window" (Phi-3).
        c.window = match gguf
            .get(&key("attention.sliding_window"))
            .and_then(|v| v.as_u64())
        {
            Some(0) | None => None,
            Some(_) => Some(meta.count(&key("attention.sliding_window"))?),
        };
        c.attention_softcap = meta.optional_float(&key("attn_logit_softcapping"))?;
        c.final_softcap = meta.optional_float(&key("final_logit_softcapping"))?;
        if family.rope {
            let dims = meta.count_or(&key("rope.dimension_count"), head_dim)?;
            let vector = |name: &str| -> Result<Vec<f32>> { Ok(gguf.tensor(name)?.to_f32()) };
            let original = meta.count_or(
                &key("rope.scaling.original_context_length"),
                c.context_length,
            )?;
            let scaling = if has("rope_factors_long.weight") {
                RopeScaling::LongRope {
                    short: vector("rope_factors_short.weight")?,
                    long: vector("rope_factors_long.weight")?,
                    original_context: original,
                    factor: c.context_length as f32 / original as f32,
                    attention_factor: meta.optional_float(&key("rope.scaling.attn_factor"))?,
                }
            } else if has("rope_freqs.weight") {
                RopeScaling::FreqFactors(vector("rope_freqs.weight")?)
            } else {
                match gguf.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
                    Some("linear") => RopeScaling::Linear {
                        factor: meta.float_or(&key("rope.scaling.factor"), 1.0)?,
                    },
                    Some("yarn") => RopeScaling::Yarn {
                        factor: meta.float_or(&key("rope.scaling.factor"), 1.0)?,
                        original_context: original,
                        beta_fast: meta.float_or(&key("rope.scaling.yarn_beta_fast"), 32.0)?,
                        beta_slow: meta.float_or(&key("rope.scaling.yarn_beta_slow"), 1.0)?,
                        attention_factor: meta.optional_float(&key("rope.scaling.attn_factor"))?,
                    },
                    _ => RopeScaling::None,
                }
            };
            c.position = Position::Rope(Rope {
                base: meta.float_or(&key("rope.freq_base"), 10_000.0)?,
                dims,
                style: family.gguf_rope_style,
                scaling,
            });
        }
        c.validate(
            [
                "attention.head_count_kv",
                "rope.dimension_count",
                "attention.sliding_window",
            ],
            |k, reason| meta.bad(&key(k), reason),
        )
    }
}
