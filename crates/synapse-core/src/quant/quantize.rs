//! Quantizers: f32 rows to every weight format Synapse reads, plus [`DType::Int8`].
//!
//! The 32-value formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the float types round exactly
//! as GGML's reference quantizers (and the `gguf` Python package) do, so their bytes are
//! identical. The K-quants search their scales: each sub-block's scale (and min) comes
//! from a weighted least-squares fit tried over a range of candidate scales, the method
//! of GGML's `make_qkx2_quants` (Q4_K, Q5_K) and `make_qx_quants` (Q6_K); the sub-block
//! scales are then themselves quantized against one f16 super-block scale. These follow
//! GGML's float operations in order too, so every format's bytes are those of llama.cpp's
//! `quantize_row_*_ref` (tests/quantize.rs and synapse-cli's tests/quantize.rs check).

use super::blocks::*;
use super::Block;
use crate::dtype::{DType, INT8_ROW_HEADER, QK_K};
use crate::storage::Storage;
use crate::tensor::WeightTensor;
use half::f16;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("{dtype} needs rows of whole {block}-value blocks, but a row has {len} values")]
    BlockSize {
        dtype: DType,
        len: usize,
        block: usize,
    },
    #[error("a {dtype} row of {len} values takes {want} bytes, but the destination has {got}")]
    DestinationSize {
        dtype: DType,
        len: usize,
        want: usize,
        got: usize,
    },
    #[error("tensor {tensor:?}: {source}")]
    Tensor {
        tensor: String,
        source: Box<QuantizeError>,
    },
}

/// Quantizes the row `src` to `dtype`, writing `dtype.row_bytes(src.len())` bytes to `dst`.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantizeError> {
    let len = src.len();
    let want = dtype.row_bytes(len).ok_or(QuantizeError::BlockSize {
        dtype,
        len,
        block: dtype.block_len(),
    })?;
    if dst.len() != want {
        return Err(QuantizeError::DestinationSize {
            dtype,
            len,
            want,
            got: dst.len(),
        });
    }
    (dtype.quantizer())(src, dst);
    Ok(())
}

/// `w` re-encoded as `target`: each row dequantized to f32 and quantized again, into
/// owned storage. Fails (naming the tensor) when a row is not a whole number of the
/// target's blocks, so the caller can keep the original.
pub fn quantize_tensor(w: &WeightTensor, target: DType) -> Result<WeightTensor, QuantizeError> {
    let bytes = quantize_tensor_bytes(w, target)?;
    let len = bytes.len();
    Ok(WeightTensor::new(
        w.name.clone(),
        target,
        w.rows,
        w.cols,
        Storage::from_vec(bytes),
        0..len,
    ))
}

/// The bytes of [`quantize_tensor`]'s result.
pub fn quantize_tensor_bytes(w: &WeightTensor, target: DType) -> Result<Vec<u8>, QuantizeError> {
    let row_bytes = target
        .row_bytes(w.cols)
        .ok_or_else(|| QuantizeError::Tensor {
            tensor: w.name.clone(),
            source: Box::new(QuantizeError::BlockSize {
                dtype: target,
                len: w.cols,
                block: target.block_len(),
            }),
        })?;
    let mut out = vec![0u8; row_bytes * w.rows];
    let threads = crate::threads::default_threads();
    crate::threads::parallel_chunks_mut(&mut out, row_bytes, threads, |rows, part| {
        let mut row = vec![0f32; w.cols];
        for (r, dst) in rows.zip(part.chunks_exact_mut(row_bytes.max(1))) {
            w.dequantize_row(r, &mut row);
            quantize_row(target, &row, dst).expect("row length and size checked above");
        }
    });
    Ok(out)
}

/// GGML's f32 to bf16: round to nearest even, NaNs kept quiet.
pub(crate) fn to_bf16(v: f32) -> u16 {
    let n = v.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return (((n & 0xffff_0000) | (64 << 16)) >> 16) as u16;
    }
    ((n as u64 + 0x7fff + ((n >> 16) & 1) as u64) >> 16) as u16
}

/// A block format's bytes, as its `#[repr(C)]` struct lays them out.
fn block_bytes<B: Copy>(b: &B) -> &[u8] {
    // SAFETY: the block structs are `#[repr(C)]` without padding (their size asserts equal
    // the sum of their fields), so every byte is initialised.
    unsafe { std::slice::from_raw_parts((b as *const B).cast::<u8>(), std::mem::size_of::<B>()) }
}

/// Quantizes `src` block by block with `f`, writing each block's bytes to `dst`.
pub(crate) fn blocks<B: Block>(src: &[f32], dst: &mut [u8], f: fn(&[f32]) -> B) {
    for (x, out) in src
        .chunks_exact(B::BLOCK_LEN)
        .zip(dst.chunks_exact_mut(std::mem::size_of::<B>()))
    {
        out.copy_from_slice(block_bytes(&f(x)));
    }
}

/// The value of largest magnitude (the first one, on ties), with its sign.
fn signed_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Packs 32 codes below 16 as GGML does: value j in the low nibble of byte j, value
/// j + 16 in its high nibble.
fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4))
}

/// The fifth bits of 32 codes, bit j for value j.
fn fifth_bits(q: &[u8; 32]) -> [u8; 4] {
    let bits = q
        .iter()
        .enumerate()
        .fold(0u32, |acc, (j, &c)| acc | (((c >> 4) & 1) as u32) << j);
    bits.to_le_bytes()
}

/// Codes `trunc(x * id + bias)` below `limit`; C's float-to-int truncation, as GGML's.
fn codes_scaled(x: &[f32], sub: f32, id: f32, bias: f32, limit: u8) -> [u8; 32] {
    std::array::from_fn(|j| (((x[j] - sub) * id + bias) as i32).clamp(0, limit as i32) as u8)
}

/// A symmetric 32-value block's scale and codes: `d = max / -half` (the value of largest
/// magnitude maps to code 0), codes `x / d + half` rounded and at most `limit`.
fn symmetric(x: &[f32], half: f32, limit: u8) -> (f16, [u8; 32]) {
    let d = signed_max(x) / -half;
    let q = codes_scaled(x, 0.0, inverse(d), half + 0.5, limit);
    (f16::from_f32(d), q)
}

/// A 32-value block with a minimum: its scale `(max - min) / limit`, minimum and codes.
fn affine(x: &[f32], limit: u8) -> (f16, f16, [u8; 32]) {
    let (min, max) = min_max(x);
    let d = (max - min) / limit as f32;
    let q = codes_scaled(x, min, inverse(d), 0.5, limit);
    (f16::from_f32(d), f16::from_f32(min), q)
}

pub(crate) fn q4_0(x: &[f32]) -> BlockQ4_0 {
    let (d, q) = symmetric(x, 8.0, 15);
    let qs = pack_nibbles(&q);
    BlockQ4_0 { d, qs }
}

pub(crate) fn q4_1(x: &[f32]) -> BlockQ4_1 {
    let (d, m, q) = affine(x, 15);
    let qs = pack_nibbles(&q);
    BlockQ4_1 { d, m, qs }
}

pub(crate) fn q5_0(x: &[f32]) -> BlockQ5_0 {
    let (d, q) = symmetric(x, 16.0, 31);
    let (qh, qs) = (fifth_bits(&q), pack_nibbles(&q));
    BlockQ5_0 { d, qh, qs }
}

pub(crate) fn q5_1(x: &[f32]) -> BlockQ5_1 {
    let (d, m, q) = affine(x, 31);
    let (qh, qs) = (fifth_bits(&q), pack_nibbles(&q));
    BlockQ5_1 { d, m, qh, qs }
}

pub(crate) fn q8_0(x: &[f32]) -> BlockQ8_0 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    BlockQ8_0 {
        d: f16::from_f32(d),
        // `round` rounds half away from zero, as C's roundf.
        qs: std::array::from_fn(|j| (x[j] * id).round() as i8),
    }
}

/// Row layout of [`DType::Int8`]: scale `max|x| / 127`, then the rounded codes.
pub(crate) fn int8(src: &[f32], dst: &mut [u8]) {
    let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let id = inverse(scale);
    let (head, codes) = dst.split_at_mut(INT8_ROW_HEADER);
    head.copy_from_slice(&scale.to_le_bytes());
    for (o, &v) in codes.iter_mut().zip(src) {
        *o = ((v * id).round().clamp(-127.0, 127.0) as i8) as u8;
    }
}

/// Round to nearest, ties to even: GGML's `nearest_int`.
fn nearest(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Weighted fit of `x` by `scale * L - min` with codes L in `0..=nmax` and `min >= 0`:
/// starts from the min/max range, then tries `nstep + 1` candidate scales
/// `(nmax + rmin + rdelta * is) / range`, each followed by the least-squares scale and
/// min for the codes it gives, and keeps the fit of least weighted squared error.
/// Returns `(scale, min)` and leaves the codes in `l`.
fn fit_scale_min(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    (rmin, rdelta, nstep): (f32, f32, i32),
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let code = |iscale: f32, v: f32, min: f32| nearest(iscale * (v - min)).clamp(0, nmax) as u8;
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0f32;
    for i in 0..n {
        l[i] = code(iscale, x[i], min);
        let diff = scale * l[i] as f32 + min - x[i];
        best += weights[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = code(iscale, x[i], min);
            aux[i] = q;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut err = 0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                err += weights[i] * (diff * diff);
            }
            if err < best {
                l[..n].copy_from_slice(&aux[..n]);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Sub-block scales and mins of a Q4_K/Q5_K block (codes up to `nmax`), quantized to six
/// bits against the super-block scales `d` and `dmin`; then every value's code at the
/// scale and min the block will actually decode with.
fn k4_like(x: &[f32], nmax: i32, search: (f32, f32, i32)) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let av_x = (xs.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        // Larger values weigh more: their errors matter most to a dot product.
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        (scales[j], mins[j]) =
            fit_scale_min(nmax, xs, &weights, &mut l[32 * j..32 * j + 32], search);
    }
    let max_scale = scales.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = nearest(inv_scale * scales[j]).min(63) as u8;
        let lm = nearest(inv_min * mins[j]).min(63) as u8;
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let ds = d.to_f32() * sc as f32;
        if ds == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest((x[i] + dm) / ds).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

pub(crate) fn q4_k(x: &[f32]) -> BlockQ4K {
    let (d, dmin, scales, l) = k4_like(x, 15, (-1.0, 0.1, 20));
    let mut qs = [0u8; QK_K / 2];
    for (pair, q) in qs.chunks_exact_mut(32).enumerate() {
        for (i, q) in q.iter_mut().enumerate() {
            *q = l[64 * pair + i] | (l[64 * pair + 32 + i] << 4);
        }
    }
    BlockQ4K {
        d,
        dmin,
        scales,
        qs,
    }
}

pub(crate) fn q5_k(x: &[f32]) -> BlockQ5K {
    let (d, dmin, scales, l) = k4_like(x, 31, (-0.5, 0.1, 15));
    let mut qs = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 8];
    for (pair, q) in qs.chunks_exact_mut(32).enumerate() {
        for (i, q) in q.iter_mut().enumerate() {
            let (lo, hi) = (l[64 * pair + i], l[64 * pair + 32 + i]);
            *q = (lo & 0x0F) | ((hi & 0x0F) << 4);
            qh[i] |= ((lo >> 4) << (2 * pair)) | ((hi >> 4) << (2 * pair + 1));
        }
    }
    BlockQ5K {
        d,
        dmin,
        scales,
        qh,
        qs,
    }
}

/// Symmetric fit of `x` by `scale * (l - nmax)` with codes l in `0..2 * nmax`, weighting
/// each value by its square: the scale `max / -nmax` and 18 candidates around it, each
/// refined to the least-squares scale for its codes; returns the best scale and leaves
/// its codes in `l` (GGML's `make_qx_quants` with `rmse_type` 1).
fn fit_scale_symmetric(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let max = signed_max(x);
    if max.abs() < 1e-15 {
        l.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let (q, w) = (code(iscale, v) as f32, v * v);
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let set_codes = |l: &mut [u8], iscale: f32| {
        for (l, &v) in l.iter_mut().zip(x) {
            *l = (code(iscale, v) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    set_codes(l, iscale);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            set_codes(l, iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

pub(crate) fn q6_k(x: &[f32]) -> BlockQ6K {
    // Codes of sub-blocks whose scale rounds to zero stay as the fit left them.
    let mut l = [0u8; QK_K];
    let scales: [f32; 16] = std::array::from_fn(|j| {
        let range = 16 * j..16 * j + 16;
        fit_scale_symmetric(32, &x[range.clone()], &mut l[range])
    });
    // The sub-block scale of largest magnitude sets the super-block scale (maps to -128).
    let max_scale = signed_max(&scales);
    let mut block = BlockQ6K {
        ql: [0; QK_K / 2],
        qh: [0; QK_K / 4],
        scales: [0; QK_K / 16],
        d: f16::ZERO,
    };
    if max_scale.abs() < 1e-15 {
        return block;
    }
    let iscale = -128.0 / max_scale;
    block.d = f16::from_f32(1.0 / iscale);
    for (q, &s) in block.scales.iter_mut().zip(&scales) {
        *q = nearest(iscale * s).min(127) as i8;
    }
    for j in 0..16 {
        let d = block.d.to_f32() * block.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest(x[i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for half in 0..2 {
        let (l, ql, qh) = (
            &l[128 * half..],
            &mut block.ql[64 * half..],
            &mut block.qh[32 * half..],
        );
        for i in 0..32 {
            ql[i] = (l[i] & 0x0F) | ((l[i + 64] & 0x0F) << 4);
            ql[i + 32] = (l[i + 32] & 0x0F) | ((l[i + 96] & 0x0F) << 4);
            qh[i] = (l[i] >> 4)
                | ((l[i + 32] >> 4) << 2)
                | ((l[i + 64] >> 4) << 4)
                | ((l[i + 96] >> 4) << 6);
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize_row;

    #[test]
    fn rows_that_are_not_whole_blocks_are_errors() {
        let x = vec![0.5f32; 48];
        let mut dst = vec![0u8; 100];
        assert_eq!(
            quantize_row(DType::Q4_0, &x, &mut dst),
            Err(QuantizeError::BlockSize {
                dtype: DType::Q4_0,
                len: 48,
                block: 32
            })
        );
        assert!(matches!(
            quantize_row(DType::Q8_0, &x[..32], &mut dst),
            Err(QuantizeError::DestinationSize { want: 34, .. })
        ));
    }

    #[test]
    fn zero_and_constant_rows_round_trip() {
        for dtype in DType::ALL {
            // Under Miri, one K-quant super-block a row.
            let cols = if cfg!(miri) { 256 } else { 512 };
            for fill in [0.0f32, 0.25, -3.0] {
                let x = vec![fill; cols];
                // Aligned for the block views (a Vec<u8> need not be: Miri caught it).
                let mut words = Vec::new();
                let bytes = crate::storage::word_bytes(&mut words, dtype.row_bytes(cols).unwrap());
                quantize_row(dtype, &x, bytes).unwrap();
                let mut y = vec![0f32; cols];
                dequantize_row(dtype, bytes, &mut y);
                for v in y {
                    assert!((v - fill).abs() <= fill.abs() * 0.01, "{dtype} {fill}: {v}");
                }
            }
        }
    }

    #[test]
    fn int8_rows_hold_their_scale_then_codes() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.5).collect();
        let mut bytes = vec![0u8; DType::Int8.row_bytes(64).unwrap()];
        assert_eq!(bytes.len(), 4 + 64);
        quantize_row(DType::Int8, &x, &mut bytes).unwrap();
        assert_eq!(
            f32::from_le_bytes(bytes[..4].try_into().unwrap()),
            21.5 / 127.0
        );
        assert_eq!(bytes[4 + 63] as i8, 127);
        let mut y = vec![0f32; 64];
        dequantize_row(DType::Int8, &bytes, &mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 0.5 * 21.5 / 127.0 + 1e-6);
        }
    }
}
