//! Scalar dot products of one weight row with one activation row: the reference that
//! every SIMD kernel is tested against. Integer sums follow GGML's, so results agree
//! with llama.cpp up to float rounding order.
//!
//! Everything is `#[inline(always)]` so that the per-ISA wrappers (see `x86.rs`) compile
//! these same bodies with wider vector instructions enabled.

use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::blocks::*;
use crate::quant::int8_row;

/// Sum of products of 32 signed bytes; written so the compiler vectorises it.
#[inline(always)]
fn dot32(w: &[i8; 32], a: &[i8; 32]) -> i32 {
    w.iter().zip(a).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Unpacks 32 4-bit codes (value j low nibble of byte j, value j + 16 high nibble) minus `offset`.
#[inline(always)]
fn unpack_nibbles(qs: &[u8; 16], offset: i8) -> [i8; 32] {
    let mut out = [0i8; 32];
    for j in 0..16 {
        out[j] = (qs[j] & 0x0F) as i8 - offset;
        out[j + 16] = (qs[j] >> 4) as i8 - offset;
    }
    out
}

/// Unpacks 32 5-bit codes of a Q5_0/Q5_1 block minus `offset`.
#[inline(always)]
fn unpack_5bit(qs: &[u8; 16], qh: [u8; 4], offset: i8) -> [i8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut out = [0i8; 32];
    for j in 0..16 {
        let high0 = (((qh >> j) << 4) & 0x10) as u8;
        let high1 = ((qh >> (j + 12)) & 0x10) as u8;
        out[j] = ((qs[j] & 0x0F) | high0) as i8 - offset;
        out[j + 16] = ((qs[j] >> 4) | high1) as i8 - offset;
    }
    out
}

#[inline(always)]
pub fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0Act]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            dot32(&unpack_nibbles(&w.qs, 8), &a.qs) as f32 * (w.d.to_f32() * a.d.to_f32())
        })
        .sum()
}

#[inline(always)]
pub fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1Act]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let isum = dot32(&unpack_nibbles(&w.qs, 0), &a.qs);
            (w.d.to_f32() * a.d.to_f32()) * isum as f32 + w.m.to_f32() * a.s.to_f32()
        })
        .sum()
}

#[inline(always)]
pub fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0Act]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            dot32(&unpack_5bit(&w.qs, w.qh, 16), &a.qs) as f32 * (w.d.to_f32() * a.d.to_f32())
        })
        .sum()
}

#[inline(always)]
pub fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1Act]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let isum = dot32(&unpack_5bit(&w.qs, w.qh, 0), &a.qs);
            (w.d.to_f32() * a.d.to_f32()) * isum as f32 + w.m.to_f32() * a.s.to_f32()
        })
        .sum()
}

#[inline(always)]
pub fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0Act]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| dot32(&w.qs, &a.qs) as f32 * (w.d.to_f32() * a.d.to_f32()))
        .sum()
}

/// An INT8 row (f32 row scale, then codes) against Q8_0 activation blocks: the row scale
/// times the sum over blocks of each block's integer dot product at its activation scale.
#[inline(always)]
pub fn dot_int8(w: &[u8], a: &[BlockQ8_0Act]) -> f32 {
    let (scale, codes) = int8_row(w);
    let sum: f32 = codes
        .chunks_exact(32)
        .zip(a)
        .map(|(q, a)| dot32(q.try_into().expect("32 codes"), &a.qs) as f32 * a.d.to_f32())
        .sum();
    scale * sum
}

/// The 32 activation codes of sub-block `sub` of a Q8_K block.
#[inline(always)]
fn act32(a: &BlockQ8K, sub: usize) -> &[i8; 32] {
    a.qs[32 * sub..32 * sub + 32].try_into().expect("32 codes")
}

/// Q4_K and Q5_K share this: per 32-value sub-block, scale * sum(q * a) - min * sum(a).
/// `codes(pair)` gives the unpacked codes of sub-blocks 2 * pair and 2 * pair + 1.
#[inline(always)]
fn dot_k4_like(
    d: f32,
    dmin: f32,
    scales: &[u8; 12],
    codes: impl Fn(usize) -> [[i8; 32]; 2],
    a: &BlockQ8K,
) -> f32 {
    let mut scaled = 0i32;
    let mut mins = 0i32;
    for pair in 0..4 {
        let q = codes(pair);
        for (half, q) in q.iter().enumerate() {
            let sub = 2 * pair + half;
            let (sc, m) = scale_min_k4(sub, scales);
            scaled += sc as i32 * dot32(q, act32(a, sub));
            mins += m as i32 * (a.bsums[2 * sub] as i32 + a.bsums[2 * sub + 1] as i32);
        }
    }
    a.d * d * scaled as f32 - a.d * dmin * mins as f32
}

/// Splits 32 bytes into the low-nibble and high-nibble sub-blocks they hold.
#[inline(always)]
fn split_nibbles(bytes: &[u8]) -> [[i8; 32]; 2] {
    let mut out = [[0i8; 32]; 2];
    for (l, &b) in bytes.iter().enumerate() {
        out[0][l] = (b & 0x0F) as i8;
        out[1][l] = (b >> 4) as i8;
    }
    out
}

#[inline(always)]
pub fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let codes = |pair: usize| split_nibbles(&w.qs[32 * pair..32 * pair + 32]);
            dot_k4_like(w.d.to_f32(), w.dmin.to_f32(), &w.scales, codes, a)
        })
        .sum()
}

#[inline(always)]
pub fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let codes = |pair: usize| {
                let mut q = split_nibbles(&w.qs[32 * pair..32 * pair + 32]);
                for (half, q) in q.iter_mut().enumerate() {
                    let bit = 2 * pair + half;
                    for (v, &h) in q.iter_mut().zip(&w.qh) {
                        *v |= (((h >> bit) & 1) << 4) as i8;
                    }
                }
                q
            };
            dot_k4_like(w.d.to_f32(), w.dmin.to_f32(), &w.scales, codes, a)
        })
        .sum()
}

#[inline(always)]
pub fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        // Unpack all 256 codes in value order, then take 16-value groups with their scale.
        let mut q = [0i8; 256];
        for half in 0..2 {
            for l in 0..32 {
                for (k, &code) in w.codes(half, l).iter().enumerate() {
                    q[128 * half + l + 32 * k] = code;
                }
            }
        }
        let mut isum = 0i32;
        for (g, (qg, ag)) in q.chunks_exact(16).zip(a.qs.chunks_exact(16)).enumerate() {
            let group: i32 = qg.iter().zip(ag).map(|(&x, &y)| x as i32 * y as i32).sum();
            isum += w.scales[g] as i32 * group;
        }
        sum += w.d.to_f32() * a.d * isum as f32;
    }
    sum
}

#[inline(always)]
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorise without reassociating.
    let mut acc = [0f32; 8];
    let (wc, wr) = w.split_at(w.len() / 8 * 8);
    let (xc, xr) = x.split_at(wc.len());
    for (wv, xv) in wc.chunks_exact(8).zip(xc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += wv[k] * xv[k];
        }
    }
    let tail: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
}
