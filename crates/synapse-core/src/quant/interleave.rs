//! The interleaved layout of a weight matrix: the blocks of 16 rows side by side, so that
//! a kernel reads one sequential stream and every vector it loads holds all 16 rows (lane
//! r: row r), with no per-matmul packing and no horizontal sums.
//!
//! Rows `16p .. 16p + 16` form panel p; its block b is one chunk at
//! `(p * blocks_per_row + b) * 16 * block_bytes`, so panel p takes exactly the bytes its
//! rows took before. A chunk holds first the codes, in 64-byte vectors whose lane r is
//! four consecutive code bytes of row r (vector j: code bytes 4j .. 4j + 4), then each
//! 2-byte header field (`d`, then `m` for Q4_1) of the 16 rows in row order.
//!
//! Only the bytes move: codes keep their meaning (Q4_0's byte j still holds values j and
//! j + 16), so a block is restored by the reverse shuffle.

use crate::dtype::DType;

/// Rows per panel.
pub const ROWS: usize = 16;

/// Whether `dtype` has an interleaved layout: 32-value formats made of f16 header fields
/// followed by their code bytes.
pub fn supports(dtype: DType) -> bool {
    dtype.format().panels == Some(super::format::Panels::Interleave)
}

/// Bytes of f16 fields before the codes of a `dtype` block.
fn header_bytes(dtype: DType) -> usize {
    match dtype {
        DType::Q4_1 => 4,
        _ => 2,
    }
}

/// Where the parts of row `r`'s block sit in its chunk, as `(offset in the block, offset
/// in the chunk)`: of every four code bytes, and of every 2-byte field.
fn pieces(
    dtype: DType,
    r: usize,
) -> (
    impl Iterator<Item = (usize, usize)>,
    impl Iterator<Item = (usize, usize)>,
) {
    let (block, header) = (dtype.block_bytes(), header_bytes(dtype));
    let code_bytes = block - header;
    let codes = (0..code_bytes / 4).map(move |j| (header + 4 * j, 64 * j + 4 * r));
    let fields = (0..header / 2).map(move |f| (2 * f, ROWS * (code_bytes + 2 * f) + 2 * r));
    (codes, fields)
}

/// Copies `N` bytes from `src[from..]` to `dst[to..]` (a fixed size: a move, not a call).
#[inline(always)]
fn put<const N: usize>(dst: &mut [u8], to: usize, src: &[u8], from: usize) {
    let bytes: [u8; N] = src[from..from + N].try_into().expect("N bytes");
    dst[to..to + N].copy_from_slice(&bytes);
}

/// Writes `rows` rows of `dtype` blocks (`bytes`, row after row) to `out` (as long) in
/// the interleaved layout.
///
/// # Panics
/// If `dtype` is not [`supports`]ed, `rows` is not a multiple of [`ROWS`] or the
/// lengths differ.
pub fn interleave(dtype: DType, bytes: &[u8], rows: usize, out: &mut [u8]) {
    assert!(supports(dtype), "{dtype} has no interleaved layout");
    assert!(
        rows.is_multiple_of(ROWS),
        "{rows} rows are not whole panels"
    );
    assert_eq!(
        bytes.len(),
        out.len(),
        "interleaving into a buffer of another size"
    );
    let block = dtype.block_bytes();
    let blocks = bytes.len() / rows.max(1) / block;
    for (i, src) in bytes.chunks_exact(block).enumerate() {
        let (row, b) = (i / blocks, i % blocks);
        let chunk = &mut out[((row / ROWS) * blocks + b) * ROWS * block..][..ROWS * block];
        let (codes, fields) = pieces(dtype, row % ROWS);
        codes.for_each(|(from, to)| put::<4>(chunk, to, src, from));
        fields.for_each(|(from, to)| put::<2>(chunk, to, src, from));
    }
}

/// Copies block `b` of row `row` out of interleaved `bytes` (rows of `blocks` blocks)
/// into `out`, one block long.
pub fn block_of(dtype: DType, bytes: &[u8], blocks: usize, row: usize, b: usize, out: &mut [u8]) {
    let block = dtype.block_bytes();
    let chunk = &bytes[((row / ROWS) * blocks + b) * ROWS * block..][..ROWS * block];
    let (codes, fields) = pieces(dtype, row % ROWS);
    codes.for_each(|(from, to)| put::<4>(out, from, chunk, to));
    fields.for_each(|(from, to)| put::<2>(out, from, chunk, to));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_hold_rows() {
        // Q8_0: row r's code bytes 4..8 of block 1 sit in lane r of the chunk's vector 1.
        let (rows, blocks, block) = (16, 2, 34);
        let bytes: Vec<u8> = (0..rows * blocks * block).map(|i| i as u8).collect();
        let mut packed = vec![0u8; bytes.len()];
        interleave(DType::Q8_0, &bytes, rows, &mut packed);
        let chunk = &packed[ROWS * block..];
        for r in 0..ROWS {
            let src = (r * blocks + 1) * block + 2 + 4;
            assert_eq!(chunk[64 + 4 * r..64 + 4 * r + 4], bytes[src..src + 4]);
            assert_eq!(chunk[512 + 2 * r..512 + 2 * r + 2], bytes[src - 6..src - 4]);
        }
    }
}
