//! What training writes for other programs: GGUF files that the engine and llama.cpp load
//! (LLaMA architecture; f32, f16 or q8_0 matrices, norms in f32, the tokenizer and chat
//! template carried over from a GGUF file), and LoRA adapters as PEFT writes them.

use crate::autodiff::{Matrix, State};
use crate::checkpoint::{hf_name, write_safetensors, Tensor};
use crate::lora::LoraOptions;
use std::borrow::Cow;
use std::path::Path;
use synapse_core::gguf::{llama_file_type, GgufFile, GgufWriter, Value};
use synapse_core::ops::RopeStyle;
use synapse_core::quant::quantize::quantize_tensor_bytes;
use synapse_core::{DType, Storage, WeightTensor};
use synapse_inference::config::Position;
use synapse_inference::model::rope::RopeScaling;
use synapse_inference::ModelConfig;

/// Rows of a `[heads · head_dim][cols]` query or key matrix moved from Hugging Face's
/// rotate-half order to GGML's adjacent pairs, as llama.cpp's converter does: in each
/// head, row `j · half + i` goes to row `2i + j`. `back` undoes it.
pub fn pair_rope_rows(w: &[f32], cols: usize, head_dim: usize, back: bool) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; w.len()];
    for (from, to) in w
        .chunks_exact(head_dim * cols)
        .zip(out.chunks_exact_mut(head_dim * cols))
    {
        for j in 0..2 {
            for i in 0..half {
                let (split, paired) = (j * half + i, 2 * i + j);
                let (src, dst) = match back {
                    false => (split, paired),
                    true => (paired, split),
                };
                to[dst * cols..][..cols].copy_from_slice(&from[src * cols..][..cols]);
            }
        }
    }
    out
}

/// The rope order the model's query and key rows are in.
fn rope_style(config: &ModelConfig) -> Result<RopeStyle, String> {
    match &config.position {
        Position::Rope(rope) if matches!(rope.scaling, RopeScaling::None) => Ok(rope.style),
        _ => Err("export: only unscaled rotary positions (LLaMA) so far".into()),
    }
}

/// GGUF's LLaMA metadata for `config`.
fn llama_metadata(
    config: &ModelConfig,
    name: &str,
    dtype: DType,
) -> Result<Vec<(String, Value)>, String> {
    if config.architecture != "llama" {
        return Err(format!(
            "export: {} models cannot be written yet (LLaMA only)",
            config.architecture
        ));
    }
    let Position::Rope(rope) = &config.position else {
        unreachable!("checked by rope_style")
    };
    let u32_of = |v: usize| Value::U32(v as u32);
    Ok(vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String(name.into())),
        (
            "general.file_type".into(),
            Value::U32(llama_file_type(dtype).unwrap_or(0)),
        ),
        ("llama.context_length".into(), u32_of(config.context_length)),
        ("llama.embedding_length".into(), u32_of(config.d_model)),
        ("llama.block_count".into(), u32_of(config.n_layers)),
        ("llama.feed_forward_length".into(), u32_of(config.d_ff)),
        ("llama.attention.head_count".into(), u32_of(config.n_heads)),
        (
            "llama.attention.head_count_kv".into(),
            u32_of(config.n_kv_heads),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(config.norm_eps),
        ),
        ("llama.rope.freq_base".into(), Value::F32(rope.base)),
        ("llama.rope.dimension_count".into(), u32_of(rope.dims)),
        ("llama.vocab_size".into(), u32_of(config.vocab_size)),
    ])
}

/// A weight for [`write_gguf`]: its GGUF name, `[rows][cols]` and f32 values.
pub struct Weight<'a> {
    pub name: String,
    /// A norm's weights or a bias: stored as f32, whatever `dtype` the matrices take.
    pub vector: bool,
    pub rows: usize,
    pub cols: usize,
    pub values: Cow<'a, [f32]>,
}

/// Writes `weights` as a LLaMA GGUF file at `path`: matrices as `dtype` (F32, F16 or
/// Q8_0), vectors as F32, query and key rows in GGML's order, the tokenizer's and chat
/// template's metadata (`tokenizer.*`) taken from `tokenizer_from`.
pub fn write_gguf(
    path: &Path,
    config: &ModelConfig,
    name: &str,
    weights: &[Weight],
    tokenizer_from: &GgufFile,
    dtype: DType,
) -> Result<(), String> {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::Q8_0) {
        return Err(format!("export: {dtype} (f32, f16 or q8_0)"));
    }
    let style = rope_style(config)?;
    let mut writer = GgufWriter::new();
    let tokenizer_keys = tokenizer_from
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."));
    for (key, value) in llama_metadata(config, name, dtype)?
        .iter()
        .chain(tokenizer_keys)
    {
        writer.set(key, value.clone()).map_err(|e| e.to_string())?;
    }
    let mut data = Vec::new();
    for w in weights {
        let is_matrix = !w.vector;
        let ty = match is_matrix {
            true => dtype,
            false => DType::F32,
        };
        let dims: Vec<u64> = match is_matrix {
            true => vec![w.cols as u64, w.rows as u64],
            false => vec![w.cols as u64],
        };
        writer
            .add_tensor(&w.name, &dims, ty)
            .map_err(|e| e.to_string())?;
        let needs_pairing = style == RopeStyle::HalfSplit
            && (w.name.ends_with("attn_q.weight") || w.name.ends_with("attn_k.weight"));
        let values = match needs_pairing {
            true => Cow::Owned(pair_rope_rows(&w.values, w.cols, config.head_dim, false)),
            false => w.values.clone(),
        };
        data.push(encode(&w.name, &values, w.rows, w.cols, ty)?);
    }
    writer
        .write_file(path, |i| Ok(Cow::Borrowed(&data[i][..])))
        .map_err(|e| e.to_string())
}

/// `values` as `dtype` bytes.
fn encode(
    name: &str,
    values: &[f32],
    rows: usize,
    cols: usize,
    dtype: DType,
) -> Result<Vec<u8>, String> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    if dtype == DType::F32 {
        return Ok(bytes);
    }
    let len = bytes.len();
    let w = WeightTensor::new(
        name.into(),
        DType::F32,
        rows,
        cols,
        Storage::from_vec(bytes),
        0..len,
    );
    quantize_tensor_bytes(&w, dtype).map_err(|e| e.to_string())
}

/// Every weight of a trained model: parameters as they are; with LoRA, each frozen
/// matrix dequantized with its update `scale · B·A` merged in.
pub fn merged_weights(state: &State) -> Vec<Weight<'_>> {
    let mut out = Vec::new();
    for m in &state.matrices {
        match m {
            Matrix::Param(p) => {
                let p = &state.params[*p];
                out.push(Weight {
                    name: p.name.clone(),
                    vector: false,
                    rows: p.rows,
                    cols: p.cols,
                    values: Cow::Borrowed(&p.value),
                });
            }
            Matrix::Frozen { weight, lora } => {
                let mut w = weight.to_f32();
                if let Some(lora) = lora {
                    let (a, b) = (&state.params[lora.a], &state.params[lora.b]);
                    for (row, b_row) in w
                        .chunks_exact_mut(weight.cols)
                        .zip(b.value.chunks_exact(b.cols))
                    {
                        for (&b_or, a_row) in b_row.iter().zip(a.value.chunks_exact(a.cols)) {
                            for (x, &a_ri) in row.iter_mut().zip(a_row) {
                                *x += lora.scale * b_or * a_ri;
                            }
                        }
                    }
                }
                out.push(Weight {
                    name: weight.name.clone(),
                    vector: false,
                    rows: weight.rows,
                    cols: weight.cols,
                    values: Cow::Owned(w),
                });
            }
        }
    }
    let vectors = state.params.iter().filter(|p| p.is_vector());
    out.extend(vectors.map(|p| Weight {
        name: p.name.clone(),
        vector: true,
        rows: p.rows,
        cols: p.cols,
        values: Cow::Borrowed(&p.value),
    }));
    out
}

/// Writes the adapters as PEFT saves them (`adapter_model.safetensors` with PEFT's
/// tensor names, `adapter_config.json`) in `dir`, for the Hugging Face form of the model
/// (its query and key rows in rotate-half order).
pub fn write_peft_adapter(
    dir: &Path,
    config: &ModelConfig,
    state: &State,
    opts: &LoraOptions,
    base_model: &str,
) -> Result<(), String> {
    let style = rope_style(config)?;
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut values = Vec::new();
    let mut names = Vec::new();
    for m in &state.matrices {
        let Matrix::Frozen {
            weight,
            lora: Some(lora),
        } = m
        else {
            continue;
        };
        let stem = hf_name(config, &weight.name)?;
        let stem = stem.trim_end_matches(".weight");
        let (a, b) = (&state.params[lora.a], &state.params[lora.b]);
        let paired = style == RopeStyle::AdjacentPairs
            && (weight.name.ends_with("attn_q.weight") || weight.name.ends_with("attn_k.weight"));
        let b_values = match paired {
            true => pair_rope_rows(&b.value, b.cols, config.head_dim, true),
            false => b.value.clone(),
        };
        names.push((format!("base_model.model.{stem}.lora_A.weight"), a, lora.a));
        names.push((format!("base_model.model.{stem}.lora_B.weight"), b, lora.b));
        values.push(a.value.clone());
        values.push(b_values);
    }
    let tensors: Vec<Tensor> = names
        .iter()
        .zip(&values)
        .map(|((name, p, _), v)| Tensor::of(name.clone(), p, v))
        .collect();
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors).map_err(io)?;
    let modules: Vec<String> = opts
        .targets
        .iter()
        .filter_map(|t| hf_name(config, &format!("blk.0.{t}.weight")).ok())
        .filter_map(|n| {
            Some(
                n.trim_end_matches(".weight")
                    .rsplit('.')
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    let adapter_config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": opts.rank,
        "lora_alpha": opts.alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
    });
    let text = serde_json::to_string_pretty(&adapter_config).expect("plain data");
    std::fs::write(dir.join("adapter_config.json"), text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rows_pair_as_llama_cpp_permutes_them_and_back() {
        // Two heads of 4 dims, one column: rotate-half rows [a0 a1 b0 b1] become [a0 b0 a1 b1].
        let w = [0.0, 1.0, 10.0, 11.0, 100.0, 101.0, 110.0, 111.0];
        let paired = pair_rope_rows(&w, 1, 4, false);
        assert_eq!(paired, [0.0, 10.0, 1.0, 11.0, 100.0, 110.0, 101.0, 111.0]);
        assert_eq!(pair_rope_rows(&paired, 1, 4, true), w);
    }
}
