//! Re-encoding a GGUF model to another weight type, as llama.cpp's `llama-quantize
//! --pure` does: every 2-D weight matrix to the target type (or llama.cpp's fallback when
//! its rows do not divide into the target's blocks), 1-D tensors (norms, biases) to F32,
//! all metadata copied with `general.file_type` updated.

use super::{GgufError, TensorInfo};
use crate::dtype::DType;

/// What happened to one tensor, reported as it is written.
#[derive(Debug)]
pub struct TensorReport<'a> {
    /// Position in the file (0-based) and the number of tensors.
    pub index: usize,
    pub count: usize,
    pub name: &'a str,
    pub dims: &'a [u64],
    pub from: DType,
    pub to: DType,
    /// Why `to` is not the requested type, when it is not.
    pub note: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Totals of a [`quantize_file`] run.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeSummary {
    pub tensors: usize,
    /// Tensors whose bytes changed type (the others were copied).
    pub converted: usize,
    /// Weight matrices that got another type than the one asked for.
    pub fallbacks: usize,
    /// Sizes of the input and output files.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeFileError {
    /// Reading the input or writing the output (the error names the file).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{0} weights cannot be stored in a GGUF file (it is a load-time format)")]
    UnsupportedTarget(DType),
}

/// llama.cpp's `LLAMA_FTYPE` for a file whose weights are mostly `dtype` (the K-quants
/// as their `_S` variants, the only ones a single type makes).
pub fn llama_file_type(dtype: DType) -> Option<u32> {
    dtype.format().llama_file_type
}

/// The type a tensor gets when a file is quantized to `target`, and why it is not
/// `target` when it is not.
pub fn plan_tensor(info: &TensorInfo, target: DType) -> (DType, Option<String>) {
    if !is_weight_matrix(info) {
        return if info.dims.len() == 1 {
            (DType::F32, None)
        } else {
            (info.dtype, Some("not a weight matrix: kept".into()))
        };
    }
    let cols = info.dims[0];
    let fits = |t: DType| cols.is_multiple_of(t.block_len() as u64);
    if fits(target) {
        return (target, None);
    }
    // llama.cpp's fallbacks for rows that do not divide into 256-value blocks, then F16.
    let fallback = target.format().quantize_fallback.unwrap_or(DType::F16);
    let to = if fits(fallback) { fallback } else { DType::F16 };
    let note = format!(
        "row length {cols} is not a multiple of the {target} block size {}: {to} instead",
        target.block_len()
    );
    (to, Some(note))
}

fn is_weight_matrix(info: &TensorInfo) -> bool {
    info.dims.len() >= 2 && info.name.ends_with("weight")
}

/// Writes `output`, a copy of the GGUF model `input` with its weights re-encoded as
/// `target` (see [`plan_tensor`]); tensors already of their planned type are copied.
/// `on_tensor` hears about each tensor as it is written.
#[cfg(feature = "native")]
pub fn quantize_file(
    input: &std::path::Path,
    output: &std::path::Path,
    target: DType,
    mut on_tensor: impl FnMut(&TensorReport),
) -> Result<QuantizeSummary, QuantizeFileError> {
    use super::{GgufErrorKind, GgufFile, GgufWriter, Value};
    use crate::quant::quantize::quantize_tensor_bytes;
    use std::borrow::Cow;
    let file_type = llama_file_type(target).ok_or(QuantizeFileError::UnsupportedTarget(target))?;
    let gguf = GgufFile::open(input)?;
    let out_name = output.display().to_string();
    let out_err = |kind| GgufError {
        file: out_name.clone(),
        kind,
    };
    let mut writer = GgufWriter::new();
    for (key, value) in &gguf.metadata {
        writer.set(key, value.clone()).map_err(out_err)?;
    }
    writer
        .set("general.file_type", Value::U32(file_type))
        .map_err(out_err)?;
    if target.is_quantized() {
        writer
            .set("general.quantization_version", Value::U32(2))
            .map_err(out_err)?;
    }
    let mut plans = Vec::with_capacity(gguf.tensors.len());
    let mut fallbacks = 0;
    for info in &gguf.tensors {
        let (to, note) = plan_tensor(info, target);
        fallbacks += usize::from(is_weight_matrix(info) && to != target);
        writer
            .add_tensor(&info.name, &info.dims, to)
            .map_err(out_err)?;
        plans.push((to, note));
    }
    let mut converted = 0;
    let count = gguf.tensors.len();
    writer.write_file(output, |i| {
        let info = &gguf.tensors[i];
        let (to, note) = &plans[i];
        let bytes: Cow<[u8]> = if *to == info.dtype {
            let start = info.offset as usize;
            Cow::Borrowed(&gguf.storage()[start..start + info.size_bytes as usize])
        } else {
            let w = gguf.tensor(&info.name).map_err(|e| e.kind)?;
            // Planned types divide the rows, so this cannot fail; say so if it does.
            let bytes = quantize_tensor_bytes(&w, *to).map_err(|e| GgufErrorKind::BadTensor {
                tensor: info.name.clone(),
                reason: e.to_string(),
            })?;
            converted += 1;
            Cow::Owned(bytes)
        };
        on_tensor(&TensorReport {
            index: i,
            count,
            name: &info.name,
            dims: &info.dims,
            from: info.dtype,
            to: *to,
            note: note.clone(),
            bytes_in: info.size_bytes,
            bytes_out: bytes.len() as u64,
        });
        Ok(bytes)
    })?;
    let bytes_out = std::fs::metadata(output)
        .map_err(|e| out_err(GgufErrorKind::Io(e)))?
        .len();
    Ok(QuantizeSummary {
        tensors: count,
        converted,
        fallbacks,
        bytes_in: gguf.storage().len() as u64,
        bytes_out,
    })
}
