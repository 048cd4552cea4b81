//! Causal self-attention with grouped key/value heads, and its memory-efficient backward:
//! the forward pass keeps only each query's output and log-sum-exp, and the backward
//! recomputes each score from them (as FlashAttention does), so no `[tokens][tokens]`
//! matrix is ever stored.
//!
//! `q` is `[tokens][heads][head_dim]`, `k` and `v` are `[tokens][kv_heads][head_dim]`;
//! query head `h` reads key/value head `h / (heads / kv_heads)`.

use std::sync::Mutex;
use synapse_core::ops::exp;
use synapse_core::threads::parallel_for;

/// The attention's shape.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies the q·k scores (usually `1 / sqrt(head_dim)`).
    pub scale: f32,
}

impl Heads {
    fn q_at(&self, t: usize, h: usize) -> usize {
        (t * self.heads + h) * self.head_dim
    }

    fn kv_at(&self, t: usize, h: usize) -> usize {
        (t * self.kv_heads + h / (self.heads / self.kv_heads)) * self.head_dim
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// What the backward pass needs of the forward: the output and each (token, head)'s
/// log-sum-exp of its scores.
pub struct Attended {
    pub out: Vec<f32>,
    pub lse: Vec<f32>,
}

/// Runs `f(kv_head)` for every key/value head on up to `threads` threads; `f` returns
/// its head's share, and the shares come back in head order. A key/value head and the
/// query heads that read it are independent of the others, so no two tasks write one value.
fn per_kv_head<T: Send>(shape: Heads, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let shares: Vec<Mutex<Option<T>>> = (0..shape.kv_heads).map(|_| Mutex::new(None)).collect();
    parallel_for(shape.kv_heads, threads, 1, |heads| {
        for g in heads {
            *shares[g].lock().expect("no panic holds it") = Some(f(g));
        }
    });
    shares
        .into_iter()
        .map(|s| {
            s.into_inner()
                .expect("no panic held it")
                .expect("every head ran")
        })
        .collect()
}

/// Causal attention of `tokens` positions: token `t` attends to keys `0..=t`.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    tokens: usize,
    shape: Heads,
    threads: usize,
) -> Attended {
    let d = shape.head_dim;
    let group = shape.heads / shape.kv_heads;
    // Each share: its query heads' outputs and log-sum-exps, `[tokens][group]`.
    let shares = per_kv_head(shape, threads, |g| {
        let mut out = vec![0.0; tokens * group * d];
        let mut lse = vec![0.0; tokens * group];
        let mut scores = Vec::with_capacity(tokens);
        for t in 0..tokens {
            for (i, h) in (g * group..(g + 1) * group).enumerate() {
                let query = &q[shape.q_at(t, h)..][..d];
                scores.clear();
                scores.extend(
                    (0..=t).map(|j| shape.scale * dot(query, &k[shape.kv_at(j, h)..][..d])),
                );
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let mut sum = 0.0;
                let o = &mut out[(t * group + i) * d..][..d];
                for (j, &s) in scores.iter().enumerate() {
                    let p = exp(s - max);
                    sum += p;
                    for (o, v) in o.iter_mut().zip(&v[shape.kv_at(j, h)..][..d]) {
                        *o += p * v;
                    }
                }
                o.iter_mut().for_each(|o| *o /= sum);
                lse[t * group + i] = max + sum.ln();
            }
        }
        (out, lse)
    });
    let mut attended = Attended {
        out: vec![0.0; tokens * shape.heads * d],
        lse: vec![0.0; tokens * shape.heads],
    };
    for (g, (out, lse)) in shares.iter().enumerate() {
        for t in 0..tokens {
            for i in 0..group {
                let h = g * group + i;
                let at = shape.q_at(t, h);
                attended.out[at..at + d].copy_from_slice(&out[(t * group + i) * d..][..d]);
                attended.lse[t * shape.heads + h] = lse[t * group + i];
            }
        }
    }
    attended
}

/// The gradients `(dq, dk, dv)` of [`attention`] given `dout` and the forward pass's
/// `(out, lse)` (see [`Attended`]). Per (token, head), with
/// `p_j = exp(s_j - lse)` recomputed and `D = dout · out`: `ds_j = p_j·(dout · v_j - D)`,
/// then `dq += scale·ds_j·k_j`, `dk_j += scale·ds_j·q` and `dv_j += p_j·dout`.
pub fn attention_backward(
    dout: &[f32],
    (q, k, v): (&[f32], &[f32], &[f32]),
    forward: (&[f32], &[f32]),
    tokens: usize,
    shape: Heads,
    threads: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (out, lse) = forward;
    let d = shape.head_dim;
    let group = shape.heads / shape.kv_heads;
    // Each share: `dq` of its query heads (`[tokens][group][d]`), `dk` and `dv` of its
    // key/value head (`[tokens][d]`).
    let shares = per_kv_head(shape, threads, |g| {
        let (mut dq, mut dk, mut dv) = (
            vec![0.0; tokens * group * d],
            vec![0.0; tokens * d],
            vec![0.0; tokens * d],
        );
        for t in 0..tokens {
            for (i, h) in (g * group..(g + 1) * group).enumerate() {
                let at = shape.q_at(t, h);
                let (query, dout) = (&q[at..][..d], &dout[at..][..d]);
                let big_d = dot(dout, &out[at..][..d]);
                let lse = lse[t * shape.heads + h];
                let dq = &mut dq[(t * group + i) * d..][..d];
                for j in 0..=t {
                    let kv = shape.kv_at(j, h);
                    let key = &k[kv..][..d];
                    let p = exp(shape.scale * dot(query, key) - lse);
                    let ds = p * (dot(dout, &v[kv..][..d]) - big_d) * shape.scale;
                    let (dk, dv) = (&mut dk[j * d..][..d], &mut dv[j * d..][..d]);
                    for i in 0..d {
                        dq[i] += ds * key[i];
                        dk[i] += ds * query[i];
                        dv[i] += p * dout[i];
                    }
                }
            }
        }
        (dq, dk, dv)
    });
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for (g, (q_share, k_share, v_share)) in shares.iter().enumerate() {
        for t in 0..tokens {
            for i in 0..group {
                let at = shape.q_at(t, g * group + i);
                dq[at..at + d].copy_from_slice(&q_share[(t * group + i) * d..][..d]);
            }
            let kv = (t * shape.kv_heads + g) * d;
            dk[kv..kv + d].copy_from_slice(&k_share[t * d..][..d]);
            dv[kv..kv + d].copy_from_slice(&v_share[t * d..][..d]);
        }
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_gradient, values};

    const SHAPE: Heads = Heads {
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
        scale: 0.35,
    };
    const TOKENS: usize = 5;

    #[test]
    fn the_first_token_attends_to_itself_only() {
        let (q, k, v) = (values(1, 32), values(2, 16), values(3, 16));
        let out = attention(&q, &k, &v, 1, SHAPE, 2).out;
        // Head h reads kv head h / 2: its value, with weight 1.
        assert_eq!(&out[..8], &v[..8]);
        assert_eq!(&out[16..24], &v[8..16]);
    }

    #[test]
    fn attention_gradients_match_finite_differences() {
        let q_len = TOKENS * SHAPE.heads * SHAPE.head_dim;
        let kv_len = TOKENS * SHAPE.kv_heads * SHAPE.head_dim;
        let scaled = |seed, n| {
            values(seed, n)
                .iter()
                .map(|v| 2.0 * v)
                .collect::<Vec<f32>>()
        };
        let (q, k, v) = (scaled(1, q_len), scaled(2, kv_len), values(3, kv_len));
        let r = values(4, q_len);
        let forward = attention(&q, &k, &v, TOKENS, SHAPE, 2);
        let (dq, dk, dv) = attention_backward(
            &r,
            (&q, &k, &v),
            (&forward.out, &forward.lse),
            TOKENS,
            SHAPE,
            2,
        );
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let out = attention(q, k, v, TOKENS, SHAPE, 1).out;
            out.iter().zip(&r).map(|(&o, &r)| (o * r) as f64).sum()
        };
        assert_gradient("attention dq", &q, &dq, |q| loss(q, &k, &v));
        assert_gradient("attention dk", &k, &dk, |k| loss(&q, k, &v));
        assert_gradient("attention dv", &v, &dv, |v| loss(&q, &k, v));
    }
}
