//! Block-quantized formats: the weight blocks GGUF stores, the activation blocks the
//! integer kernels pair them with, and conversions to and from f32.

/// Declares block structs as GGML lays them out in bytes: `#[repr(C)]` plain data
/// (`Clone`, `Copy`, `Debug`) with public fields, each struct's size (`= N bytes`) checked
/// at compile time, since [`as_blocks`] and the kernels read raw bytes as these structs.
macro_rules! block_structs {
    ($($(#[$attr:meta])* pub struct $name:ident { $($field:ident: $ty:ty),* $(,)? }
        = $bytes:literal bytes;)*) => {$(
        $(#[$attr])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $(pub $field: $ty,)*
        }
        const _: () = assert!(std::mem::size_of::<$name>() == $bytes);
    )*};
}

pub mod activation;
pub mod blocks;
pub mod format;
pub mod interleave;
pub mod k_panels;
pub mod quantize;

use crate::dtype::DType;
use format::Panels;

/// Rows per panel of `dtype`'s interleaved layout, if it has one: [`interleave`] for the
/// 32-value formats the AVX-512 kernels read so, [`k_panels`] for the K-quants. None in
/// the wasm32 module, whose kernels all read rows: no tensor is interleaved there, and
/// the code moving blocks in and out of panels drops out of the browser's download.
pub fn panel_rows(dtype: DType) -> Option<usize> {
    if cfg!(target_arch = "wasm32") {
        return None;
    }
    dtype.format().panels.map(|panels| match panels {
        Panels::Interleave => interleave::ROWS,
        Panels::KPanels => k_panels::ROWS,
    })
}

/// Writes `rows` rows of `dtype` blocks (`bytes`, row after row) to `out` (as long) in
/// the interleaved layout of `dtype` (see [`panel_rows`]).
pub fn to_panels(dtype: DType, bytes: &[u8], rows: usize, out: &mut [u8]) {
    if k_panels::supports(dtype) {
        k_panels::to_panels(dtype, bytes, rows, out)
    } else {
        interleave::interleave(dtype, bytes, rows, out)
    }
}

/// Copies block `b` of row `row` out of interleaved `bytes` (rows of `blocks` blocks)
/// into `out`, one block long, as GGUF stores it.
pub fn panel_block(
    dtype: DType,
    bytes: &[u8],
    blocks: usize,
    row: usize,
    b: usize,
    out: &mut [u8],
) {
    if k_panels::supports(dtype) {
        k_panels::block_of(dtype, bytes, blocks, row, b, out)
    } else {
        interleave::block_of(dtype, bytes, blocks, row, b, out)
    }
}

/// A fixed-size block of quantized values with a byte layout shared with GGML; its
/// sizes are its [`Format`](format::Format)'s.
pub trait Block: format::Format + Copy {
    /// Writes the block's `BLOCK_LEN` values to `out`.
    fn dequantize(&self, out: &mut [f32]);
}

/// Views `bytes` as blocks. Panics if the length is not a whole number of blocks or the
/// bytes are misaligned: callers hand in rows whose size and alignment the loader checked.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let size = std::mem::size_of::<B>();
    assert_eq!(
        bytes.len() % size,
        0,
        "byte length is not a whole number of blocks"
    );
    assert_eq!(
        bytes.as_ptr() as usize % std::mem::align_of::<B>(),
        0,
        "misaligned block data"
    );
    // SAFETY: `B` is a `#[repr(C)]` plain-old-data block (every bit pattern is valid), the
    // length is a multiple of its size and the pointer is aligned for it, as checked above.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) }
}

/// Dequantizes one row stored as `dtype` into `out`, whose length is the row length.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(dtype.row_bytes(out.len()), Some(bytes.len()));
    (dtype.format().dequantize_row)(bytes, out)
}

/// An [`DType::Int8`] row's scale and codes.
#[inline]
pub fn int8_row(bytes: &[u8]) -> (f32, &[i8]) {
    let (scale, codes) = bytes.split_at(crate::dtype::INT8_ROW_HEADER);
    let scale = f32::from_le_bytes(scale.try_into().expect("4 scale bytes"));
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    let codes = unsafe { std::slice::from_raw_parts(codes.as_ptr().cast::<i8>(), codes.len()) };
    (scale, codes)
}

/// f16 bits to f32, branch-free so that it vectorises (subnormals, infinities and NaN
/// included).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let magnitude = h & 0x7fff;
    // Shifted into f32 place, the exponent is off by 127 - 15: multiplying by 2^112 fixes
    // it, exactly, for normals and subnormals alike.
    let scaled = (f32::from_bits(magnitude << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let bits = if magnitude >= 0x7c00 {
        0x7f80_0000 | (magnitude & 0x3ff) << 13
    } else {
        scaled
    };
    f32::from_bits(bits | (h & 0x8000) << 16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` bytes that differ from their neighbours everywhere (any bytes are valid blocks
    /// of the formats with panels: their fields take every bit pattern).
    pub(crate) fn distinct_bytes(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| (i * 7 + i / 251 + i / 65_536) as u8)
            .collect()
    }

    #[test]
    fn every_panel_block_comes_back_unchanged() {
        for dtype in DType::ALL.into_iter().filter(|&d| panel_rows(d).is_some()) {
            // Two blocks a row are enough to show the stride under Miri's slow interpreter.
            let blocks = if cfg!(miri) { 2 } else { 3 };
            let rows = 2 * panel_rows(dtype).unwrap();
            let size = dtype.block_bytes();
            let bytes = distinct_bytes(rows * blocks * size);
            let mut panels = vec![0u8; bytes.len()];
            to_panels(dtype, &bytes, rows, &mut panels);
            // Every bit lands somewhere: as many set bits as before.
            let ones = |b: &[u8]| b.iter().map(|x| x.count_ones()).sum::<u32>();
            assert_eq!(ones(&panels), ones(&bytes), "{dtype}: bits kept");
            let mut out = vec![0u8; size];
            for row in 0..rows {
                for b in 0..blocks {
                    panel_block(dtype, &panels, blocks, row, b, &mut out);
                    let start = (row * blocks + b) * size;
                    assert_eq!(
                        out,
                        bytes[start..start + size],
                        "{dtype} row {row} block {b}"
                    );
                }
            }
        }
    }
}
