//! Weight matrices in GPU memory, in their quantized form.

use crate::{Gpu, GpuError};
use half::f16;
use std::ops::Range;
use synapse_core::{DType, WeightTensor};
use wgpu::util::DeviceExt;

/// A weight matrix on the GPU, in parts of whole rows, each one buffer no larger than the
/// device lets a kernel bind (a 1B model's output matrix can be larger).
pub struct GpuMatrix {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub(crate) parts: Vec<MatrixPart>,
}

/// Rows `rows` of a matrix: every block's codes (with a K-quant's packed sub-block scales)
/// as whole 32-bit words, then, from word `scales_start` on, the blocks' f16 scales (Q4_1's
/// minimum, a K-quant's dmin) widened to f32. F32 and F16 rows are their values' bits, two
/// F16 values to a word.
pub(crate) struct MatrixPart {
    pub rows: Range<usize>,
    pub words: wgpu::Buffer,
    pub scales_start: u32,
}

/// A block's layout in GGUF: its size, and where its f16 scales lie; the other bytes are
/// its codes.
struct Blocks {
    bytes: usize,
    scales: Range<usize>,
}

/// The weight types the kernels read, and their blocks' layouts (None: no blocks).
fn blocks(dtype: DType) -> Option<Option<Blocks>> {
    let layout = |bytes, scales| Some(Some(Blocks { bytes, scales }));
    match dtype {
        DType::F32 | DType::F16 => Some(None),
        DType::Q8_0 => layout(34, 0..2),
        DType::Q4_0 => layout(18, 0..2),
        DType::Q4_1 => layout(20, 0..4),
        DType::Q4K => layout(144, 0..4),
        DType::Q5K => layout(176, 0..4),
        DType::Q6K => layout(210, 208..210),
        _ => None,
    }
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
}

/// The words of rows `rows` of `w`, as a [`MatrixPart`] keeps them, and where the scales
/// start.
fn part_words(w: &WeightTensor, rows: Range<usize>) -> Result<(Vec<u32>, u32), GpuError> {
    let (mut words, scales) = split(w, rows)?;
    let scales_start = u32::try_from(words.len()).map_err(|_| GpuError::BadShape {
        tensor: w.name.clone(),
        reason: "over 2^32 words of codes".into(),
    })?;
    words.extend(scales.iter().map(|s| s.to_bits()));
    Ok((words, scales_start))
}

/// The codes and scales of rows `rows` of `w`.
fn split(w: &WeightTensor, rows: Range<usize>) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    let layout = blocks(w.dtype).ok_or_else(|| GpuError::UnsupportedType {
        tensor: w.name.clone(),
        dtype: w.dtype,
    })?;
    if w.dtype == DType::F16 && w.cols % 2 == 1 {
        return Err(GpuError::OddF16Row {
            tensor: w.name.clone(),
            cols: w.cols,
        });
    }
    let (mut codes, mut scales) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    for r in rows {
        let row = w.copy_row(r, &mut buf);
        match &layout {
            None => codes.extend(words(row)),
            Some(b) => {
                for block in row.chunks_exact(b.bytes) {
                    scales.extend(
                        block[b.scales.clone()]
                            .chunks_exact(2)
                            .map(|h| f16::from_le_bytes([h[0], h[1]]).to_f32()),
                    );
                    codes.extend(words(&block[..b.scales.start]));
                    codes.extend(words(&block[b.scales.end..]));
                }
            }
        }
    }
    Ok((codes, scales))
}

impl Gpu {
    /// Copies `w` (in any CPU layout) to the GPU; an error for a type without a kernel
    /// ([`GpuError::UnsupportedType`]).
    pub fn upload(&self, w: &WeightTensor) -> Result<GpuMatrix, GpuError> {
        let limits = self.device.limits();
        let max_bytes = limits
            .max_buffer_size
            .min(limits.max_storage_buffer_binding_size);
        self.upload_in_parts(w, max_bytes)
    }

    /// [`Gpu::upload`] in parts of at most `max_bytes` each (`upload` takes the device's
    /// binding limit).
    pub fn upload_in_parts(&self, w: &WeightTensor, max_bytes: u64) -> Result<GpuMatrix, GpuError> {
        let row_bytes = 4 * part_words(w, 0..w.rows.min(1))?.0.len() as u64;
        let rows_per_part = match max_bytes / row_bytes.max(1) {
            0 => {
                return Err(GpuError::BadShape {
                    tensor: w.name.clone(),
                    reason: format!(
                        "a row takes {row_bytes} bytes, more than the {max_bytes} this GPU binds"
                    ),
                })
            }
            n => n as usize,
        };
        let mut parts = Vec::new();
        for start in (0..w.rows).step_by(rows_per_part) {
            let rows = start..(start + rows_per_part).min(w.rows);
            let (words, scales_start) = part_words(w, rows.clone())?;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let words = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(&w.name),
                    contents: &bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                });
            parts.push(MatrixPart {
                rows,
                words,
                scales_start,
            });
        }
        Ok(GpuMatrix {
            name: w.name.clone(),
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            parts,
        })
    }
}
