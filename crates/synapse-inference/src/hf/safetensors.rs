//! Reader for the safetensors format: an 8-byte little-endian header length, a JSON header
//! mapping tensor names to `{dtype, shape, data_offsets}`, then the raw tensor bytes.
//!
//! Every entry is checked against the file before any tensor is viewed, so a truncated
//! or corrupt file gives an [`Error`] naming the file and tensor, never a panic.

use super::{Error, Result};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use synapse_core::{DType, Storage, WeightTensor};

/// The dtypes the format defines: name, bits per element, and the Synapse dtype for the
/// ones Synapse computes in. Sizes are needed to validate tensors Synapse never loads
/// (e.g. an I64 `position_ids` buffer), so the file still opens.
const DTYPES: &[(&str, u64, Option<DType>)] = &[
    ("F32", 32, Some(DType::F32)),
    ("F16", 16, Some(DType::F16)),
    ("BF16", 16, Some(DType::BF16)),
    ("F64", 64, None),
    ("I64", 64, None),
    ("U64", 64, None),
    ("C64", 64, None),
    ("I32", 32, None),
    ("U32", 32, None),
    ("I16", 16, None),
    ("U16", 16, None),
    ("I8", 8, None),
    ("U8", 8, None),
    ("BOOL", 8, None),
    ("F8_E4M3", 8, None),
    ("F8_E5M2", 8, None),
    ("F8_E8M0", 8, None),
    ("F6_E2M3", 6, None),
    ("F6_E3M2", 6, None),
    ("F4", 4, None),
];

/// Most bytes of a header, as in the `safetensors` library.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor's entry in the header, validated against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// The dtype as the file names it ("BF16", "I64", ...).
    pub dtype_name: &'static str,
    /// `None` for dtypes Synapse does not compute in; [`SafetensorsFile::tensor`] rejects those.
    pub dtype: Option<DType>,
    pub shape: Vec<usize>,
    /// Byte range of the data within the whole file.
    pub range: Range<usize>,
}

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// A parsed safetensors file whose tensor data stays in its storage (a memory map on
/// native targets).
pub struct SafetensorsFile {
    path: String,
    storage: Arc<Storage>,
    /// Sorted by name.
    tensors: Vec<TensorInfo>,
}

impl SafetensorsFile {
    /// Opens and parses the file at `path`: memory-mapped with the `native` feature,
    /// read into memory otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let io = |source| Error::Io {
            path: name.clone(),
            source,
        };
        #[cfg(feature = "native")]
        let storage = Storage::map(&std::fs::File::open(path).map_err(io)?).map_err(io)?;
        #[cfg(not(feature = "native"))]
        let storage = Storage::from_vec(std::fs::read(path).map_err(io)?);
        SafetensorsFile::parse(name, storage)
    }

    /// Parses a file already in memory; `name` is used in error messages.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<SafetensorsFile> {
        SafetensorsFile::parse(name.into(), Storage::from_vec(bytes))
    }

    /// Parses safetensors bytes held by `storage`; `path` is used in error messages.
    pub fn parse(path: String, storage: Arc<Storage>) -> Result<SafetensorsFile> {
        let file_len = storage.len() as u64;
        let Some(len_bytes) = storage.get(..8) else {
            return Err(Error::Truncated {
                path,
                len: file_len,
            });
        };
        let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        if header_len > file_len - 8 {
            return Err(Error::HeaderOutOfBounds {
                path,
                header_len,
                file_len,
            });
        }
        // The format's own limit (the `safetensors` library refuses longer headers): JSON
        // parsed into values takes several times its bytes.
        if header_len > MAX_HEADER_BYTES {
            return Err(Error::HeaderTooLarge {
                path,
                header_len,
                limit: MAX_HEADER_BYTES,
            });
        }
        let data_start = 8 + header_len as usize;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&storage[8..data_start]).map_err(|e| Error::BadJson {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let data_len = file_len - data_start as u64;
        let mut tensors = Vec::with_capacity(header.len());
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let info = validate(&path, name, value, data_len, file_len)?;
            tensors.push(TensorInfo {
                range: info.range.start + data_start..info.range.end + data_start,
                ..info
            });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SafetensorsFile {
            path,
            storage,
            tensors,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.find(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })
    }

    /// Tensor `name` as a weight viewing the file's bytes: shape `[rows, cols]`, or
    /// `[n]` as one row of `n`. Data not aligned to its element size is copied.
    pub fn tensor(&self, name: &str) -> Result<WeightTensor> {
        let info = self.info(name)?;
        let dtype = info.dtype.ok_or_else(|| Error::UnsupportedDType {
            path: self.path.clone(),
            tensor: info.name.clone(),
            dtype: info.dtype_name.to_string(),
        })?;
        let (rows, cols) = match info.shape[..] {
            [] => (1, 1),
            [n] => (1, n),
            [rows, cols] => (rows, cols),
            _ => {
                return Err(Error::UnsupportedRank {
                    path: self.path.clone(),
                    tensor: info.name.clone(),
                    shape: info.shape.clone(),
                })
            }
        };
        // The header's byte count matched the element count; with a zero dimension that
        // count is 0 whatever the other one is, and a row too long to size is refused here.
        if dtype.row_bytes(cols).and_then(|b| b.checked_mul(rows)) != Some(info.range.len()) {
            return Err(Error::BadTensor {
                path: self.path.clone(),
                tensor: info.name.clone(),
                reason: format!("shape {:?} is too large", info.shape),
            });
        }
        // Storage starts 8-byte aligned, so the offset decides the alignment.
        let (storage, range) = if info.range.start.is_multiple_of(dtype.block_bytes()) {
            (self.storage.clone(), info.range.clone())
        } else {
            let bytes = self.storage[info.range.clone()].to_vec();
            (Storage::from_vec(bytes), 0..info.range.len())
        };
        Ok(WeightTensor::new(
            info.name.clone(),
            dtype,
            rows,
            cols,
            storage,
            range,
        ))
    }

    fn find(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tensors[i])
    }
}

/// Checks one header entry; the returned range is relative to the data section.
fn validate(
    path: &str,
    name: String,
    value: serde_json::Value,
    data_len: u64,
    file_len: u64,
) -> Result<TensorInfo> {
    let bad = |name: &str, reason: String| Error::BadTensor {
        path: path.to_string(),
        tensor: name.to_string(),
        reason,
    };
    let entry: Entry = serde_json::from_value(value).map_err(|e| bad(&name, e.to_string()))?;
    let Some(&(dtype_name, bits, dtype)) = DTYPES.iter().find(|d| d.0 == entry.dtype) else {
        return Err(Error::UnsupportedDType {
            path: path.to_string(),
            tensor: name,
            dtype: entry.dtype,
        });
    };
    let [start, end] = entry.data_offsets;
    if start > end || end > data_len {
        return Err(Error::OutOfBounds {
            path: path.to_string(),
            tensor: name,
            start,
            end,
            len: data_len,
        });
    }
    let shape = entry
        .shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>();
    let expected_bits = entry
        .shape
        .iter()
        .try_fold(bits, |acc, &d| acc.checked_mul(d));
    // No dtype packs more than 8 values in a byte; each dimension is bounded on its own,
    // since with a zero dimension the others do not change the byte count.
    let limit = file_len.saturating_mul(8);
    let (Some(shape), Some(expected_bits), true) = (
        shape,
        expected_bits,
        entry.shape.iter().all(|&d| d <= limit),
    ) else {
        return Err(bad(&name, format!("shape {:?} is too large", entry.shape)));
    };
    if expected_bits % 8 != 0 || expected_bits / 8 != end - start {
        return Err(Error::SizeMismatch {
            path: path.to_string(),
            tensor: name,
            dtype: dtype_name,
            shape,
            expected_bits,
            found: end - start,
        });
    }
    // `end <= data_len`, which fits in usize because the data is in memory.
    Ok(TensorInfo {
        name,
        dtype_name,
        dtype,
        shape,
        range: start as usize..end as usize,
    })
}
