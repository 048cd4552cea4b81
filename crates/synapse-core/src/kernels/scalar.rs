//! Scalar dot products of one weight row with one activation row: the reference that
//! every SIMD kernel is tested against. Integer sums follow GGML's, so results agree
//! with llama.cpp up to float rounding order.

use crate::quant::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use crate::quant::blocks::*;

pub fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0Act]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for j in 0..16 {
            isum += ((w.qs[j] & 0x0F) as i32 - 8) * a.qs[j] as i32;
            isum += ((w.qs[j] >> 4) as i32 - 8) * a.qs[j + 16] as i32;
        }
        sum += isum as f32 * (w.d.to_f32() * a.d.to_f32());
    }
    sum
}

pub fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1Act]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for j in 0..16 {
            isum += (w.qs[j] & 0x0F) as i32 * a.qs[j] as i32;
            isum += (w.qs[j] >> 4) as i32 * a.qs[j + 16] as i32;
        }
        sum += (w.d.to_f32() * a.d.to_f32()) * isum as f32 + w.m.to_f32() * a.s.to_f32();
    }
    sum
}

pub fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0Act]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for j in 0..16 {
            let (q0, q1) = w.codes(j);
            isum += (q0 as i32 - 16) * a.qs[j] as i32 + (q1 as i32 - 16) * a.qs[j + 16] as i32;
        }
        sum += isum as f32 * (w.d.to_f32() * a.d.to_f32());
    }
    sum
}

pub fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1Act]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for j in 0..16 {
            let (q0, q1) = w.codes(j);
            isum += q0 as i32 * a.qs[j] as i32 + q1 as i32 * a.qs[j + 16] as i32;
        }
        sum += (w.d.to_f32() * a.d.to_f32()) * isum as f32 + w.m.to_f32() * a.s.to_f32();
    }
    sum
}

pub fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0Act]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let isum: i32 = w.qs.iter().zip(&a.qs).map(|(&x, &y)| x as i32 * y as i32).sum();
        sum += isum as f32 * (w.d.to_f32() * a.d.to_f32());
    }
    sum
}

/// Q4_K and Q5_K share this: per 32-value sub-block, sum(scale * q * a) - min * sum(a).
fn dot_k4_like(
    d: f32,
    dmin: f32,
    scales: &[u8; 12],
    code: impl Fn(usize) -> u8,
    a: &BlockQ8K,
) -> f32 {
    let mut scaled = 0i32;
    let mut mins = 0i32;
    for sub in 0..8 {
        let (sc, m) = scale_min_k4(sub, scales);
        let isum: i32 = (0..32)
            .map(|l| code(32 * sub + l) as i32 * a.qs[32 * sub + l] as i32)
            .sum();
        scaled += sc as i32 * isum;
        mins += m as i32 * (a.bsums[2 * sub] as i32 + a.bsums[2 * sub + 1] as i32);
    }
    a.d * d * scaled as f32 - a.d * dmin * mins as f32
}

pub fn dot_q4_k(w: &[BlockQ4K], a: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            // Value i lives in byte 32 * (i / 64) + i % 32, low nibble for the first 32 of each 64.
            let code = |i: usize| {
                let byte = w.qs[32 * (i / 64) + i % 32];
                if i % 64 < 32 {
                    byte & 0x0F
                } else {
                    byte >> 4
                }
            };
            dot_k4_like(w.d.to_f32(), w.dmin.to_f32(), &w.scales, code, a)
        })
        .sum()
}

pub fn dot_q5_k(w: &[BlockQ5K], a: &[BlockQ8K]) -> f32 {
    w.iter()
        .zip(a)
        .map(|(w, a)| {
            let code = |i: usize| {
                let byte = w.qs[32 * (i / 64) + i % 32];
                let low = if i % 64 < 32 { byte & 0x0F } else { byte >> 4 };
                let high = (w.qh[i % 32] >> (i / 32)) & 1;
                low | (high << 4)
            };
            dot_k4_like(w.d.to_f32(), w.dmin.to_f32(), &w.scales, code, a)
        })
        .sum()
}

pub fn dot_q6_k(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (w, a) in w.iter().zip(a) {
        let mut isum = 0i32;
        for half in 0..2 {
            for l in 0..32 {
                let q = w.codes(half, l);
                for (k, &qk) in q.iter().enumerate() {
                    let i = 128 * half + l + 32 * k;
                    let scale = w.scales[i / 16] as i32;
                    isum += scale * qk as i32 * a.qs[i] as i32;
                }
            }
        }
        sum += w.d.to_f32() * a.d * isum as f32;
    }
    sum
}

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
