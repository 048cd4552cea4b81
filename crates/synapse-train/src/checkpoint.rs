//! Checkpoints: a training run's weights as a Hugging Face model directory (config.json,
//! model.safetensors), which the engine, transformers and the next run all load, plus the
//! optimizer's moments and the run's position, so that a resumed run continues exactly.

use crate::autodiff::Param;
use crate::optim::AdamW;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use synapse_inference::hf::safetensors::SafetensorsFile;
use synapse_inference::ModelConfig;

/// A tensor to write: its name, shape, and f32 values.
pub struct Tensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: &'a [f32],
}

impl<'a> Tensor<'a> {
    /// A parameter under `name`: a vector as `[len]`, a matrix as `[rows, cols]`.
    pub fn of(name: String, p: &'a Param, values: &'a [f32]) -> Tensor<'a> {
        let shape = match p.is_vector() {
            true => vec![p.cols],
            false => vec![p.rows, p.cols],
        };
        Tensor {
            name,
            shape,
            values,
        }
    }
}

/// Writes `tensors` (f32) as a safetensors file, through a temporary file that replaces
/// `path` only once complete.
pub fn write_safetensors(path: &Path, tensors: &[Tensor]) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for t in tensors {
        let end = offset + t.values.len() * 4;
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "writer": "synapse"}),
    );
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    // The data starts 8-aligned, as the format asks.
    json.resize(json.len().next_multiple_of(8), b' ');
    let partial = path.with_extension("partial");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        for t in tensors {
            for v in t.values {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(partial, path)
}

/// Where a run is: what `trainer.json` holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    /// Training tokens seen.
    pub tokens: u64,
    /// The run's settings, as its command line gave them (a resumed run checks them).
    pub settings: serde_json::Value,
}

/// The Hugging Face name of a parameter of `config`'s family.
pub fn hf_name(config: &ModelConfig, name: &str) -> Result<String, String> {
    let family = synapse_inference::model::FAMILIES
        .iter()
        .find(|f| f.name == config.architecture)
        .ok_or_else(|| format!("no family {}", config.architecture))?;
    family
        .hf_names
        .map(name)
        .ok_or_else(|| format!("{name} has no Hugging Face name in {}", family.name))
}

/// Saves the model's parameters (with `config_json`), AdamW's state and `progress` in
/// `dir`.
pub fn save(
    dir: &Path,
    config: &ModelConfig,
    config_json: &str,
    params: &[Param],
    adam: &AdamW,
    progress: &Progress,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join("config.json"), config_json).map_err(io)?;
    let weights = params
        .iter()
        .map(|p| Ok(Tensor::of(hf_name(config, &p.name)?, p, &p.value)))
        .collect::<Result<Vec<_>, String>>()?;
    write_safetensors(&dir.join("model.safetensors"), &weights).map_err(io)?;
    let moments: Vec<Tensor> = params
        .iter()
        .zip(&adam.moments)
        .filter(|(_, (m, _))| !m.is_empty())
        .flat_map(|(p, (m, v))| {
            [
                Tensor::of(format!("{}.exp_avg", p.name), p, m),
                Tensor::of(format!("{}.exp_avg_sq", p.name), p, v),
            ]
        })
        .collect();
    write_safetensors(&dir.join("optimizer.safetensors"), &moments).map_err(io)?;
    let mut state = serde_json::to_value(progress).expect("plain data");
    state["adam_steps"] = adam.steps.into();
    let text = serde_json::to_string_pretty(&state).expect("plain data");
    std::fs::write(dir.join("trainer.json"), text).map_err(io)
}

/// Reads back what [`save`] wrote into `adam` (the weights come with the model, loaded
/// from `dir` as a Hugging Face directory); returns the run's progress.
pub fn resume(dir: &Path, params: &[Param], adam: &mut AdamW) -> Result<Progress, String> {
    let path = dir.join("trainer.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let progress: Progress =
        serde_json::from_value(state.clone()).map_err(|e| format!("{}: {e}", path.display()))?;
    adam.steps = state["adam_steps"].as_i64().unwrap_or(0) as i32;
    let file =
        SafetensorsFile::open(dir.join("optimizer.safetensors")).map_err(|e| e.to_string())?;
    adam.moments = params
        .iter()
        .map(|p| {
            let moment = |kind: &str| -> Result<Vec<f32>, String> {
                let name = format!("{}.{kind}", p.name);
                match file.names().any(|n| n == name) {
                    true => Ok(file.tensor(&name).map_err(|e| e.to_string())?.to_f32()),
                    false => Ok(Vec::new()),
                }
            };
            Ok((moment("exp_avg")?, moment("exp_avg_sq")?))
        })
        .collect::<Result<_, String>>()?;
    Ok(progress)
}

/// The run's settings that must not change on resuming, as `BTreeMap` for a stable order.
pub fn settings(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let map: BTreeMap<&str, serde_json::Value> = pairs.iter().cloned().collect();
    serde_json::to_value(map).expect("plain data")
}
