//! The panel layout of the K-quants (Q4_K, Q5_K, Q6_K): the super-blocks of 8 rows side
//! by side, with every field arranged so that a 32-byte vector load holds 4 code bytes of
//! each of the 8 rows (lane r: row r), and the scales of a sub-block for all 8 rows are
//! one in-register shuffle away. A kernel then reads one sequential stream, decodes no
//! row's scales on its own, and ends with the 8 rows' results in the 8 lanes of one
//! vector, without horizontal sums.
//!
//! Rows `8p .. 8p + 8` form panel p; its super-block b is one chunk at
//! `(p * blocks_per_row + b) * 8 * block_bytes`, so the layout takes exactly the bytes the
//! rows took. Within a chunk, with `code(r, v)` the unsigned code of value v of row r:
//!
//! - **Q4_K, Q5_K**: `d` of the 8 rows (8 f16), then `dmin`; then the 8 scales and 8 mins
//!   of each row, 6 bits each, as four groups of 32 values (scales of sub-blocks 0..4,
//!   scales 4..8, mins 0..4, mins 4..8) in which row r's value for sub-block j is entry
//!   `4r + j % 4`: a 64-byte plane of their low 4 bits (group 0 in the low nibbles of
//!   bytes 0..32, group 1 in their high nibbles, groups 2 and 3 in bytes 32..64) and a
//!   32-byte plane of their top 2 bits (bits 2g, 2g + 1 of byte e for entry e of group g).
//!   Q5_K then has the fifth code bits: 32 bytes per sub-block j, whose byte `4r + i`
//!   holds in bits 2m and 2m + 1 those of `code(r, 32j + 8m + i)` and
//!   `code(r, 32j + 8m + 4 + i)`. Then the codes: vector `4j + m` (32 bytes) of sub-block j
//!   holds in byte `4r + i` the low 4 bits of `code(r, 32j + 8m + i)` (low nibble) and of
//!   `code(r, 32j + 8m + 4 + i)` (high nibble).
//! - **Q6_K**: `d` of the 8 rows; the 16 signed scales of each row, 8 bytes per sub-block
//!   j (byte r: row r's); the low 4 bits of the codes as Q4_K's, in vectors `2j + m` of
//!   the 16-value sub-blocks (values `16j + 8m + i` and `16j + 8m + 4 + i`); then their
//!   top 2 bits, 32 bytes per sub-block j, whose byte `4r + i` holds in bits 2k, 2k + 1
//!   those of `code(r, 16j + 4k + i)`.
//!
//! So vector v of a sub-block (its low nibbles for v even, high nibbles for v odd) pairs
//! with activation values `sub_len * j + 4v .. + 4`, the same four for every row.

use crate::dtype::DType;

/// Rows per panel.
pub const ROWS: usize = 8;

/// Whether `dtype` has the panel layout.
pub fn supports(dtype: DType) -> bool {
    dtype.format().panels == Some(super::format::Panels::KPanels)
}

/// Moves the bits of one row's super-block between its GGUF layout and its places in a
/// chunk (at row `r`): [`layout`] lists the moves once, for both ways. Destinations start
/// zeroed; moves OR bits into them.
enum Mover<'a> {
    IntoChunk {
        block: &'a [u8],
        chunk: &'a mut [u8],
    },
    IntoBlock {
        chunk: &'a [u8],
        block: &'a mut [u8],
    },
}

/// The little-endian u32 at `b[i..]`.
fn read_u32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// ORs `bits` into the little-endian u32 at `b[i..]`.
fn or_u32(b: &mut [u8], i: usize, bits: u32) {
    let value = read_u32(b, i) | bits;
    b[i..i + 4].copy_from_slice(&value.to_le_bytes());
}

impl Mover<'_> {
    /// Moves the bits `mask << at_shift` of the u32 at block byte `at` to `mask <<
    /// to_shift` of the u32 at chunk byte `to` (or back).
    #[inline(always)]
    fn word(&mut self, at: usize, at_shift: u32, to: usize, to_shift: u32, mask: u32) {
        match self {
            Mover::IntoChunk { block, chunk } => or_u32(
                chunk,
                to,
                ((read_u32(block, at) >> at_shift) & mask) << to_shift,
            ),
            Mover::IntoBlock { chunk, block } => or_u32(
                block,
                at,
                ((read_u32(chunk, to) >> to_shift) & mask) << at_shift,
            ),
        }
    }

    /// [`Mover::word`] for one byte.
    #[inline(always)]
    fn byte(&mut self, at: usize, at_shift: u32, to: usize, to_shift: u32, mask: u8) {
        match self {
            Mover::IntoChunk { block, chunk } => {
                chunk[to] |= ((block[at] >> at_shift) & mask) << to_shift
            }
            Mover::IntoBlock { chunk, block } => {
                block[at] |= ((chunk[to] >> to_shift) & mask) << at_shift
            }
        }
    }
}

/// Where every bit of row r's super-block goes in a `dtype` chunk (see the module
/// documentation), as moves of `m`.
fn layout(dtype: DType, r: usize, m: &mut Mover) {
    const NIBBLES: u32 = 0x0F0F_0F0F;
    for i in 0..2 {
        m.byte(d_at(dtype) + i, 0, 2 * r + i, 0, 0xFF);
    }
    match dtype {
        DType::Q4K | DType::Q5K => {
            for i in 0..2 {
                m.byte(2 + i, 0, 16 + 2 * r + i, 0, 0xFF);
            }
            // The 16 six-bit values (scales 0..8, mins 0..8) of scale_min_k4: where their
            // low 4 bits and their top 2 bits are in the 12 bytes at 4.
            for s in 0..16 {
                let (j, is_min) = (s % 8, s >= 8);
                let ((low_at, low_shift), (top_at, top_shift)) = match (j < 4, is_min) {
                    (true, false) => ((4 + j, 0), (4 + j, 4)),
                    (true, true) => ((8 + j, 0), (8 + j, 4)),
                    (false, false) => ((8 + j, 0), (j, 6)),
                    (false, true) => ((8 + j, 4), (4 + j, 6)),
                };
                let (g, entry) = (s / 4, 4 * r + s % 4);
                m.byte(
                    low_at,
                    low_shift,
                    32 + 32 * (g / 2) + entry,
                    4 * (g % 2) as u32,
                    0x0F,
                );
                m.byte(top_at, top_shift, 96 + entry, 2 * g as u32, 0x03);
            }
            let (qs, codes) = if dtype == DType::Q5K {
                (48, 384)
            } else {
                (16, 128)
            };
            for j in 0..8 {
                // Sub-block j is the low (j even) or high nibbles of code bytes 32(j / 2)...
                let (at, shift) = (qs + 32 * (j / 2), 4 * (j % 2) as u32);
                for v in 0..8 {
                    // ... and its vector v / 2 holds values 4v .. 4v + 4 in the low (v
                    // even) or high nibbles.
                    let to = codes + 32 * (4 * j + v / 2) + 4 * r;
                    m.word(at + 4 * v, shift, to, 4 * (v % 2) as u32, NIBBLES);
                    if dtype == DType::Q5K {
                        // Bit j of fifth-bit bytes 4v .. 4v + 4 to bit v.
                        m.word(
                            16 + 4 * v,
                            j as u32,
                            128 + 32 * j + 4 * r,
                            v as u32,
                            0x0101_0101,
                        );
                    }
                }
            }
        }
        DType::Q6K => {
            for j in 0..16 {
                m.byte(192 + j, 0, 16 + 8 * j + r, 0, 0xFF);
                for v in 0..4 {
                    // Values 16j + 4v .. + 4: 128h + 32k + l with l .. l + 4 consecutive.
                    let value = 16 * j + 4 * v;
                    let (h, k, l) = (value / 128, (value / 32) % 4, value % 32);
                    let low = 64 * h + l + 32 * (k % 2);
                    let to = 144 + 32 * (2 * j + v / 2) + 4 * r;
                    m.word(low, 4 * (k / 2) as u32, to, 4 * (v % 2) as u32, NIBBLES);
                    let to = 1168 + 32 * j + 4 * r;
                    m.word(
                        128 + 32 * h + l,
                        2 * k as u32,
                        to,
                        2 * v as u32,
                        0x0303_0303,
                    );
                }
            }
        }
        _ => unreachable!("{dtype} has no panel layout"),
    }
}

/// Where `d` is in a `dtype` block.
fn d_at(dtype: DType) -> usize {
    if dtype == DType::Q6K {
        208
    } else {
        0
    }
}

/// Writes `rows` rows of `dtype` super-blocks (`bytes`, row after row) to `out` (as long)
/// in the panel layout.
///
/// # Panics
/// If `dtype` is not [`supports`]ed, `rows` is not a multiple of [`ROWS`] or the lengths
/// differ.
pub fn to_panels(dtype: DType, bytes: &[u8], rows: usize, out: &mut [u8]) {
    assert!(supports(dtype), "{dtype} has no panel layout");
    assert!(
        rows.is_multiple_of(ROWS),
        "{rows} rows are not whole panels"
    );
    assert_eq!(bytes.len(), out.len(), "panels of another size");
    let size = dtype.block_bytes();
    let blocks = bytes.len() / rows.max(1) / size;
    out.fill(0);
    for (i, block) in bytes.chunks_exact(size).enumerate() {
        let (row, b) = (i / blocks, i % blocks);
        let chunk = &mut out[((row / ROWS) * blocks + b) * ROWS * size..][..ROWS * size];
        layout(dtype, row % ROWS, &mut Mover::IntoChunk { block, chunk });
    }
}

/// Copies super-block `b` of row `row` out of panel-layout `bytes` (rows of `blocks`
/// super-blocks) into `out`, one block long, as GGUF stores it.
pub fn block_of(dtype: DType, bytes: &[u8], blocks: usize, row: usize, b: usize, out: &mut [u8]) {
    let size = dtype.block_bytes();
    let chunk = &bytes[((row / ROWS) * blocks + b) * ROWS * size..][..ROWS * size];
    let block = &mut out[..size];
    block.fill(0);
    layout(dtype, row % ROWS, &mut Mover::IntoBlock { chunk, block });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::blocks::scale_min_k4;

    /// Bytes that are valid blocks of every K-quant (any bits are) and differ everywhere.
    fn blocks(dtype: DType, rows: usize, blocks: usize) -> Vec<u8> {
        crate::quant::tests::distinct_bytes(rows * blocks * dtype.block_bytes())
    }

    #[test]
    fn lanes_hold_rows() {
        // Row 5, super-block 1 of 2.
        let (rows, n_blocks, r) = (8, 2, 5);
        for dtype in [DType::Q4K, DType::Q5K, DType::Q6K] {
            let size = dtype.block_bytes();
            let bytes = blocks(dtype, rows, n_blocks);
            let mut panels = vec![0u8; bytes.len()];
            to_panels(dtype, &bytes, rows, &mut panels);
            let block = &bytes[(r * n_blocks + 1) * size..][..size];
            let chunk = &panels[8 * size..];
            // Code of value v, as the format's dequantization reads it.
            let code = |v: usize| -> u8 {
                match dtype {
                    DType::Q6K => {
                        let (h, k, l) = (v / 128, (v / 32) % 4, v % 32);
                        let low = (block[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                        low | (((block[128 + 32 * h + l] >> (2 * k)) & 3) << 4)
                    }
                    _ => {
                        let qs = if dtype == DType::Q5K { 48 } else { 16 };
                        let (sub, l) = (v / 32, v % 32);
                        let low = (block[qs + 32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0x0F;
                        let fifth = if dtype == DType::Q5K {
                            ((block[16 + l] >> sub) & 1) << 4
                        } else {
                            0
                        };
                        low | fifth
                    }
                }
            };
            let sub_len = if dtype == DType::Q6K { 16 } else { 32 };
            let (codes, high) = match dtype {
                DType::Q4K => (128, None),
                DType::Q5K => (384, Some(128)),
                _ => (144, Some(1168)),
            };
            for (j, v, i) in [(0, 0, 0), (3, 5, 1), (7, 3, 3), (2, 6, 2)] {
                // Q6_K's 16-value sub-blocks have 4 vectors.
                let v = v % (sub_len / 4);
                let byte = chunk[codes + 32 * (sub_len / 8 * j + v / 2) + 4 * r + i];
                let value = sub_len * j + 4 * v + i;
                let nibble = (byte >> (4 * (v % 2))) & 0x0F;
                let top = match (dtype, high) {
                    (DType::Q5K, Some(at)) => ((chunk[at + 32 * j + 4 * r + i] >> v) & 1) << 4,
                    (DType::Q6K, Some(at)) => {
                        ((chunk[at + 32 * j + 4 * r + i] >> (2 * v)) & 3) << 4
                    }
                    _ => 0,
                };
                assert_eq!(
                    nibble | top,
                    code(value),
                    "{dtype} sub-block {j} vector {v}"
                );
            }
            let d = if dtype == DType::Q6K {
                &block[208..210]
            } else {
                &block[..2]
            };
            assert_eq!(&chunk[2 * r..2 * r + 2], d, "{dtype} d");
            if dtype == DType::Q6K {
                assert_eq!(chunk[16 + 8 * 11 + r], block[192 + 11], "Q6_K scale 11");
            } else {
                let scales: &[u8; 12] = block[4..16].try_into().unwrap();
                // Sub-block 6: scale entry 4r + 2 of group 1, min of group 3.
                let six_bit = |g: usize| {
                    let e = 4 * r + 2;
                    let low = (chunk[32 + 32 * (g / 2) + e] >> (4 * (g % 2))) & 0x0F;
                    low | (((chunk[96 + e] >> (2 * g)) & 3) << 4)
                };
                assert_eq!((six_bit(1), six_bit(3)), scale_min_k4(6, scales), "{dtype}");
            }
        }
    }
}
