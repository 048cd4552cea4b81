//! Causal multi-head attention with grouped K/V heads, computed tile by tile with an
//! online softmax (flash-attention style): no score matrix is materialised, so memory
//! stays constant however long the context, and each key/value row is read once per
//! group of query heads that share it.

use crate::threads::parallel_chunks_mut;

/// Positions per tile of the online softmax.
const TILE: usize = 32;

#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
}

/// Attention of `n` new queries at positions `pos..pos + n` over the cached keys and values
/// of positions `0..pos + n` (`[position][n_kv_heads * head_dim]`). `q` and `out` are
/// `[n][n_heads * head_dim]`.
pub fn causal_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    pos: usize,
    shape: AttentionShape,
    threads: usize,
    out: &mut [f32],
) {
    let AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
        ..
    } = shape;
    let group = n_heads / n_kv_heads;
    let (qd, kvd) = (n_heads * hd, n_kv_heads * hd);
    // One unit is one token's group of query heads sharing a K/V head: `group * hd`
    // contiguous outputs.
    parallel_chunks_mut(out, group * hd, threads, |units, out| {
        for (unit, o) in units.zip(out.chunks_exact_mut(group * hd)) {
            let (t, kv_head) = (unit / n_kv_heads, unit % n_kv_heads);
            let queries = &q[t * qd + kv_head * group * hd..][..group * hd];
            let len = pos + t + 1;
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features the wrapper is compiled for.
                unsafe { attend_group_avx2(queries, keys, values, len, kvd, kv_head * hd, hd, o) };
                continue;
            }
            attend_group(queries, keys, values, len, kvd, kv_head * hd, hd, o);
        }
    });
}

/// [`attend_group`] compiled with AVX2 and FMA, so its loops use 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_group_avx2(
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    len: usize,
    kvd: usize,
    kv_off: usize,
    hd: usize,
    out: &mut [f32],
) {
    attend_group(queries, keys, values, len, kvd, kv_off, hd, out)
}

/// Online-softmax attention of `group` query heads over positions `0..len` of one K/V head
/// at offset `kv_off` in rows of `kvd` values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_group(
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    len: usize,
    kvd: usize,
    kv_off: usize,
    hd: usize,
    out: &mut [f32],
) {
    const MAX_GROUP: usize = 16;
    let group = queries.len() / hd;
    assert!(
        group <= MAX_GROUP,
        "more than {MAX_GROUP} query heads per K/V head"
    );
    let scale = 1.0 / (hd as f32).sqrt();
    let mut max = [f32::NEG_INFINITY; MAX_GROUP];
    let mut sum = [0f32; MAX_GROUP];
    let mut scores = [[0f32; TILE]; MAX_GROUP];
    out.fill(0.0);
    for start in (0..len).step_by(TILE) {
        let tile = TILE.min(len - start);
        for (h, qh) in queries.chunks_exact(hd).enumerate() {
            for j in 0..tile {
                let k = &keys[(start + j) * kvd + kv_off..][..hd];
                scores[h][j] = dot(qh, k) * scale;
            }
            let tile_max = scores[h][..tile]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let new_max = max[h].max(tile_max);
            // Rescale what was accumulated under the old maximum.
            let correction = (max[h] - new_max).exp();
            max[h] = new_max;
            sum[h] *= correction;
            let oh = &mut out[h * hd..(h + 1) * hd];
            if correction != 1.0 {
                oh.iter_mut().for_each(|v| *v *= correction);
            }
            let weights = &mut scores[h][..tile];
            for w in weights.iter_mut() {
                *w = exp(*w - new_max);
            }
            sum[h] += weights.iter().sum::<f32>();
            for (j, &p) in weights.iter().enumerate() {
                let v = &values[(start + j) * kvd + kv_off..][..hd];
                axpy(p, v, oh);
            }
        }
    }
    for (h, oh) in out.chunks_exact_mut(hd).enumerate() {
        let inv = 1.0 / sum[h];
        oh.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `e^x` for x <= 0 to within about 2e-7 relative, in branch-free arithmetic that the
/// compiler vectorises (the library `exp` is a scalar call per score).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Below this e^x underflows to (almost) zero; clamping keeps 2^n a normal float.
    let x = x.max(-87.0);
    // x = n ln2 + r with |r| <= ln2 / 2; then e^x = 2^n e^r.
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention, the reference.
    fn naive(q: &[f32], keys: &[f32], values: &[f32], pos: usize, s: AttentionShape) -> Vec<f32> {
        let (hd, qd, kvd) = (
            s.head_dim,
            s.n_heads * s.head_dim,
            s.n_kv_heads * s.head_dim,
        );
        let n = q.len() / qd;
        let group = s.n_heads / s.n_kv_heads;
        let mut out = vec![0f32; q.len()];
        for t in 0..n {
            for h in 0..s.n_heads {
                let qh = &q[t * qd + h * hd..][..hd];
                let off = (h / group) * hd;
                let scores: Vec<f64> = (0..=pos + t)
                    .map(|p| {
                        qh.iter()
                            .zip(&keys[p * kvd + off..][..hd])
                            .map(|(a, b)| (a * b) as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = w.iter().sum();
                for (p, wp) in w.iter().enumerate() {
                    for d in 0..hd {
                        out[t * qd + h * hd + d] +=
                            (wp / total * values[p * kvd + off + d] as f64) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn vectorisable_exp_is_accurate() {
        for i in 0..=80_000 {
            let x = -(i as f32) * 0.001;
            let (got, want) = (exp(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(-1000.0) < 1e-37);
    }

    #[test]
    fn tiled_online_softmax_matches_plain_softmax() {
        let mut seed = 1u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
        };
        let shape = AttentionShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 16,
            scale: 0.25,
            window: None,
            softcap: None,
        };
        for (pos, n) in [(0, 1), (0, 70), (45, 1), (33, 40)] {
            let total = pos + n;
            let q: Vec<f32> = (0..n * 96).map(|_| rand()).collect();
            let keys: Vec<f32> = (0..total * 32).map(|_| rand()).collect();
            let values: Vec<f32> = (0..total * 32).map(|_| rand()).collect();
            let mut out = vec![0f32; n * 96];
            causal_attention(&q, &keys, &values, pos, shape, 2, &mut out);
            let want = naive(&q, &keys, &values, pos, shape);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "pos {pos} n {n}: {a} vs {b}");
            }
        }
    }
}
