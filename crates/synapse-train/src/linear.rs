//! Linear layers and embeddings: `y = x · Wᵀ`, and table lookups. The products of trained
//! matrices run on the engine's GEMM ([`synapse_core::kernels::gemm`]); a frozen matrix's
//! forward product runs as the engine's CPU backend runs a linear layer.

use synapse_core::kernels::gemm::{gemm, MatRef};
use synapse_core::WeightTensor;
use synapse_inference::model::backend::{Backend, Cpu, Linear, Precision, RunOptions};

/// `y = x · Wᵀ` for `tokens` rows of `x` and a weight matrix as the engine loaded it
/// (quantized or not), through the CPU backend's own kernels with f32 activations.
pub fn stored_linear(x: &[f32], w: &WeightTensor, tokens: usize, threads: usize) -> Vec<f32> {
    let layer = Linear::<Cpu> {
        weight: w.clone(),
        bias: None,
    };
    let mut out = Cpu.buffer(tokens * w.rows);
    if tokens > 0 {
        let opts = RunOptions {
            precision: Precision::F32,
            threads,
        };
        let mut scratch = <Cpu as Backend>::Scratch::default();
        Cpu.linears(
            [(&layer, &mut out)],
            &x.to_vec(),
            tokens,
            opts,
            &mut scratch,
        );
    }
    out
}

/// `dx = dy · W` for [`stored_linear`]: `W` is dequantized a band of rows at a time, so a
/// frozen quantized matrix never exists whole in f32 (QLoRA's way).
pub fn stored_linear_dx(dy: &[f32], w: &WeightTensor, tokens: usize, threads: usize) -> Vec<f32> {
    const BAND: usize = 256;
    let (out, inp) = (w.rows, w.cols);
    let mut dx = vec![0.0; tokens * inp];
    let mut band = vec![0.0; BAND * inp];
    for start in (0..out).step_by(BAND) {
        let rows = BAND.min(out - start);
        for (r, row) in band.chunks_exact_mut(inp).take(rows).enumerate() {
            w.dequantize_row(start + r, row);
        }
        // dy's columns start..start + rows.
        let dy_band = MatRef {
            data: &dy[start..],
            rows: tokens,
            cols: rows,
            row_stride: out,
            col_stride: 1,
        };
        let band = MatRef::row_major(&band[..rows * inp], rows, inp);
        gemm(dy_band, band, &mut dx, true, threads);
    }
    dx
}

/// `a · b` in a new buffer.
fn product(a: MatRef, b: MatRef, threads: usize) -> Vec<f32> {
    let mut c = vec![0.0; a.rows * b.cols];
    gemm(a, b, &mut c, false, threads);
    c
}

/// `y = x · Wᵀ` for `tokens` rows of `x` and `w` of `[out][in]`.
pub fn linear(
    x: &[f32],
    w: &[f32],
    tokens: usize,
    (out, inp): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    let w = MatRef::row_major(w, out, inp);
    product(MatRef::row_major(x, tokens, inp), w.t(), threads)
}

/// [`linear`]'s input gradient `dx = dy · W`.
pub fn linear_dx(
    dy: &[f32],
    w: &[f32],
    tokens: usize,
    (out, inp): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    let w = MatRef::row_major(w, out, inp);
    product(MatRef::row_major(dy, tokens, out), w, threads)
}

/// Adds [`linear`]'s weight gradient `dyᵀ · x` to `dw`.
pub fn accumulate_linear_dw(
    dy: &[f32],
    x: &[f32],
    tokens: usize,
    (out, inp): (usize, usize),
    threads: usize,
    dw: &mut [f32],
) {
    let (dy, x) = (
        MatRef::row_major(dy, tokens, out),
        MatRef::row_major(x, tokens, inp),
    );
    gemm(dy.t(), x, dw, true, threads);
}

/// The gradients of [`linear`] given `dy`: `(dx, dW)`.
pub fn linear_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    tokens: usize,
    shape: (usize, usize),
    threads: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0.0; w.len()];
    accumulate_linear_dw(dy, x, tokens, shape, threads, &mut dw);
    (linear_dx(dy, w, tokens, shape, threads), dw)
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
    use synapse_core::{DType, Storage};

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
    fn a_stored_matrix_gives_the_f32_products() {
        let (tokens, out, inp) = (3, 300, 64);
        let (x, w, dy) = (
            values(8, tokens * inp),
            values(9, out * inp),
            values(10, tokens * out),
        );
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let len = bytes.len();
        let stored = WeightTensor::new(
            "w".into(),
            DType::F32,
            out,
            inp,
            Storage::from_vec(bytes),
            0..len,
        );
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-4);
        let want = linear(&x, &w, tokens, (out, inp), 1);
        assert!(close(&stored_linear(&x, &stored, tokens, 2), &want));
        let (want_dx, _) = linear_backward(&dy, &x, &w, tokens, (out, inp), 1);
        assert!(close(&stored_linear_dx(&dy, &stored, tokens, 2), &want_dx));
    }

    #[test]
    fn a_quantized_stored_matrix_is_dequantized_for_dx() {
        let (tokens, out, inp) = (2, 70, 64);
        let w = values(11, out * inp);
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let len = bytes.len();
        let f32_tensor = WeightTensor::new(
            "w".into(),
            DType::F32,
            out,
            inp,
            Storage::from_vec(bytes),
            0..len,
        );
        let q8 = synapse_core::quant::quantize::quantize_tensor(&f32_tensor, DType::Q8_0).unwrap();
        let dy = values(12, tokens * out);
        let (want, _) = linear_backward(
            &dy,
            &values(13, tokens * inp),
            &q8.to_f32(),
            tokens,
            (out, inp),
            1,
        );
        let got = stored_linear_dx(&dy, &q8, tokens, 2);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
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
