//! A model's configuration from a Hugging Face `config.json`.

use crate::config::{FfnKind, ModelConfig, Position, Sizes};
use crate::error::{Error, Result};
use crate::model::rope::{Rope, RopeScaling, RopeStyle};
use crate::model::{family_for_hf, supported_architectures, Family};
use serde_json::Value as Json;
use synapse_core::ops::Activation;

/// The family (by `model_type`) and configuration of a `config.json`.
pub fn family_and_config(path: &str, json: &Json) -> Result<(&'static Family, ModelConfig)> {
    let model_type = json
        .get("model_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::MissingMetadata {
            file: path.to_string(),
            key: "model_type".into(),
        })?;
    let family = family_for_hf(model_type).ok_or_else(|| Error::UnsupportedArchitecture {
        file: path.to_string(),
        arch: model_type.to_string(),
        supported: supported_architectures(),
    })?;
    Ok((family, ModelConfig::from_hf(path, json, family)?))
}

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
