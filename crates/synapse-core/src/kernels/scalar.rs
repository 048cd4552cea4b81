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

/// The oracle itself, against the exact dot product of the values both sides stand for:
/// the weight row dequantized by `quant::dequantize_row` (bit-identical to gguf-py, see
/// tests/dequantize.rs) and each activation block's `d * q`, multiplied and summed in f64.
/// The scalar kernels share no unpacking code with `dequantize_row` except Q6_K's
/// `codes` and the K-quants' `scale_min_k4`, which the gguf-py fixture covers; so a slip
/// in how the kernels read a block fails here even if the SIMD kernels share it.
#[cfg(test)]
mod tests {
    use super::super::quantized_dot_portable;
    use super::super::tests::{magnitude, random_acts, random_weight, weight_parts, Acts, Rng};
    use crate::dtype::DType;
    use crate::quant::dequantize_row;
    use crate::storage::AlignedBytes;

    /// The activation values the blocks stand for, `d * q`, exactly.
    fn act_values(acts: &Acts) -> Vec<f64> {
        let blocks = |d: f64, qs: &[i8]| qs.iter().map(|&q| d * q as f64).collect::<Vec<_>>();
        match acts {
            Acts::Q8_0(a) => a.iter().flat_map(|b| blocks(b.d.to_f64(), &b.qs)).collect(),
            Acts::Q8_1(a) => a.iter().flat_map(|b| blocks(b.d.to_f64(), &b.qs)).collect(),
            Acts::Q8K(a) => a.iter().flat_map(|b| blocks(b.d as f64, &b.qs)).collect(),
        }
    }

    /// Q4_1 and Q5_1 take a block's offset term as `m * s`, as GGML does, where `s` is
    /// `d * sum(q)` computed before `d` was rounded to f16 and then itself rounded to f16,
    /// rather than as `m * d * sum(q)`: this is the difference that makes,
    /// `sum over blocks m * (s - d * sum(q))`, exactly. `offsets` is the row's offset part
    /// (each block's `m`, repeated).
    fn offset_shortcut(acts: &Acts, offsets: &[f32]) -> f64 {
        let Acts::Q8_1(a) = acts else { return 0.0 };
        a.iter()
            .zip(offsets.chunks_exact(32))
            .map(|(b, m)| {
                let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
                m[0] as f64 * (b.s.to_f64() - b.d.to_f64() * sum as f64)
            })
            .sum()
    }

    /// Checks the scalar dot of `row` (a row of `dtype`) with `x` quantized as `matmul`
    /// quantizes it, and returns its error as a fraction of the bound.
    ///
    /// The bound: every product of the exact reference is exact in f64 but for a relative
    /// 2^-53, so its sum is within `cols * 2^-53` (less than 2^-24) of the true value, relative
    /// to the products' magnitude M = `sum (|scale part| + |offset part|) * |a|` (see
    /// [`magnitude`]). The kernels' integer sums are exact; each block's float term then
    /// takes at most 4 f32 roundings (K-quants: `a.d * d`, the sum's conversion, the product,
    /// and the subtraction of the minimums' term, which takes two of its own), the sum over
    /// `n` blocks `n - 1` more, INT8's row scale one, and `dequantize_row` rounds a K-quant,
    /// Q4_1/Q5_1, Q6_K or INT8 value once. So the error is below `(n + 6) * 2^-24 * M`
    /// (with one spare rounding for second-order terms). For Q4_1/Q5_1 the exact value
    /// includes GGML's `m * s` shortcut (see [`offset_shortcut`]), which is no rounding of
    /// the kernel's.
    fn check(what: &str, dtype: DType, row: &[u8], x: &[f32]) -> f64 {
        let cols = x.len();
        let acts = Acts::quantize(dtype, x);
        let got = quantized_dot_portable(dtype, row, acts.row()) as f64;
        let a = act_values(&acts);
        let mut w = vec![0f32; cols];
        dequantize_row(dtype, row, &mut w);
        let (_, offsets) = weight_parts(dtype, row, cols);
        let exact: f64 = w.iter().zip(&a).map(|(&w, &a)| w as f64 * a).sum::<f64>()
            + offset_shortcut(&acts, &offsets);
        let blocks = cols / dtype.block_len();
        let bound = (blocks + 6) as f64 * 2f64.powi(-24) * magnitude(dtype, row, &a);
        let err = (got - exact).abs();
        assert!(
            err <= bound,
            "{what}: scalar {got}, exact {exact}: error {err:e} > bound {bound:e}"
        );
        if bound > 0.0 {
            err / bound
        } else {
            0.0
        }
    }

    /// Random rows of every quantized type (extreme codes, then random; scales and
    /// minimums of both signs) of one block, of an odd number of blocks and of several
    /// K-quant super-blocks, against activations with outliers, constants, zero blocks and
    /// magnitudes from 1e-3 to 1e3.
    #[test]
    fn scalar_dots_equal_the_exact_dot_of_the_dequantized_values() {
        let mut rng = Rng(21);
        let mut cases = 0;
        for dtype in DType::ALL.into_iter().filter(|d| d.is_quantized()) {
            let mut worst = 0f64;
            for blocks in [1, 7] {
                let cols = blocks * dtype.block_len();
                let (rows, tokens) = (12, 8);
                let w = random_weight(dtype, rows, cols, &mut rng);
                let mut x = random_acts(tokens, cols, &mut rng);
                for (t, x) in x.chunks_exact_mut(cols).enumerate() {
                    let scale = [1.0, 1e-3, 1e3, -7.0][t % 4];
                    x.iter_mut().for_each(|v| *v *= scale);
                    if t == 5 {
                        x[..dtype.block_len()].fill(0.0);
                    }
                }
                for r in 0..rows {
                    for (t, x) in x.chunks_exact(cols).enumerate() {
                        let what = format!("{dtype} {blocks} blocks, row {r} token {t}");
                        worst = worst.max(check(&what, dtype, w.row(r), x));
                        cases += 1;
                    }
                }
            }
            eprintln!("{dtype}: largest error {worst:.3} of the bound");
        }
        assert_eq!(cases, 9 * 2 * 12 * 8);
    }

    /// The blocks of tests/fixtures/dequant.json: gguf-py's random blocks of every type
    /// (scales of both signs up to 2) and the first blocks of SmolLM2's Q4_1
    /// `blk.0.attn_q.weight` and Q8_0 `token_embd.weight`.
    #[test]
    fn scalar_dots_of_the_dequant_fixture_blocks_are_exact() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dequant.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("dequant.json"))
                .expect("JSON");
        let mut rng = Rng(22);
        // Under Miri (scripts/test-miri.sh) one token per block covers the same code.
        let tokens = if cfg!(miri) { 1 } else { 4 };
        let mut checked = 0;
        for case in fixture["cases"].as_array().expect("cases") {
            let name = case["type"].as_str().expect("type");
            let Some(dtype) = DType::from_name(name).filter(|d| d.is_quantized()) else {
                continue;
            };
            let hex = case["bytes_hex"].as_str().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            let row = AlignedBytes::copy_from(&bytes);
            let cols = bytes.len() / dtype.block_bytes() * dtype.block_len();
            let x = random_acts(tokens, cols, &mut rng);
            for (t, x) in x.chunks_exact(cols).enumerate() {
                check(
                    &format!("{name} {} token {t}", case["source"]),
                    dtype,
                    &row,
                    x,
                );
                checked += 1;
            }
        }
        // Eight random cases and the two from the model.
        assert_eq!(checked, 10 * tokens);
    }
}
