//! Linear layers and embeddings: `y = x · Wᵀ`, and table lookups.

use synapse_core::{DType, Storage, WeightTensor};
use synapse_inference::model::backend::{Backend, Cpu, Linear, Precision, RunOptions};

/// `a · bᵀ` for `a` of `[m][k]` and `b` of `[n][k]`: `[m][n]`, as the engine's CPU
/// backend runs a linear layer in f32 (`b` its weight matrix of `n` rows).
pub fn matmul_bt(
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    threads: usize,
) -> Vec<f32> {
    assert_eq!(a.len(), m * k, "a is [m][k]");
    assert_eq!(b.len(), n * k, "b is [n][k]");
    if m == 0 || n == 0 {
        return vec![0.0; m * n];
    }
    let bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
    let len = bytes.len();
    let weight = WeightTensor::new(
        "b".into(),
        DType::F32,
        n,
        k,
        Storage::from_vec(bytes),
        0..len,
    );
    let layer = Linear::<Cpu> { weight, bias: None };
    let mut out = Cpu.buffer(m * n);
    let opts = RunOptions {
        precision: Precision::F32,
        threads,
    };
    let mut scratch = <Cpu as Backend>::Scratch::default();
    Cpu.linears([(&layer, &mut out)], &a.to_vec(), m, opts, &mut scratch);
    out
}

/// `[rows][cols]` → `[cols][rows]`.
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for (r, row) in x.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// `y = x · Wᵀ` for `tokens` rows of `x` and `w` of `[out][in]`.
pub fn linear(
    x: &[f32],
    w: &[f32],
    tokens: usize,
    (out, inp): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    matmul_bt(x, w, (tokens, out, inp), threads)
}

/// The gradients of [`linear`] given `dy`: `(dx, dW)`, with `dx = dy · W` and
/// `dW = dyᵀ · x`.
pub fn linear_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    tokens: usize,
    (out, inp): (usize, usize),
    threads: usize,
) -> (Vec<f32>, Vec<f32>) {
    let dx = matmul_bt(dy, &transpose(w, out, inp), (tokens, inp, out), threads);
    let dw = matmul_bt(
        &transpose(dy, tokens, out),
        &transpose(x, tokens, inp),
        (out, inp, tokens),
        threads,
    );
    (dx, dw)
}

/// Rows `tokens[i]` of `table` (`[vocab][width]`).
pub fn embed(table: &[f32], width: usize, tokens: &[u32]) -> Vec<f32> {
    tokens
        .iter()
        .flat_map(|&t| &table[t as usize * width..][..width])
        .copied()
        .collect()
}

/// Adds [`embed`]'s gradient for `dy` into `dtable`: each row back to its token's row.
pub fn embed_backward(dy: &[f32], width: usize, tokens: &[u32], dtable: &mut [f32]) {
    for (row, &t) in dy.chunks_exact(width).zip(tokens) {
        for (g, d) in dtable[t as usize * width..][..width].iter_mut().zip(row) {
            *g += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_gradient, values};

    #[test]
    fn matmul_bt_is_a_times_b_transposed() {
        let (m, n, k) = (3, 5, 64);
        let (a, b) = (values(1, m * k), values(2, n * k));
        let got = matmul_bt(&a, &b, (m, n, k), 2);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert!((got[i * n + j] - want).abs() < 1e-4, "{i},{j}");
            }
        }
    }

    #[test]
    fn linear_gradients_match_finite_differences() {
        let (tokens, out, inp) = (3, 4, 32);
        let (x, w, r) = (
            values(3, tokens * inp),
            values(4, out * inp),
            values(5, tokens * out),
        );
        let (dx, dw) = linear_backward(&r, &x, &w, tokens, (out, inp), 1);
        let loss = |x: &[f32], w: &[f32]| -> f64 {
            let y = linear(x, w, tokens, (out, inp), 1);
            y.iter().zip(&r).map(|(&y, &r)| (y * r) as f64).sum()
        };
        assert_gradient("linear dx", &x, &dx, |x| loss(x, &w));
        assert_gradient("linear dW", &w, &dw, |w| loss(&x, w));
    }

    #[test]
    fn embedding_gradients_add_up_per_token() {
        let (vocab, width) = (5, 3);
        let table = values(6, vocab * width);
        let tokens = [2, 0, 2];
        let r = values(7, tokens.len() * width);
        let mut dtable = vec![0.0; table.len()];
        embed_backward(&r, width, &tokens, &mut dtable);
        assert_gradient("embedding", &table, &dtable, |t| {
            let y = embed(t, width, &tokens);
            y.iter().zip(&r).map(|(&y, &r)| (y * r) as f64).sum()
        });
    }
}
