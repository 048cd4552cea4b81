//! The weight block formats GGUF stores, byte-for-byte as GGML lays them out, and their
//! dequantization. The float operations follow GGML's order so results are bit-identical.

use super::Block;
use crate::dtype::QK_K;
use half::f16;
use std::mem::size_of;

/// 32 values: 4-bit codes q in 0..16, value = (q - 8) * d.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: f16,
    /// Value j in the low nibble of byte j, value j + 16 in its high nibble.
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// 32 values: 4-bit codes q, value = q * d + m.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

/// 32 values: 5-bit codes (low nibbles as Q4_0, fifth bits in `qh`), value = (q - 16) * d.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// 32 values: 5-bit codes q, value = q * d + m.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

/// 32 values: signed 8-bit codes, value = q * d.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// 256 values in 8 sub-blocks of 32, each with a 6-bit scale and min:
/// value = d * scale * q - dmin * min.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    /// Eight 6-bit scales and eight 6-bit mins, packed (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Pairs of 32-value sub-blocks share 32 bytes: the first in low nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// As Q4_K with a fifth bit per value in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

/// 256 values in 16 sub-blocks of 16 with signed 8-bit scales:
/// value = d * scale * (q - 32), q being 6 bits (4 in `ql`, 2 in `qh`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

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

impl Block for BlockQ4_0 {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for j in 0..16 {
            out[j] = ((self.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            out[j + 16] = ((self.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

impl Block for BlockQ4_1 {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for j in 0..16 {
            out[j] = (self.qs[j] & 0x0F) as f32 * d + m;
            out[j + 16] = (self.qs[j] >> 4) as f32 * d + m;
        }
    }
}

impl Block for BlockQ5_0 {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for j in 0..16 {
            let (q0, q1) = self.codes(j);
            out[j] = (q0 as i32 - 16) as f32 * d;
            out[j + 16] = (q1 as i32 - 16) as f32 * d;
        }
    }
}

impl Block for BlockQ5_1 {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for j in 0..16 {
            let (q0, q1) = self.codes(j);
            out[j] = q0 as f32 * d + m;
            out[j + 16] = q1 as f32 * d + m;
        }
    }
}

impl Block for BlockQ8_0 {
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }
}

impl Block for BlockQ4K {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (pair, (q, y)) in self
            .qs
            .chunks_exact(32)
            .zip(out.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc0, m0) = scale_min_k4(2 * pair, &self.scales);
            let (sc1, m1) = scale_min_k4(2 * pair + 1, &self.scales);
            let (d0, min0) = (d * sc0 as f32, dmin * m0 as f32);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            for l in 0..32 {
                y[l] = d0 * (q[l] & 0x0F) as f32 - min0;
                y[l + 32] = d1 * (q[l] >> 4) as f32 - min1;
            }
        }
    }
}

impl Block for BlockQ5K {
    fn dequantize(&self, out: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (pair, (q, y)) in self
            .qs
            .chunks_exact(32)
            .zip(out.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc0, m0) = scale_min_k4(2 * pair, &self.scales);
            let (sc1, m1) = scale_min_k4(2 * pair + 1, &self.scales);
            let (d0, min0) = (d * sc0 as f32, dmin * m0 as f32);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (bit0, bit1) = (1u8 << (2 * pair), 1u8 << (2 * pair + 1));
            for l in 0..32 {
                let high0 = if self.qh[l] & bit0 != 0 { 16 } else { 0 };
                let high1 = if self.qh[l] & bit1 != 0 { 16 } else { 0 };
                y[l] = d0 * ((q[l] & 0x0F) + high0) as f32 - min0;
                y[l + 32] = d1 * ((q[l] >> 4) + high1) as f32 - min1;
            }
        }
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
