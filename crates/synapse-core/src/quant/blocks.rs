//! The weight block formats GGUF stores, byte-for-byte as GGML lays them out, and their
//! dequantization. The float operations follow GGML's order so results are bit-identical.

use super::Block;
use crate::dtype::QK_K;
use half::f16;

block_structs! {
    /// 32 values: 4-bit codes q in 0..16, value = (q - 8) * d. Value j is in the low
    /// nibble of byte j of `qs`, value j + 16 in its high nibble.
    pub struct BlockQ4_0 { d: f16, qs: [u8; 16] } = 18 bytes;

    /// 32 values: 4-bit codes q, value = q * d + m.
    pub struct BlockQ4_1 { d: f16, m: f16, qs: [u8; 16] } = 20 bytes;

    /// 32 values: 5-bit codes (low nibbles as Q4_0, fifth bits in `qh`), value = (q - 16) * d.
    pub struct BlockQ5_0 { d: f16, qh: [u8; 4], qs: [u8; 16] } = 22 bytes;

    /// 32 values: 5-bit codes q, value = q * d + m.
    pub struct BlockQ5_1 { d: f16, m: f16, qh: [u8; 4], qs: [u8; 16] } = 24 bytes;

    /// 32 values: signed 8-bit codes, value = q * d.
    pub struct BlockQ8_0 { d: f16, qs: [i8; 32] } = 34 bytes;

    /// 256 values in 8 sub-blocks of 32, each with a 6-bit scale and min:
    /// value = d * scale * q - dmin * min. `scales` packs the eight 6-bit scales and eight
    /// 6-bit mins (see [`scale_min_k4`]); pairs of 32-value sub-blocks share 32 bytes of
    /// `qs`, the first in low nibbles.
    pub struct BlockQ4K { d: f16, dmin: f16, scales: [u8; 12], qs: [u8; QK_K / 2] } = 144 bytes;

    /// As Q4_K with a fifth bit per value in `qh`.
    pub struct BlockQ5K {
        d: f16, dmin: f16, scales: [u8; 12], qh: [u8; QK_K / 8], qs: [u8; QK_K / 2]
    } = 176 bytes;

    /// 256 values in 16 sub-blocks of 16 with signed 8-bit scales:
    /// value = d * scale * (q - 32), q being 6 bits (4 in `ql`, 2 in `qh`).
    pub struct BlockQ6K {
        ql: [u8; QK_K / 2], qh: [u8; QK_K / 4], scales: [i8; QK_K / 16], d: f16
    } = 210 bytes;
}

/// Unpacks the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block.
#[inline]
pub fn scale_min_k4(j: usize, scales: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// The 5-bit codes of values j and j + 16 of a Q5_0 or Q5_1 block: low nibbles as
/// Q4_0's, fifth bits in `qh` (bit j for value j).
#[inline]
fn codes_5bit(qs: &[u8; 16], qh: [u8; 4], j: usize) -> (u8, u8) {
    let qh = u32::from_le_bytes(qh);
    let high0 = (((qh >> j) << 4) & 0x10) as u8;
    let high1 = ((qh >> (j + 12)) & 0x10) as u8;
    ((qs[j] & 0x0F) | high0, (qs[j] >> 4) | high1)
}

impl BlockQ5_0 {
    /// The 5-bit codes of values j and j + 16.
    #[inline]
    pub fn codes(&self, j: usize) -> (u8, u8) {
        codes_5bit(&self.qs, self.qh, j)
    }
}

impl BlockQ5_1 {
    /// The 5-bit codes of values j and j + 16.
    #[inline]
    pub fn codes(&self, j: usize) -> (u8, u8) {
        codes_5bit(&self.qs, self.qh, j)
    }
}

/// The low and high nibble of a byte: in Q4_0/Q4_1 blocks, the codes of values j and
/// j + 16 from byte j.
#[inline(always)]
fn nibbles(byte: u8) -> (u8, u8) {
    (byte & 0x0F, byte >> 4)
}

/// Writes the 32 values of a Q4_0/Q4_1/Q5_0/Q5_1 block: `codes(j)` gives the codes of
/// values j and j + 16, `value` a code's value.
#[inline(always)]
fn dequantize_32(out: &mut [f32], codes: impl Fn(usize) -> (u8, u8), value: impl Fn(u8) -> f32) {
    for j in 0..16 {
        let (q0, q1) = codes(j);
        out[j] = value(q0);
        out[j + 16] = value(q1);
    }
}

// Dequantizing a whole block only happens at load time and for embedding rows (the
// matmuls dot the codes), so the browser build compiles it for size (see lib.rs).
impl Block for BlockQ4_0 {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        dequantize_32(out, |j| nibbles(self.qs[j]), |q| (q as i32 - 8) as f32 * d);
    }
}

impl Block for BlockQ4_1 {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        dequantize_32(out, |j| nibbles(self.qs[j]), |q| q as f32 * d + m);
    }
}

impl Block for BlockQ5_0 {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        dequantize_32(out, |j| self.codes(j), |q| (q as i32 - 16) as f32 * d);
    }
}

impl Block for BlockQ5_1 {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        dequantize_32(out, |j| self.codes(j), |q| q as f32 * d + m);
    }
}

impl Block for BlockQ8_0 {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
}

/// Writes the 256 values of a Q4_K or Q5_K block: each pair of 32-value sub-blocks
/// shares 32 bytes of `qs`, the first's low 4 bits in low nibbles; `high(pair, l)` gives
/// the fifth bits (16 or 0) of value l of the pair's two sub-blocks.
#[inline(always)]
fn dequantize_k4(
    (d, dmin): (f16, f16),
    scales: &[u8; 12],
    qs: &[u8; QK_K / 2],
    out: &mut [f32],
    high: impl Fn(usize, usize) -> (u8, u8),
) {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    for (pair, (q, y)) in qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let (sc0, m0) = scale_min_k4(2 * pair, scales);
        let (sc1, m1) = scale_min_k4(2 * pair + 1, scales);
        let (d0, min0) = (d * sc0 as f32, dmin * m0 as f32);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        for l in 0..32 {
            let (high0, high1) = high(pair, l);
            y[l] = d0 * ((q[l] & 0x0F) + high0) as f32 - min0;
            y[l + 32] = d1 * ((q[l] >> 4) + high1) as f32 - min1;
        }
    }
}

impl Block for BlockQ4K {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k4((self.d, self.dmin), &self.scales, &self.qs, out, |_, _| {
            (0, 0)
        });
    }
}

impl Block for BlockQ5K {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_k4(
            (self.d, self.dmin),
            &self.scales,
            &self.qs,
            out,
            |pair, l| {
                let (bit0, bit1) = (1u8 << (2 * pair), 1u8 << (2 * pair + 1));
                let high = |bit: u8| if self.qh[l] & bit != 0 { 16 } else { 0 };
                (high(bit0), high(bit1))
            },
        );
    }
}

impl BlockQ6K {
    /// The four signed 6-bit codes at offset `l` (0..32) of half `half` (0..2), for the
    /// values at `l`, `l + 32`, `l + 64` and `l + 96` of that half.
    #[inline]
    pub fn codes(&self, half: usize, l: usize) -> [i8; 4] {
        let ql = &self.ql[64 * half..];
        let qh = self.qh[32 * half + l];
        [
            ((ql[l] & 0x0F) | ((qh & 3) << 4)) as i8 - 32,
            ((ql[l + 32] & 0x0F) | (((qh >> 2) & 3) << 4)) as i8 - 32,
            ((ql[l] >> 4) | (((qh >> 4) & 3) << 4)) as i8 - 32,
            ((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4)) as i8 - 32,
        ]
    }
}

impl Block for BlockQ6K {
    #[cfg_attr(synapse_wasm_size, optimize(size))]
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (half, y) in out.chunks_exact_mut(128).enumerate() {
            let sc = &self.scales[8 * half..];
            for l in 0..32 {
                let is = l / 16;
                let q = self.codes(half, l);
                for (k, &qk) in q.iter().enumerate() {
                    y[l + 32 * k] = d * sc[is + 2 * k] as f32 * qk as f32;
                }
            }
        }
    }
}
