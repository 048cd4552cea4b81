//! GGUF reader (versions 2 and 3): metadata, tensor infos and tensor data used in place;
//! and a writer (see [`GgufWriter`]) with [`quantize_file`] built on both.
//!
//! Every length, count and offset read from the file is checked against the bytes that
//! are actually there before it is used, so a truncated or corrupt file gives a
//! [`GgufError`] naming the file and the field or tensor, never a panic or a huge
//! allocation.

mod quantize;
mod write;

pub use quantize::*;
pub use write::*;

use crate::dtype::DType;
use crate::storage::Storage;
use crate::tensor::WeightTensor;
use std::collections::HashSet;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays nested deeper than this are rejected (real files nest at most once).
const MAX_ARRAY_DEPTH: usize = 4;
/// More dimensions than GGML supports.
const MAX_DIMS: u32 = 4;

#[derive(Debug, thiserror::Error)]
#[error("{file}: {kind}")]
pub struct GgufError {
    pub file: String,
    pub kind: GgufErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum GgufErrorKind {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a GGUF file (magic bytes {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (Synapse reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated while reading {field} at byte {offset}")]
    Truncated { field: String, offset: u64 },
    #[error("{field}: {count} is more than the file could hold")]
    CountTooLarge { field: String, count: u64 },
    #[error("{field}: invalid UTF-8")]
    InvalidUtf8 { field: String },
    #[error("metadata key {key:?}: unknown value type {ty}")]
    UnknownValueType { key: String, ty: u32 },
    #[error("metadata key {key:?}: arrays nested too deeply")]
    NestedTooDeep { key: String },
    #[error("metadata key {key:?} appears twice")]
    DuplicateKey { key: String },
    #[error("general.alignment = {0} is not a power of two")]
    BadAlignment(u64),
    #[error("tensor {tensor:?}: unsupported type {name} (id {id})")]
    UnknownTensorType {
        tensor: String,
        id: u32,
        name: &'static str,
    },
    #[error("tensor {tensor:?}: {reason}")]
    BadTensor { tensor: String, reason: String },
    #[error("tensor {tensor:?} appears twice")]
    DuplicateTensor { tensor: String },
    #[error("tensor {second:?}: data starts before the end of {first:?}'s, the tensor before it")]
    OverlappingTensors { first: String, second: String },
    #[error("tensor {tensor:?}: data at {start}..{end} lies outside the file's {len} bytes")]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("tensor {tensor:?} not found")]
    MissingTensor { tensor: String },
    #[error("metadata key {key:?}: {reason}")]
    BadValue { key: String, reason: String },
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type as u64, if it is non-negative.
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// GGUF's name for the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }
}

/// A tensor's entry in the file's table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    /// GGML order: `dims[0]` is the length of a row (the contiguous dimension).
    pub dims: Vec<u64>,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    pub size_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file whose tensor data stays in `storage`.
pub struct GgufFile {
    pub path: String,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
    storage: Arc<Storage>,
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    #[cfg(feature = "native")]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let err = |e: std::io::Error| GgufError {
            file: name.clone(),
            kind: GgufErrorKind::Io(e),
        };
        let file = std::fs::File::open(path).map_err(err)?;
        let storage = Storage::map(&file).map_err(err)?;
        GgufFile::parse(name, storage)
    }

    /// Parses GGUF bytes already in memory; `name` is used in error messages.
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    pub fn parse(name: String, storage: Arc<Storage>) -> Result<GgufFile, GgufError> {
        match Parser::new(&storage).file() {
            Ok(p) => Ok(GgufFile {
                path: name,
                version: p.version,
                metadata: p.metadata,
                tensors: p.tensors,
                alignment: p.alignment,
                data_offset: p.data_offset,
                storage,
            }),
            Err(kind) => Err(GgufError { file: name, kind }),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor `name` as a weight of `rows` rows of `dims[0]` values, where `rows` is
    /// the product of the other dimensions.
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    pub fn tensor(&self, name: &str) -> Result<WeightTensor, GgufError> {
        let info = self.tensor_info(name).ok_or_else(|| {
            self.error(GgufErrorKind::MissingTensor {
                tensor: name.to_string(),
            })
        })?;
        let cols = info.dims.first().copied().unwrap_or(1) as usize;
        let rows = info.dims.iter().skip(1).product::<u64>() as usize;
        let start = info.offset as usize;
        Ok(WeightTensor::new(
            info.name.clone(),
            info.dtype,
            rows,
            cols,
            self.storage.clone(),
            start..start + info.size_bytes as usize,
        ))
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    pub fn error(&self, kind: GgufErrorKind) -> GgufError {
        GgufError {
            file: self.path.clone(),
            kind,
        }
    }
}

struct Parsed {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_offset: u64,
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Result2<T> = std::result::Result<T, GgufErrorKind>;

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Parser<'a> {
        Parser { bytes, pos: 0 }
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> Result2<&'a [u8]> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(GgufErrorKind::Truncated {
                field: field(),
                offset: self.pos as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result2<[u8; N]> {
        Ok(self
            .take(N as u64, field)?
            .try_into()
            .expect("took N bytes"))
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn u32(&mut self, field: &dyn Fn() -> String) -> Result2<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn u64(&mut self, field: &dyn Fn() -> String) -> Result2<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A count of items of at least `min_item_bytes` each, checked against what is left.
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn count(&mut self, min_item_bytes: u64, field: &dyn Fn() -> String) -> Result2<u64> {
        let count = self.u64(field)?;
        let remaining = (self.bytes.len() - self.pos) as u64;
        if count.saturating_mul(min_item_bytes) > remaining {
            return Err(GgufErrorKind::CountTooLarge {
                field: field(),
                count,
            });
        }
        Ok(count)
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn string(&mut self, field: &dyn Fn() -> String) -> Result2<String> {
        let len = self.u64(field)?;
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufErrorKind::InvalidUtf8 { field: field() })
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result2<Value> {
        let field = || format!("value of metadata key {key:?}");
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array(&field)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(&field)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(&field)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&field)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&field)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&field)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&field)?)),
            7 => match self.array::<1>(&field)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufErrorKind::BadValue {
                        key: key.to_string(),
                        reason: format!("bool byte {b} is neither 0 nor 1"),
                    })
                }
            },
            8 => Value::String(self.string(&field)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufErrorKind::NestedTooDeep {
                        key: key.to_string(),
                    });
                }
                let item_ty = self.u32(&field)?;
                let min_item = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8..=12 => 8,
                    _ => {
                        return Err(GgufErrorKind::UnknownValueType {
                            key: key.to_string(),
                            ty: item_ty,
                        })
                    }
                };
                let n = self.count(min_item, &field)?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(item_ty, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(&field)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(&field)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&field)?)),
            _ => {
                return Err(GgufErrorKind::UnknownValueType {
                    key: key.to_string(),
                    ty,
                })
            }
        })
    }

    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn file(mut self) -> Result2<Parsed> {
        let magic: [u8; 4] = self.array(&|| "magic".into())?;
        if &magic != MAGIC {
            return Err(GgufErrorKind::BadMagic(magic));
        }
        let version = self.u32(&|| "version".into())?;
        if !(2..=3).contains(&version) {
            return Err(GgufErrorKind::UnsupportedVersion(version));
        }
        // A tensor info takes at least 8 (name length) + 4 + 4 + 8 bytes; a key-value pair 8 + 4 + 1.
        let n_tensors = self.count(24, &|| "tensor count".into())?;
        let n_kv = self.count(13, &|| "metadata count".into())?;

        let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
        // Duplicates are looked up by hash: a file of a million entries must not cost a
        // million squared comparisons.
        let mut keys = HashSet::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = self.string(&|| format!("key of metadata entry {i}"))?;
            let ty = self.u32(&|| format!("type of metadata key {key:?}"))?;
            let value = self.value(ty, &key, 0)?;
            if !keys.insert(key.clone()) {
                return Err(GgufErrorKind::DuplicateKey { key });
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                Some(a) => return Err(GgufErrorKind::BadAlignment(a)),
                None => {
                    return Err(GgufErrorKind::BadValue {
                        key: "general.alignment".into(),
                        reason: format!("expected an unsigned integer, found {}", v.type_name()),
                    })
                }
            },
        };

        let mut raw = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = self.string(&|| format!("name of tensor {i}"))?;
            let field = |what: &str| {
                let name = name.clone();
                let what = what.to_string();
                move || format!("{what} of tensor {name:?}")
            };
            let n_dims = self.u32(&field("dimension count"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufErrorKind::BadTensor {
                    tensor: name,
                    reason: format!("{n_dims} dimensions (expected 1 to {MAX_DIMS})"),
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.u64(&field("dimensions"))?);
            }
            let type_id = self.u32(&field("type"))?;
            let offset = self.u64(&field("data offset"))?;
            raw.push((name, dims, type_id, offset));
        }

        let data_offset = (self.pos as u64).next_multiple_of(alignment);
        let file_len = self.bytes.len() as u64;
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(raw.len());
        let mut names = HashSet::with_capacity(raw.len());
        for (name, dims, type_id, offset) in raw {
            let bad = |reason: String| GgufErrorKind::BadTensor {
                tensor: name.clone(),
                reason,
            };
            let Some(dtype) = DType::from_ggml_id(type_id) else {
                return Err(GgufErrorKind::UnknownTensorType {
                    tensor: name,
                    id: type_id,
                    name: DType::ggml_name(type_id),
                });
            };
            // No type packs more than 8 values in a byte. The row length and the row count
            // are bounded on their own too: with a zero dimension the product is 0, and a
            // row of 2^62 values would still overflow its size in bytes.
            let limit = file_len.saturating_mul(8);
            let bounded = |dims: &[u64]| {
                dims.iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                    .filter(|&n| n <= limit)
            };
            let too_large = || bad(format!("shape {dims:?} is larger than the file"));
            let (Some(_), Some(_), Some(rows)) =
                (bounded(&dims), bounded(&dims[..1]), bounded(&dims[1..]))
            else {
                return Err(too_large());
            };
            if dims[0] % dtype.block_len() as u64 != 0 {
                return Err(bad(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    dtype,
                    dtype.block_len()
                )));
            }
            let size_bytes = usize::try_from(dims[0])
                .ok()
                .and_then(|cols| dtype.row_bytes(cols))
                .and_then(|row| (row as u64).checked_mul(rows))
                .ok_or_else(too_large)?;
            if offset % alignment != 0 {
                return Err(bad(format!(
                    "data offset {offset} is not aligned to {alignment}"
                )));
            }
            let start = data_offset.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(size_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => {
                    if !names.insert(name.clone()) {
                        return Err(GgufErrorKind::DuplicateTensor { tensor: name });
                    }
                    tensors.push(TensorInfo {
                        name,
                        dtype,
                        dims,
                        offset: start,
                        size_bytes,
                    });
                }
                _ => {
                    return Err(GgufErrorKind::TensorOutOfBounds {
                        tensor: name,
                        start: data_offset.saturating_add(offset),
                        end: data_offset
                            .saturating_add(offset)
                            .saturating_add(size_bytes),
                        len: file_len,
                    })
                }
            }
        }
        // Data laid out in the table's order, as llama.cpp writes and requires it: so no
        // two tensors share bytes, which would alias each other's weights.
        if let Some(pair) = tensors
            .windows(2)
            .find(|pair| pair[1].offset < pair[0].offset + pair[0].size_bytes)
        {
            return Err(GgufErrorKind::OverlappingTensors {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
        Ok(Parsed {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }
}
