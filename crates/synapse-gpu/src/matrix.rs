//! Weight matrices in GPU memory, in their quantized form.

use crate::{Gpu, GpuError};
use half::f16;
use std::ops::Range;
use synapse_core::{DType, WeightTensor};
use wgpu::util::DeviceExt;

/// A weight matrix on the GPU: every block's codes (with a K-quant's packed sub-block
/// scales) as whole 32-bit words in `codes`, and its f16 scales (Q4_1's minimum, a
/// K-quant's dmin) widened to f32 in `scales`. F32 and F16 matrices are their values'
/// bits, two F16 values to a word.
pub struct GpuMatrix {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub(crate) codes: wgpu::Buffer,
    pub(crate) scales: wgpu::Buffer,
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

/// The codes and scales of `w`'s rows, as [`GpuMatrix`] keeps them.
fn split(w: &WeightTensor) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    let error = |reason: String| GpuError::BadShape {
        tensor: w.name.clone(),
        reason,
    };
    let layout = blocks(w.dtype).ok_or_else(|| GpuError::UnsupportedType {
        tensor: w.name.clone(),
        dtype: w.dtype,
    })?;
    if w.dtype == DType::F16 && w.cols % 2 == 1 {
        return Err(error(format!(
            "F16 rows of {} values: the GPU reads them in pairs",
            w.cols
        )));
    }
    let (mut codes, mut scales) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    for r in 0..w.rows {
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
        let (codes, mut scales) = split(w)?;
        // Bindings may not be empty.
        if scales.is_empty() {
            scales.push(0.0);
        }
        let storage = |label: &str, contents: &[u8]| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE,
                })
        };
        let code_bytes: Vec<u8> = codes.iter().flat_map(|c| c.to_le_bytes()).collect();
        let scale_bytes: Vec<u8> = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        Ok(GpuMatrix {
            name: w.name.clone(),
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            codes: storage(&w.name, &code_bytes),
            scales: storage(&w.name, &scale_bytes),
        })
    }
}
