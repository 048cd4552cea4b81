//! Model hyper-parameters, read from GGUF metadata.

use crate::error::{Error, Result};
use synapse_core::gguf::{GgufFile, Value};

/// The shape of a decoder-only transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
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
    pub rope_base: f32,
    /// Leading dimensions of each head that RoPE rotates.
    pub rope_dims: usize,
    pub norm_eps: f32,
}

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
        match self.gguf.get(key) {
            None => Ok(default),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(x as f32),
                _ => Err(self.bad(key, format!("expected a finite number, found {v:?}"))),
            },
        }
    }
}

impl ModelConfig {
    pub fn from_gguf(gguf: &GgufFile) -> Result<ModelConfig> {
        let meta = Metadata { gguf };
        let arch = meta.string("general.architecture")?.to_string();
        let key = |name: &str| format!("{arch}.{name}");
        let d_model = meta.count(&key("embedding_length"))?;
        let n_heads = meta.count(&key("attention.head_count"))?;
        let n_kv_heads = meta.count_or(&key("attention.head_count_kv"), n_heads)?;
        if n_heads % n_kv_heads != 0 {
            return Err(meta.bad(
                &key("attention.head_count_kv"),
                format!("{n_kv_heads} does not divide the {n_heads} query heads"),
            ));
        }
        let head_dim = meta.count_or(&key("attention.key_length"), d_model / n_heads)?;
        let rope_dims = meta.count_or(&key("rope.dimension_count"), head_dim)?;
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(meta.bad(
                &key("rope.dimension_count"),
                format!("{rope_dims} for heads of {head_dim}"),
            ));
        }
        let vocab_size = match gguf.tensor_info("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => meta.count(&key("vocab_size"))?,
        };
        Ok(ModelConfig {
            n_layers: meta.count(&key("block_count"))?,
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
            d_ff: meta.count(&key("feed_forward_length"))?,
            vocab_size,
            context_length: meta.count(&key("context_length"))?,
            rope_base: meta.float_or(&key("rope.freq_base"), 10_000.0)?,
            rope_dims,
            norm_eps: meta.float_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            architecture: arch,
        })
    }

    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}
