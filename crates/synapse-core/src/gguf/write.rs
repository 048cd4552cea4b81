//! GGUF writer (version 3): metadata of every value type, then a tensor table, then the
//! tensors' data, each at an offset aligned to `general.alignment` (32 unless the
//! metadata sets it), as llama.cpp and gguf-py write files.

use super::{GgufErrorKind, Value, DEFAULT_ALIGNMENT, MAX_DIMS};
use crate::dtype::DType;
use std::borrow::Cow;
use std::io::Write;

/// A tensor declared to a [`GgufWriter`]; its data comes when the file is written.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    /// GGML order: `dims[0]` is the length of a row.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Bytes of data.
    pub size: u64,
}

/// Builds a GGUF file: metadata and tensor declarations first, then [`GgufWriter::write`]
/// streams the header and asks for each tensor's bytes in turn, so a whole model never
/// needs to be in memory at once.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorEntry>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Sets metadata `key` (replacing an earlier value in place, else appending).
    /// Arrays must hold items of one type; an empty array is written as an array of u8.
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), GgufErrorKind> {
        check_value(key, &value)?;
        if key == "general.alignment" {
            match value.as_u64() {
                Some(a) if a.is_power_of_two() => {}
                Some(a) => return Err(GgufErrorKind::BadAlignment(a)),
                None => {
                    return Err(GgufErrorKind::BadValue {
                        key: key.into(),
                        reason: format!(
                            "expected an unsigned integer, found {}",
                            value.type_name()
                        ),
                    })
                }
            }
        }
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        Ok(())
    }

    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// The data alignment: `general.alignment`, or 32.
    pub fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Declares a tensor of shape `dims` (GGML order) stored as `dtype`.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: DType,
    ) -> Result<&TensorEntry, GgufErrorKind> {
        let bad = |reason: String| GgufErrorKind::BadTensor {
            tensor: name.to_string(),
            reason,
        };
        if dtype.ggml_id().is_none() {
            return Err(bad(format!("{dtype} cannot be stored in a GGUF file")));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS as usize {
            return Err(bad(format!(
                "{} dimensions (expected 1 to {MAX_DIMS})",
                dims.len()
            )));
        }
        if !dims[0].is_multiple_of(dtype.block_len() as u64) {
            return Err(bad(format!(
                "row length {} is not a multiple of the {dtype} block size {}",
                dims[0],
                dtype.block_len()
            )));
        }
        let size = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| (n / dtype.block_len() as u64).checked_mul(dtype.block_bytes() as u64))
            .ok_or_else(|| bad(format!("shape {dims:?} is too large")))?;
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufErrorKind::DuplicateTensor {
                tensor: name.to_string(),
            });
        }
        self.tensors.push(TensorEntry {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            size,
        });
        Ok(self.tensors.last().expect("just pushed"))
    }

    /// Writes the file to `out`: the header, then the data of tensor `i` as `data(i)`
    /// returns it (in declaration order; it must be exactly the declared size).
    pub fn write<'d>(
        &self,
        out: &mut impl Write,
        mut data: impl FnMut(usize) -> Result<Cow<'d, [u8]>, GgufErrorKind>,
    ) -> Result<(), GgufErrorKind> {
        let alignment = self.alignment();
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut header, key);
            header.extend_from_slice(&type_id(value).to_le_bytes());
            put_value(&mut header, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            let id = t.dtype.ggml_id().expect("checked by add_tensor");
            header.extend_from_slice(&id.to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.size).next_multiple_of(alignment);
        }
        pad(&mut header, alignment);
        out.write_all(&header)?;
        let zeros = vec![0u8; alignment as usize];
        for (i, t) in self.tensors.iter().enumerate() {
            let bytes = data(i)?;
            if bytes.len() as u64 != t.size {
                return Err(GgufErrorKind::BadTensor {
                    tensor: t.name.clone(),
                    reason: format!("{} bytes of data, expected {}", bytes.len(), t.size),
                });
            }
            out.write_all(&bytes)?;
            let padding = t.size.next_multiple_of(alignment) - t.size;
            out.write_all(&zeros[..padding as usize])?;
        }
        out.flush()?;
        Ok(())
    }

    /// [`GgufWriter::write`] to the file `path`, through a temporary file beside it that
    /// replaces `path` only once complete (so `path` may be the file the data is read
    /// from). Errors name `path`.
    #[cfg(feature = "native")]
    pub fn write_file<'d>(
        &self,
        path: &std::path::Path,
        data: impl FnMut(usize) -> Result<Cow<'d, [u8]>, GgufErrorKind>,
    ) -> Result<(), super::GgufError> {
        let err = |kind| super::GgufError {
            file: path.display().to_string(),
            kind,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        let result = (|| {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            self.write(&mut out, data)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }
}

/// Rejects arrays whose items differ in type (GGUF arrays have one item type).
fn check_value(key: &str, value: &Value) -> Result<(), GgufErrorKind> {
    if let Value::Array(items) = value {
        if let Some(first) = items.first() {
            for item in items {
                if !same_type(first, item) {
                    return Err(GgufErrorKind::BadValue {
                        key: key.to_string(),
                        reason: format!(
                            "array mixes {} and {} items",
                            first.type_name(),
                            item.type_name()
                        ),
                    });
                }
                check_value(key, item)?;
            }
        }
    }
    Ok(())
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// GGUF's id of a value's type.
fn type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A value's payload (its type id is written by the caller, or once for an array's items).
fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(*v as u8),
        Value::String(s) => put_string(out, s),
        Value::Array(items) => {
            let item_type = items.first().map_or(0, type_id);
            out.extend_from_slice(&item_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment);
    out.resize(len as usize, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::storage::Storage;

    /// One value of every type, arrays of each, a nested array and an empty one.
    fn every_value() -> Vec<(String, Value)> {
        let scalars = vec![
            Value::U8(200),
            Value::I8(-100),
            Value::U16(60_000),
            Value::I16(-30_000),
            Value::U32(4_000_000_000),
            Value::I32(-2_000_000_000),
            Value::U64(u64::MAX - 1),
            Value::I64(i64::MIN + 1),
            Value::F32(-1.5e-7),
            Value::F64(std::f64::consts::PI),
            Value::Bool(true),
            Value::String("héllo, GGUF".into()),
        ];
        let mut out: Vec<(String, Value)> = scalars
            .iter()
            .map(|v| (format!("test.{}", v.type_name()), v.clone()))
            .collect();
        for v in &scalars {
            let array = Value::Array(vec![v.clone(), v.clone(), v.clone()]);
            out.push((format!("test.array.{}", v.type_name()), array));
        }
        out.push((
            "test.nested".into(),
            Value::Array(vec![
                Value::Array(vec![Value::I32(1), Value::I32(2)]),
                Value::Array(vec![]),
            ]),
        ));
        out.push(("test.empty".into(), Value::Array(vec![])));
        out.push(("test.bool_false".into(), Value::Bool(false)));
        out
    }

    fn written(writer: &GgufWriter, data: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        writer
            .write(&mut out, |i| Ok(Cow::Borrowed(&data[i][..])))
            .unwrap();
        out
    }

    #[test]
    fn the_reader_reads_back_exactly_what_was_written() {
        for alignment in [None, Some(64u32), Some(1)] {
            let mut w = GgufWriter::new();
            if let Some(a) = alignment {
                w.set("general.alignment", Value::U32(a)).unwrap();
            }
            for (k, v) in every_value() {
                w.set(&k, v).unwrap();
            }
            // Sizes that leave each tensor's end unaligned.
            let tensors = [
                ("a.weight", vec![64u64, 3], DType::Q8_0),
                ("b.bias", vec![7], DType::F32),
                ("c.weight", vec![256, 2, 1], DType::Q6K),
                ("d", vec![5, 1, 2, 3], DType::F16),
            ];
            let mut data = Vec::new();
            for (i, (name, dims, dtype)) in tensors.iter().enumerate() {
                let size = w.add_tensor(name, dims, *dtype).unwrap().size as usize;
                data.push((0..size).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>());
            }
            let bytes = written(&w, &data);
            let file = GgufFile::parse("round-trip".into(), Storage::from_vec(bytes)).unwrap();
            assert_eq!(file.version, 3);
            assert_eq!(file.metadata, w.metadata());
            assert_eq!(file.alignment, alignment.map_or(32, u64::from));
            assert_eq!(file.tensors.len(), tensors.len());
            for ((info, (name, dims, dtype)), want) in file.tensors.iter().zip(&tensors).zip(&data)
            {
                assert_eq!(
                    (&info.name[..], &info.dims, info.dtype),
                    (*name, dims, *dtype)
                );
                assert_eq!(info.offset % file.alignment, 0, "{name} is aligned");
                let start = info.offset as usize;
                assert_eq!(
                    &file.storage()[start..start + want.len()],
                    &want[..],
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn bad_tensors_and_values_are_errors() {
        let mut w = GgufWriter::new();
        assert!(matches!(
            w.add_tensor("x", &[100, 2], DType::Q4_0),
            Err(GgufErrorKind::BadTensor { .. })
        ));
        assert!(matches!(
            w.add_tensor("x", &[64], DType::Int8),
            Err(GgufErrorKind::BadTensor { .. })
        ));
        assert!(matches!(
            w.add_tensor("x", &[], DType::F32),
            Err(GgufErrorKind::BadTensor { .. })
        ));
        w.add_tensor("x", &[32], DType::F32).unwrap();
        assert!(matches!(
            w.add_tensor("x", &[32], DType::F32),
            Err(GgufErrorKind::DuplicateTensor { .. })
        ));
        assert!(matches!(
            w.set("general.alignment", Value::U32(48)),
            Err(GgufErrorKind::BadAlignment(48))
        ));
        assert!(matches!(
            w.set("k", Value::Array(vec![Value::U8(1), Value::I8(1)])),
            Err(GgufErrorKind::BadValue { .. })
        ));
        // Data of the wrong size names the tensor.
        let err = w
            .write(&mut Vec::new(), |_| Ok(Cow::Owned(vec![0u8; 3])))
            .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }
}
