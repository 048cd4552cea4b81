//! Hugging Face checkpoints: safetensors weights (single file or sharded with an index),
//! `config.json` and `generation_config.json`.

pub mod config;
pub mod safetensors;

pub use safetensors::{SafetensorsFile, TensorInfo};

use crate::generation::sampler::GenerationConfig;
use crate::model::weights::TensorSource;
use crate::model::Family;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use synapse_core::{Storage, WeightTensor};

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file of {len} bytes is too short for the 8-byte header length")]
    Truncated { path: String, len: u64 },
    #[error("{path}: header of {header_len} bytes runs past the end of the {file_len}-byte file")]
    HeaderOutOfBounds {
        path: String,
        header_len: u64,
        file_len: u64,
    },
    #[error("{path}: header of {header_len} bytes is larger than the {limit} bytes a safetensors header may take")]
    HeaderTooLarge {
        path: String,
        header_len: u64,
        limit: u64,
    },
    #[error("{path}: invalid JSON: {reason}")]
    BadJson { path: String, reason: String },
    #[error("{path}: field {field:?}: {reason}")]
    BadField {
        path: String,
        field: String,
        reason: String,
    },
    #[error("{path}: tensor {tensor:?}: {reason}")]
    BadTensor {
        path: String,
        tensor: String,
        reason: String,
    },
    #[error(
        "{path}: tensor {tensor:?} has dtype {dtype}; Synapse loads F32, F16 and BF16 weights"
    )]
    UnsupportedDType {
        path: String,
        tensor: String,
        dtype: String,
    },
    #[error("{path}: tensor {tensor:?}: data at {start}..{end} lies outside the {len}-byte data section")]
    OutOfBounds {
        path: String,
        tensor: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{path}: tensor {tensor:?}: shape {shape:?} of {dtype} needs {expected_bits} bits but data_offsets span {found} bytes")]
    SizeMismatch {
        path: String,
        tensor: String,
        dtype: &'static str,
        shape: Vec<usize>,
        expected_bits: u64,
        found: u64,
    },
    #[error(
        "{path}: tensor {tensor:?} has shape {shape:?}; only 1-D and 2-D weights are supported"
    )]
    UnsupportedRank {
        path: String,
        tensor: String,
        shape: Vec<usize>,
    },
    #[error("{path}: tensor {tensor:?} not found")]
    MissingTensor { path: String, tensor: String },
    #[error("{path}: tensor {tensor:?} is in both {first} and {second}")]
    DuplicateTensor {
        path: String,
        tensor: String,
        first: String,
        second: String,
    },
    #[error("{path}: shard {shard:?} (holding tensor {tensor:?}) cannot be read: {source}")]
    MissingShard {
        path: String,
        shard: String,
        tensor: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: no {SINGLE}, no {INDEX} and {found} other *.safetensors files (need exactly one)"
    )]
    NoWeights { path: String, found: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The weights of a checkpoint, possibly spread over several safetensors shards.
pub struct Checkpoint {
    path: String,
    files: Vec<SafetensorsFile>,
    /// Tensor name to index in `files`.
    tensors: BTreeMap<String, usize>,
}

impl Checkpoint {
    /// Opens the weights in `dir`: `model.safetensors`, else the shards that
    /// `model.safetensors.index.json` names, else the directory's only `*.safetensors` file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint> {
        let dir = dir.as_ref();
        let path = dir.display().to_string();
        if dir.join(SINGLE).exists() {
            return Checkpoint::from_files(path, vec![SafetensorsFile::open(dir.join(SINGLE))?]);
        }
        if dir.join(INDEX).exists() {
            return Checkpoint::open_index(&dir.join(INDEX));
        }
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            if entry
                .file_name()
                .to_string_lossy()
                .ends_with(".safetensors")
            {
                found.push(entry.path());
            }
        }
        match &found[..] {
            [file] => Checkpoint::from_files(path, vec![SafetensorsFile::open(file)?]),
            _ => Err(Error::NoWeights {
                path,
                found: found.len(),
            }),
        }
    }

    /// A checkpoint over files already opened (e.g. from bytes on wasm); every tensor
    /// name must appear in exactly one file. `path` is used in error messages.
    pub fn from_files(path: impl Into<String>, files: Vec<SafetensorsFile>) -> Result<Checkpoint> {
        let path = path.into();
        let mut tensors: BTreeMap<String, usize> = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.names() {
                if let Some(&first) = tensors.get(name) {
                    return Err(Error::DuplicateTensor {
                        path,
                        tensor: name.to_string(),
                        first: files[first].path().to_string(),
                        second: file.path().to_string(),
                    });
                }
                tensors.insert(name.to_string(), i);
            }
        }
        Ok(Checkpoint {
            path,
            files,
            tensors,
        })
    }

    /// Opens each shard the index's `weight_map` names once; every mapped tensor must be
    /// in its shard. Tensors a shard holds but the map does not name are not exposed.
    fn open_index(index: &Path) -> Result<Checkpoint> {
        let path = index.display().to_string();
        let json = read_json(index)?;
        let bad = |field: String, reason: &str| Error::BadField {
            path: path.clone(),
            field,
            reason: reason.to_string(),
        };
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("weight_map".into(), "missing or not an object"))?;
        let dir = index.parent().unwrap_or(Path::new(""));
        let mut files: Vec<SafetensorsFile> = Vec::new();
        let mut shard_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (tensor, shard) in map {
            let field = || format!("weight_map.{tensor}");
            let shard = shard.as_str().ok_or_else(|| bad(field(), "not a string"))?;
            // Shards must sit next to the index: no paths out of the directory.
            if shard.is_empty() || shard.contains(['/', '\\']) || shard == ".." {
                return Err(bad(field(), "shard is not a plain file name"));
            }
            let i = match shard_index.get(shard) {
                Some(&i) => i,
                None => {
                    let shard_path = dir.join(shard);
                    if let Err(source) = std::fs::metadata(&shard_path) {
                        return Err(Error::MissingShard {
                            path,
                            shard: shard.to_string(),
                            tensor: tensor.clone(),
                            source,
                        });
                    }
                    files.push(SafetensorsFile::open(shard_path)?);
                    shard_index.insert(shard, files.len() - 1);
                    files.len() - 1
                }
            };
            if !files[i].contains(tensor) {
                return Err(Error::MissingTensor {
                    path: files[i].path().to_string(),
                    tensor: tensor.clone(),
                });
            }
            tensors.insert(tensor.clone(), i);
        }
        Ok(Checkpoint {
            path,
            files,
            tensors,
        })
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.file(name)?.info(name)
    }

    /// See [`SafetensorsFile::tensor`].
    pub fn tensor(&self, name: &str) -> Result<WeightTensor> {
        self.file(name)?.tensor(name)
    }

    fn file(&self, name: &str) -> Result<&SafetensorsFile> {
        match self.tensors.get(name) {
            Some(&i) => Ok(&self.files[i]),
            None => Err(Error::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            }),
        }
    }
}

/// An owned copy of `w` with rows and columns swapped (GPT-2's Conv1D stores weights
/// as [in, out] where Synapse wants [out, in]).
///
/// Panics for block-quantized dtypes, whose rows cannot be split into single values.
pub fn transposed(w: &WeightTensor) -> WeightTensor {
    assert!(
        !w.dtype.is_quantized(),
        "cannot transpose {w:?}: quantized blocks"
    );
    let size = w.dtype.block_bytes();
    let (rows, cols) = (w.rows, w.cols);
    let src = w.bytes();
    let mut out = vec![0u8; src.len()];
    // Tiles keep both the reads and the writes within a few cache lines.
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    let s = (r * cols + c) * size;
                    let d = (c * rows + r) * size;
                    out[d..d + size].copy_from_slice(&src[s..s + size]);
                }
            }
        }
    }
    let len = out.len();
    WeightTensor::new(
        w.name.clone(),
        w.dtype,
        cols,
        rows,
        Storage::from_vec(out),
        0..len,
    )
}

/// A Hugging Face checkpoint, read through a family's name mapping.
pub struct HfSource<'a> {
    pub checkpoint: &'a Checkpoint,
    pub family: &'static Family,
    pub origin: String,
}

impl TensorSource for HfSource<'_> {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn tensor(
        &self,
        name: &str,
        _rows: usize,
        _cols: usize,
    ) -> crate::Result<Option<WeightTensor>> {
        let Some(hf_name) = self.family.hf_names.map(name) else {
            return Ok(None);
        };
        if !self.checkpoint.contains(&hf_name) {
            return Ok(None);
        }
        let w = self.checkpoint.tensor(&hf_name)?;
        let conv1d = self.family.hf_transposed && name.starts_with("blk.") && w.rows > 1;
        Ok(Some(match conv1d {
            true => transposed(&w),
            false => w,
        }))
    }

    fn norm_offset(&self) -> f32 {
        self.family.hf_norm_offset
    }

    fn file_name(&self, name: &str) -> String {
        self.family
            .hf_names
            .map(name)
            .unwrap_or_else(|| name.to_string())
    }
}

impl GenerationConfig {
    /// Reads the fields from a parsed JSON object; absent and `null` fields are `None`.
    /// `path` is used in error messages.
    pub fn from_json(path: &str, json: &Value) -> Result<GenerationConfig> {
        let token = |v: &Value| v.as_u64().and_then(|id| u32::try_from(id).ok());
        let number = |v: &Value| v.as_f64().map(|x| x as f32);
        let ids = |v: &Value| match v {
            Value::Array(ids) => ids.iter().map(token).collect(),
            v => token(v).map(|id| vec![id]),
        };
        let count = |v: &Value| v.as_u64().and_then(|k| usize::try_from(k).ok());
        let field = |name, expected| Field {
            path,
            json,
            name,
            expected,
        };
        Ok(GenerationConfig {
            eos_token_ids: field("eos_token_id", "a token id or a list of them")
                .read(ids)?
                .unwrap_or_default(),
            bos_token_id: field("bos_token_id", "a token id").read(token)?,
            do_sample: field("do_sample", "a boolean").read(Value::as_bool)?,
            temperature: field("temperature", "a number").read(number)?,
            top_k: field("top_k", "a non-negative integer").read(count)?,
            top_p: field("top_p", "a number").read(number)?,
            repetition_penalty: field("repetition_penalty", "a number").read(number)?,
        })
    }
}

/// An optional field of a JSON object, for reading with a typed error.
struct Field<'a> {
    path: &'a str,
    json: &'a Value,
    name: &'a str,
    expected: &'a str,
}

impl Field<'_> {
    /// `None` when the field is absent or `null`.
    fn read<T>(&self, conv: impl Fn(&Value) -> Option<T>) -> Result<Option<T>> {
        match self.json.get(self.name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => conv(v).map(Some).ok_or_else(|| Error::BadField {
                path: self.path.to_string(),
                field: self.name.to_string(),
                reason: format!("expected {}, found {v}", self.expected),
            }),
        }
    }
}

/// A Hugging Face model directory: `config.json` (required), `generation_config.json`
/// (optional) and the safetensors weights (opened by [`HfDir::checkpoint`]).
#[derive(Clone, Debug)]
pub struct HfDir {
    pub dir: PathBuf,
    pub config: Value,
    /// From `generation_config.json`, or when that is absent from `config.json`'s own
    /// token ids and sampling fields (as transformers does for older checkpoints).
    pub generation: GenerationConfig,
}

impl HfDir {
    pub fn open(dir: impl AsRef<Path>) -> Result<HfDir> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = dir.join("config.json");
        let config = read_json(&config_path)?;
        if !config.is_object() {
            return Err(Error::BadJson {
                path: config_path.display().to_string(),
                reason: "not a JSON object".to_string(),
            });
        }
        let gen_path = dir.join("generation_config.json");
        let generation = if gen_path.exists() {
            let json = read_json(&gen_path)?;
            GenerationConfig::from_json(&gen_path.display().to_string(), &json)?
        } else {
            GenerationConfig::from_json(&config_path.display().to_string(), &config)?
        };
        Ok(HfDir {
            dir,
            config,
            generation,
        })
    }

    pub fn checkpoint(&self) -> Result<Checkpoint> {
        Checkpoint::open(&self.dir)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let name = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: name(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadJson {
        path: name(),
        reason: e.to_string(),
    })
}
