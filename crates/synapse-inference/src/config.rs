//! Model hyper-parameters and the components they select, read from GGUF metadata or a
//! Hugging Face `config.json`. What a family fixes (its norm, FFN, naming) comes from its
//! [`Family`](crate::model::Family); what varies between checkpoints comes from the file.

use crate::error::{Error, Result};
use crate::model::rope::{Rope, RopeScaling, RopeStyle};
use crate::model::Family;
use serde_json::Value as Json;
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
    fn new(family: &Family, s: Sizes) -> ModelConfig {
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
    fn validate(self, keys: [&str; 3], bad: impl Fn(&str, String) -> Error) -> Result<ModelConfig> {
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
struct Sizes {
    n_layers: usize,
    d_model: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    d_ff: usize,
    vocab_size: usize,
    context_length: usize,
    norm_eps: f32,
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

// ---------------------------------------------------------------------------------------
// Hugging Face config.json
// ---------------------------------------------------------------------------------------

/// Reads fields of a `config.json`, trying each family's spelling of a key in turn.
pub struct HfConfig<'a> {
    pub file: &'a str,
    pub json: &'a Json,
}

impl<'a> HfConfig<'a> {
    fn bad(&self, key: &str, reason: String) -> Error {
        Error::BadMetadata {
            file: self.file.to_string(),
            key: key.to_string(),
            reason,
        }
    }

    /// The first of `keys` present with a non-null value.
    pub fn get<'k>(&self, keys: &[&'k str]) -> Option<(&'a Json, &'k str)> {
        keys.iter()
            .find_map(|&k| self.json.get(k).filter(|v| !v.is_null()).map(|v| (v, k)))
    }

    pub fn count(&self, keys: &[&str]) -> Result<usize> {
        match self.optional_count(keys)? {
            Some(n) => Ok(n),
            None => Err(Error::MissingMetadata {
                file: self.file.to_string(),
                key: keys.join(" or "),
            }),
        }
    }

    pub fn optional_count(&self, keys: &[&str]) -> Result<Option<usize>> {
        match self.get(keys) {
            None => Ok(None),
            Some((v, k)) => match v.as_u64() {
                Some(n) if (1..=1 << 24).contains(&n) => Ok(Some(n as usize)),
                _ => Err(self.bad(k, format!("expected a positive integer, found {v}"))),
            },
        }
    }

    pub fn optional_float(&self, keys: &[&str]) -> Result<Option<f32>> {
        match self.get(keys) {
            None => Ok(None),
            Some((v, k)) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                _ => Err(self.bad(k, format!("expected a number, found {v}"))),
            },
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(&[key]) {
            None => Ok(default),
            Some((v, _)) => v
                .as_bool()
                .ok_or_else(|| self.bad(key, format!("expected true or false, found {v}"))),
        }
    }

    pub fn string(&self, keys: &[&str]) -> Option<&'a str> {
        self.get(keys).and_then(|(v, _)| v.as_str())
    }
}

impl ModelConfig {
    pub fn from_hf(file: &str, json: &Json, family: &Family) -> Result<ModelConfig> {
        let hf = HfConfig { file, json };
        let d_model = hf.count(&["hidden_size", "n_embd"])?;
        let n_heads = hf.count(&["num_attention_heads", "n_head"])?;
        let head_dim = hf
            .optional_count(&["head_dim"])?
            .unwrap_or(d_model / n_heads);
        let mut c = ModelConfig::new(
            family,
            Sizes {
                n_layers: hf.count(&["num_hidden_layers", "n_layer"])?,
                d_model,
                n_heads,
                n_kv_heads: hf
                    .optional_count(&["num_key_value_heads"])?
                    .unwrap_or(n_heads),
                head_dim,
                d_ff: hf
                    .optional_count(&["intermediate_size", "n_inner"])?
                    .unwrap_or(4 * d_model),
                vocab_size: hf.count(&["vocab_size"])?,
                context_length: hf.count(&["max_position_embeddings", "n_positions", "n_ctx"])?,
                norm_eps: hf
                    .optional_float(&["rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"])?
                    .unwrap_or(1e-5),
            },
        );
        if let Some(name) = hf.string(family.hf_activation_keys) {
            let act = match name {
                "silu" | "swish" => Activation::Silu,
                "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
                // Gemma's checkpoints say "gelu" but were trained with the tanh form, which
                // transformers substitutes.
                "gelu" if family.scaled_embeddings => Activation::GeluTanh,
                "gelu" => Activation::Gelu,
                other => {
                    return Err(hf.bad(
                        family.hf_activation_keys[0],
                        format!("activation {other:?} is not supported"),
                    ))
                }
            };
            c.ffn = match c.ffn {
                FfnKind::Gated(_) => FfnKind::Gated(act),
                FfnKind::Plain(_) => FfnKind::Plain(act),
            };
        }
        c.tied_embeddings = hf.bool_or("tie_word_embeddings", family.tied_by_default)?;
        c.qkv_bias = hf.bool_or("attention_bias", family.qkv_bias)?;
        c.window = if hf.bool_or("use_sliding_window", true)? {
            hf.optional_count(&["sliding_window"])?
        } else {
            None
        };
        c.attention_softcap = hf.optional_float(&["attn_logit_softcapping"])?;
        c.final_softcap = hf.optional_float(&["final_logit_softcapping"])?;
        if let Some(s) = hf.optional_float(&["query_pre_attn_scalar"])? {
            c.attention_scale = 1.0 / s.sqrt();
        }
        if family.rope {
            c.position = Position::Rope(hf_rope(&hf, &c)?);
        }
        c.validate(
            [
                "num_key_value_heads",
                "partial_rotary_factor",
                "sliding_window",
            ],
            |k, reason| hf.bad(k, reason),
        )
    }
}

/// RoPE from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4.x).
fn hf_rope(hf: &HfConfig, c: &ModelConfig) -> Result<Rope> {
    let params = hf.get(&["rope_parameters"]).map(|(v, _)| v);
    let scaling = params.or_else(|| hf.get(&["rope_scaling"]).map(|(v, _)| v));
    fn sub<'j>(v: Option<&'j Json>, k: &str) -> Option<&'j Json> {
        v.and_then(|v| v.get(k)).filter(|v| !v.is_null())
    }
    let number = |k: &str| -> Result<Option<f32>> {
        match sub(scaling, k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| {
                hf.bad(&format!("rope_scaling.{k}"), format!("{v} is not a number"))
            }),
        }
    };
    let list = |k: &str| -> Result<Vec<f32>> {
        let v = sub(scaling, k)
            .and_then(|v| v.as_array())
            .ok_or_else(|| hf.bad(&format!("rope_scaling.{k}"), "expected a list".into()))?;
        v.iter()
            .map(|x| x.as_f64().map(|x| x as f32))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| hf.bad(&format!("rope_scaling.{k}"), "expected numbers".into()))
    };
    let base = match number("rope_theta")? {
        Some(theta) => theta,
        None => hf.optional_float(&["rope_theta"])?.unwrap_or(10_000.0),
    };
    let partial = hf
        .optional_float(&["partial_rotary_factor"])?
        .unwrap_or(1.0);
    let dims = ((c.head_dim as f32 * partial) as usize) & !1;
    let original = match number("original_max_position_embeddings")? {
        Some(n) => n as usize,
        None => hf
            .optional_count(&["original_max_position_embeddings"])?
            .unwrap_or(c.context_length),
    };
    let kind = sub(scaling, "rope_type")
        .or_else(|| sub(scaling, "type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let factor = || -> Result<f32> { Ok(number("factor")?.unwrap_or(1.0)) };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: number("low_freq_factor")?.unwrap_or(1.0),
            high_freq_factor: number("high_freq_factor")?.unwrap_or(4.0),
            original_context: original,
        },
        "yarn" => RopeScaling::Yarn {
            factor: factor()?,
            original_context: original,
            beta_fast: number("beta_fast")?.unwrap_or(32.0),
            beta_slow: number("beta_slow")?.unwrap_or(1.0),
            attention_factor: number("attention_factor")?,
        },
        "longrope" | "su" => {
            let (short, long) = (list("short_factor")?, list("long_factor")?);
            if short.len() != dims / 2 || long.len() != dims / 2 {
                return Err(hf.bad(
                    "rope_scaling.short_factor",
                    format!("expected {} factors", dims / 2),
                ));
            }
            RopeScaling::LongRope {
                short,
                long,
                original_context: original,
                factor: c.context_length as f32 / original as f32,
                attention_factor: number("attention_factor")?,
            }
        }
        other => {
            return Err(hf.bad(
                "rope_scaling.rope_type",
                format!("{other:?} is not supported (default, linear, llama3, yarn, longrope)"),
            ))
        }
    };
    Ok(Rope {
        base,
        dims,
        style: RopeStyle::HalfSplit,
        scaling,
    })
}
