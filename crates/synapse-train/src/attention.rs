//! Causal self-attention with grouped key/value heads, and its memory-efficient backward:
//! the forward pass keeps only each query's output and log-sum-exp, and the backward
//! recomputes each score from them (as FlashAttention does), so no `[tokens][tokens]`
//! matrix is ever stored.
//!
//! `q` is `[tokens][heads][head_dim]`, `k` and `v` are `[tokens][kv_heads][head_dim]`;
//! query head `h` reads key/value head `h / (heads / kv_heads)`.

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

/// Causal attention of `tokens` positions: token `t` attends to keys `0..=t`.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], tokens: usize, shape: Heads) -> Attended {
    let d = shape.head_dim;
    let mut out = vec![0.0; tokens * shape.heads * d];
    let mut lse = vec![0.0; tokens * shape.heads];
    let mut scores = Vec::with_capacity(tokens);
    for t in 0..tokens {
        for h in 0..shape.heads {
            let query = &q[shape.q_at(t, h)..][..d];
            scores.clear();
            scores.extend((0..=t).map(|j| shape.scale * dot(query, &k[shape.kv_at(j, h)..][..d])));
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut sum = 0.0;
            let o = &mut out[shape.q_at(t, h)..][..d];
            for (j, &s) in scores.iter().enumerate() {
                let p = (s - max).exp();
                sum += p;
                for (o, v) in o.iter_mut().zip(&v[shape.kv_at(j, h)..][..d]) {
                    *o += p * v;
                }
            }
            o.iter_mut().for_each(|o| *o /= sum);
            lse[t * shape.heads + h] = max + sum.ln();
        }
    }
    Attended { out, lse }
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
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (out, lse) = forward;
    let d = shape.head_dim;
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for t in 0..tokens {
        for h in 0..shape.heads {
            let at = shape.q_at(t, h);
            let (query, dout) = (&q[at..][..d], &dout[at..][..d]);
            let big_d = dot(dout, &out[at..][..d]);
            let lse = lse[t * shape.heads + h];
            for j in 0..=t {
                let kv = shape.kv_at(j, h);
                let key = &k[kv..][..d];
                let p = (shape.scale * dot(query, key) - lse).exp();
                let ds = p * (dot(dout, &v[kv..][..d]) - big_d) * shape.scale;
                for i in 0..d {
                    dq[at + i] += ds * key[i];
                    dk[kv + i] += ds * query[i];
                    dv[kv + i] += p * dout[i];
                }
            }
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
        let out = attention(&q, &k, &v, 1, SHAPE).out;
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
        let forward = attention(&q, &k, &v, TOKENS, SHAPE);
        let (dq, dk, dv) = attention_backward(
            &r,
            (&q, &k, &v),
            (&forward.out, &forward.lse),
            TOKENS,
            SHAPE,
        );
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let out = attention(q, k, v, TOKENS, SHAPE).out;
            out.iter().zip(&r).map(|(&o, &r)| (o * r) as f64).sum()
        };
        assert_gradient("attention dq", &q, &dq, |q| loss(q, &k, &v));
        assert_gradient("attention dk", &k, &dk, |k| loss(&q, k, &v));
        assert_gradient("attention dv", &v, &dv, |v| loss(&q, &k, v));
    }
}
