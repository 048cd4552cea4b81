//! Loading a family's weights by their GGUF names from any [`TensorSource`]: a GGUF file,
//! a Hugging Face checkpoint ([`crate::hf::HfSource`]), or random values.

use super::backend::{Backend, Cpu, Linear, Norm};
use crate::config::{FfnKind, ModelConfig, NormKind, Position};
use crate::error::{Error, Result};
use synapse_core::gguf::GgufFile;
use synapse_core::quant::quantize::quantize_tensor;
use synapse_core::{DType, WeightTensor};

/// Where tensors come from. Names are GGUF's (`blk.3.attn_q.weight`).
pub trait TensorSource {
    /// The file or directory, for error messages.
    fn origin(&self) -> &str;
    /// The tensor called `name`, if the source has it. `rows` and `cols` are what the
    /// model expects (a random source makes that shape; files are checked against it).
    fn tensor(&self, name: &str, rows: usize, cols: usize) -> Result<Option<WeightTensor>>;
    /// Added to norm weights as they load (Gemma's `(1 + w)` in Hugging Face files).
    fn norm_offset(&self) -> f32 {
        0.0
    }
    /// What the file itself calls tensor `name`, for error messages.
    fn file_name(&self, name: &str) -> String {
        name.to_string()
    }
}

impl TensorSource for GgufFile {
    fn origin(&self) -> &str {
        &self.path
    }

    fn tensor(&self, name: &str, _rows: usize, _cols: usize) -> Result<Option<WeightTensor>> {
        match self.tensor_info(name) {
            Some(_) => Ok(Some(GgufFile::tensor(self, name)?)),
            None => Ok(None),
        }
    }
}

// Random weights come with a `config.json`, which only native builds read.
#[cfg(feature = "hf")]
/// A labelled demo source: every matrix uniform in ±0.05 (std ≈ 0.029), norms 1, biases
/// 0, from a fixed seed per tensor name, at the configuration's real shapes.
pub struct RandomWeights {
    pub label: String,
}

#[cfg(feature = "hf")]
impl TensorSource for RandomWeights {
    fn origin(&self) -> &str {
        &self.label
    }

    fn tensor(&self, name: &str, rows: usize, cols: usize) -> Result<Option<WeightTensor>> {
        let is_norm = name.contains("norm");
        let is_bias = name.ends_with(".bias");
        let mut state = name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
        });
        let mut bytes = Vec::with_capacity(rows * cols * 4);
        for _ in 0..rows * cols {
            let v = if is_norm && !is_bias {
                1.0
            } else if is_bias {
                0.0
            } else {
                // splitmix64, top 24 bits to a uniform in [-0.05, 0.05).
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            };
            bytes.extend_from_slice(&f32::to_le_bytes(v));
        }
        let len = bytes.len();
        Ok(Some(WeightTensor::new(
            name.to_string(),
            DType::F32,
            rows,
            cols,
            synapse_core::Storage::from_vec(bytes),
            0..len,
        )))
    }
}

/// The GGUF name of tensor `t` of block `i`: `blk.3.attn_q`.
fn block_tensor(i: usize, t: &str) -> String {
    format!("blk.{i}.{t}")
}

/// The attention input projections.
pub enum QkvWeights<B: Backend> {
    Separate {
        q: Linear<B>,
        k: Linear<B>,
        v: Linear<B>,
    },
    /// One weight whose output rows are Q, then K, then V.
    Fused(Linear<B>),
}

pub struct BlockWeights<B: Backend> {
    pub attn_norm: Norm<B>,
    pub qkv: QkvWeights<B>,
    /// Per-head RMSNorm weights of queries and keys (Qwen3).
    pub q_norm: Option<B::Vector>,
    pub k_norm: Option<B::Vector>,
    pub attn_output: Linear<B>,
    pub ffn_norm: Norm<B>,
    /// The gate of a gated FFN with separate weights.
    pub ffn_gate: Option<Linear<B>>,
    /// The up projection; with a fused gate it holds the gate rows first.
    pub ffn_up: Linear<B>,
    pub ffn_down: Linear<B>,
}

/// A model's weights, as backend `B` holds them; loading gives them to the CPU first.
pub struct Weights<B: Backend = Cpu> {
    pub token_embd: B::Matrix,
    /// Learned absolute positions (GPT-2).
    pub position_embd: Option<B::Matrix>,
    pub blocks: Vec<BlockWeights<B>>,
    pub output_norm: Norm<B>,
    /// The output projection; the embedding table itself when the model ties them.
    pub output: Linear<B>,
}

/// How weights are stored once loaded.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Quantize f32/f16/bf16 matrices to this type while loading (a matrix whose rows do
    /// not divide into its blocks stays as it is).
    pub quantize: Option<DType>,
}

struct Loader<'a> {
    source: &'a dyn TensorSource,
    /// What becomes of each f32/f16/bf16 weight matrix (quantization, if asked for).
    float_matrix: &'a dyn Fn(WeightTensor) -> WeightTensor,
}

impl Loader<'_> {
    fn get(&self, name: &str, rows: usize, cols: usize) -> Result<Option<WeightTensor>> {
        let Some(w) = self.source.tensor(name, rows, cols)? else {
            return Ok(None);
        };
        if w.rows != rows || w.cols != cols {
            return Err(Error::BadShape {
                file: self.source.origin().to_string(),
                tensor: self.source.file_name(name),
                found: format!("[{} x {}]", w.rows, w.cols),
                expected: format!("[{rows} x {cols}]"),
            });
        }
        Ok(Some(w))
    }

    fn required(&self, name: &str, rows: usize, cols: usize) -> Result<WeightTensor> {
        self.get(name, rows, cols)?
            .ok_or_else(|| Error::MissingTensor {
                file: self.source.origin().to_string(),
                tensor: self.source.file_name(name),
            })
    }

    /// A weight matrix, quantized if the options ask for it.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<WeightTensor> {
        let w = self.required(name, rows, cols)?;
        match w.dtype {
            DType::F32 | DType::F16 | DType::BF16 => Ok((self.float_matrix)(w)),
            _ => Ok(w),
        }
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.required(name, 1, len)?.to_f32())
    }

    fn linear(&self, stem: &str, rows: usize, cols: usize, bias: bool) -> Result<Linear<Cpu>> {
        Ok(Linear {
            weight: self.matrix(&format!("{stem}.weight"), rows, cols)?,
            bias: match bias {
                true => Some(self.vector(&format!("{stem}.bias"), rows)?),
                false => None,
            },
        })
    }

    fn norm(&self, stem: &str, len: usize, kind: NormKind) -> Result<Norm<Cpu>> {
        let offset = self.source.norm_offset();
        let mut weight = self.vector(&format!("{stem}.weight"), len)?;
        weight.iter_mut().for_each(|w| *w += offset);
        Ok(Norm {
            kind,
            weight,
            bias: match kind {
                NormKind::Layer => Some(self.vector(&format!("{stem}.bias"), len)?),
                NormKind::Rms => None,
            },
        })
    }
}

impl Weights<Cpu> {
    pub fn load(source: &dyn TensorSource, c: &ModelConfig, opts: LoadOptions) -> Result<Weights> {
        match opts.quantize {
            // A matrix whose rows do not divide into blocks keeps its type.
            Some(target) => {
                Weights::load_as(source, c, &|w| quantize_tensor(&w, target).unwrap_or(w))
            }
            None => Weights::load_stored(source, c),
        }
    }

    /// The weights in the types the source stores: a caller that only loads these (the
    /// browser module) leaves the quantizers out of its binary.
    pub fn load_stored(source: &dyn TensorSource, c: &ModelConfig) -> Result<Weights> {
        Weights::load_as(source, c, &|w| w)
    }

    fn load_as(
        source: &dyn TensorSource,
        c: &ModelConfig,
        float_matrix: &dyn Fn(WeightTensor) -> WeightTensor,
    ) -> Result<Weights> {
        let l = Loader {
            source,
            float_matrix,
        };
        let (d, qd, kvd, ff) = (c.d_model, c.q_dim(), c.kv_dim(), c.d_ff);
        let token_embd = l.matrix("token_embd.weight", c.vocab_size, d)?;
        let blocks = (0..c.n_layers)
            .map(|i| {
                let name = |t: &str| block_tensor(i, t);
                let qkv_bias = c.qkv_bias || c.linear_bias;
                let qkv = if c.fused_qkv {
                    QkvWeights::Fused(l.linear(&name("attn_qkv"), qd + 2 * kvd, d, qkv_bias)?)
                } else {
                    QkvWeights::Separate {
                        q: l.linear(&name("attn_q"), qd, d, qkv_bias)?,
                        k: l.linear(&name("attn_k"), kvd, d, qkv_bias)?,
                        v: l.linear(&name("attn_v"), kvd, d, qkv_bias)?,
                    }
                };
                let head_norm = |t: &str| -> Result<Option<Vec<f32>>> {
                    match c.qk_norm {
                        true => Ok(Some(l.norm(&name(t), c.head_dim, NormKind::Rms)?.weight)),
                        false => Ok(None),
                    }
                };
                let gated = matches!(c.ffn, FfnKind::Gated(_));
                let up_rows = if gated && c.fused_gate_up { 2 * ff } else { ff };
                Ok(BlockWeights {
                    attn_norm: l.norm(&name("attn_norm"), d, c.norm)?,
                    qkv,
                    q_norm: head_norm("attn_q_norm")?,
                    k_norm: head_norm("attn_k_norm")?,
                    attn_output: l.linear(&name("attn_output"), d, qd, c.linear_bias)?,
                    ffn_norm: l.norm(&name("ffn_norm"), d, c.norm)?,
                    ffn_gate: match gated && !c.fused_gate_up {
                        true => Some(l.linear(&name("ffn_gate"), ff, d, c.linear_bias)?),
                        false => None,
                    },
                    ffn_up: l.linear(&name("ffn_up"), up_rows, d, c.linear_bias)?,
                    ffn_down: l.linear(&name("ffn_down"), d, ff, c.linear_bias)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = match c.tied_embeddings {
            true => token_embd.clone(),
            false => l.matrix("output.weight", c.vocab_size, d)?,
        };
        let mut weights = Weights {
            position_embd: match c.position {
                Position::Learned => {
                    Some(l.required("position_embd.weight", c.context_length, d)?)
                }
                Position::Rope(_) => None,
            },
            token_embd,
            blocks,
            output_norm: l.norm("output_norm", d, c.norm)?,
            output: Linear {
                weight: output,
                bias: None,
            },
        };
        weights.prepare(c.tied_embeddings);
        Ok(weights)
    }

    /// Puts the matrices in the layout this CPU's kernels read fastest (see
    /// [`synapse_core::kernels::prepare`]); a tied output shares the embeddings' copy.
    fn prepare(&mut self, tied: bool) {
        let mut matrices = vec![&mut self.token_embd];
        for b in &mut self.blocks {
            match &mut b.qkv {
                QkvWeights::Separate { q, k, v } => {
                    matrices.extend([&mut q.weight, &mut k.weight, &mut v.weight])
                }
                QkvWeights::Fused(qkv) => matrices.push(&mut qkv.weight),
            }
            matrices.extend(b.ffn_gate.as_mut().map(|g| &mut g.weight));
            matrices.extend([
                &mut b.attn_output.weight,
                &mut b.ffn_up.weight,
                &mut b.ffn_down.weight,
            ]);
        }
        if !tied {
            matrices.push(&mut self.output.weight);
        }
        synapse_core::kernels::prepare(&mut matrices);
        if tied {
            self.output.weight = self.token_embd.clone();
        }
    }
}

impl Weights<Cpu> {
    /// Hands every matrix and vector to backend `b`, each with its GGUF name (a tied
    /// output projection goes by the embedding table's, `token_embd.weight`).
    pub fn upload<B: Backend>(self, b: &B, tied: bool) -> Result<Weights<B>> {
        let linear = |stem: &str, l: Linear<Cpu>| -> Result<Linear<B>> {
            Ok(Linear {
                weight: b.matrix(&format!("{stem}.weight"), l.weight)?,
                bias: l.bias.map(|v| b.vector(&format!("{stem}.bias"), v)),
            })
        };
        let norm = |stem: &str, n: Norm<Cpu>| Norm {
            kind: n.kind,
            weight: b.vector(&format!("{stem}.weight"), n.weight),
            bias: n.bias.map(|v| b.vector(&format!("{stem}.bias"), v)),
        };
        let output = match tied {
            true => "token_embd",
            false => "output",
        };
        Ok(Weights {
            token_embd: b.matrix("token_embd.weight", self.token_embd)?,
            position_embd: self
                .position_embd
                .map(|m| b.matrix("position_embd.weight", m))
                .transpose()?,
            blocks: self
                .blocks
                .into_iter()
                .enumerate()
                .map(|(i, w)| {
                    let name = |t: &str| block_tensor(i, t);
                    Ok(BlockWeights {
                        attn_norm: norm(&name("attn_norm"), w.attn_norm),
                        qkv: match w.qkv {
                            QkvWeights::Separate { q, k, v } => QkvWeights::Separate {
                                q: linear(&name("attn_q"), q)?,
                                k: linear(&name("attn_k"), k)?,
                                v: linear(&name("attn_v"), v)?,
                            },
                            QkvWeights::Fused(qkv) => {
                                QkvWeights::Fused(linear(&name("attn_qkv"), qkv)?)
                            }
                        },
                        q_norm: w.q_norm.map(|v| b.vector(&name("attn_q_norm.weight"), v)),
                        k_norm: w.k_norm.map(|v| b.vector(&name("attn_k_norm.weight"), v)),
                        attn_output: linear(&name("attn_output"), w.attn_output)?,
                        ffn_norm: norm(&name("ffn_norm"), w.ffn_norm),
                        ffn_gate: w
                            .ffn_gate
                            .map(|g| linear(&name("ffn_gate"), g))
                            .transpose()?,
                        ffn_up: linear(&name("ffn_up"), w.ffn_up)?,
                        ffn_down: linear(&name("ffn_down"), w.ffn_down)?,
                    })
                })
                .collect::<Result<_>>()?,
            output_norm: norm("output_norm", self.output_norm),
            output: linear(output, self.output)?,
        })
    }

    /// The matrices that matmuls read: every block's projections, then the output
    /// projection (the embedding table only when the model ties them).
    pub fn matmul_weights(&self) -> impl Iterator<Item = &WeightTensor> {
        self.blocks
            .iter()
            .flat_map(|b| {
                let qkv = match &b.qkv {
                    QkvWeights::Separate { q, k, v } => vec![q, k, v],
                    QkvWeights::Fused(w) => vec![w],
                };
                qkv.into_iter()
                    .chain([&b.attn_output])
                    .chain(&b.ffn_gate)
                    .chain([&b.ffn_up, &b.ffn_down])
                    .map(|l| &l.weight)
            })
            .chain([&self.output.weight])
    }

    /// The model's parameters, each stored weight counted once (a tied output projection
    /// is the embedding table).
    pub fn parameter_count(&self, tied: bool) -> u64 {
        let vector = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, |v| v.len() as u64);
        let matrix = |w: &WeightTensor| (w.rows * w.cols) as u64;
        let linear = |l: &Linear<Cpu>| matrix(&l.weight) + vector(&l.bias);
        let norm = |n: &Norm<Cpu>| n.weight.len() as u64 + vector(&n.bias);
        let blocks: u64 = self
            .blocks
            .iter()
            .map(|b| {
                let qkv: u64 = match &b.qkv {
                    QkvWeights::Separate { q, k, v } => linear(q) + linear(k) + linear(v),
                    QkvWeights::Fused(w) => linear(w),
                };
                qkv + linear(&b.attn_output)
                    + b.ffn_gate.as_ref().map_or(0, linear)
                    + linear(&b.ffn_up)
                    + linear(&b.ffn_down)
                    + norm(&b.attn_norm)
                    + norm(&b.ffn_norm)
                    + vector(&b.q_norm)
                    + vector(&b.k_norm)
            })
            .sum();
        let output = if tied { 0 } else { linear(&self.output) };
        matrix(&self.token_embd)
            + self.position_embd.as_ref().map_or(0, matrix)
            + blocks
            + norm(&self.output_norm)
            + output
    }

    /// Bytes of weights a decode step reads: every matrix of a matmul, and one row of the
    /// embedding table unless it doubles as the output projection.
    pub fn bytes_per_token(&self, tied: bool) -> u64 {
        let matrices: u64 = self.matmul_weights().map(|w| w.bytes().len() as u64).sum();
        let embd_row = self.token_embd.row_bytes() as u64;
        matrices + if tied { 0 } else { embd_row }
    }
}
