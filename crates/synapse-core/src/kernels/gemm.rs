//! Single-precision matrix products `C = A·B` for training, where every operand is a
//! matrix of activations or gradients and both sides have hundreds of rows (inference's
//! kernels stream a weight matrix once per few tokens instead; see [`super::matmul`]).
//!
//! The GotoBLAS scheme: `B` is copied a block at a time into panels of `NR` columns and
//! `A` into panels of `MR` rows, each laid out in the order the inner kernel reads them,
//! so that the kernel (an `MR × NR` tile of accumulators in registers, updated by one
//! rank-1 product per `k`) reads both sequentially from cache. The copies take any
//! strides, so one kernel serves `A·B`, `A·Bᵀ` and `Aᵀ·B`. Threads split the larger of
//! `C`'s two dimensions.

use crate::threads::parallel_for;

/// A matrix operand: element (r, c) is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The same matrix transposed (a view; nothing moves).
    pub fn t(self) -> MatRef<'a> {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Its rows from row `row` and column `col` on, as lines to pack (A's side).
    fn rows_from(&self, row: usize, col: usize) -> Lines<'a> {
        Lines {
            data: self.data,
            start: row * self.row_stride + col * self.col_stride,
            depth_stride: self.col_stride,
            line_stride: self.row_stride,
        }
    }

    /// Its columns from column `col` and row `row` on, as lines to pack (B's side).
    fn columns(&self, col: usize, row: usize) -> Lines<'a> {
        self.t().rows_from(col, row)
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(
                last < self.data.len(),
                "{what}: strides reach past the data"
            );
        }
    }
}

/// The register tile of an instruction set: `MR` rows by `NR` columns, and the kernel
/// that adds `kc` rank-1 products of packed panels into it.
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    pub mr: usize,
    pub nr: usize,
    /// `(kc, a panel [kc][mr], b panel [kc][nr], out [mr][nr])`: `out = Σ a ⊗ b`.
    pub kernel: fn(usize, &[f32], &[f32], &mut [f32]),
}

/// The tile of the instruction set `isa()` picked; the scalar one elsewhere.
fn tile() -> Tile {
    #[cfg(target_arch = "x86_64")]
    match super::isa() {
        super::Isa::Avx512 => return super::x86::gemm_tile_avx512(),
        super::Isa::Avx2 => return super::x86::gemm_tile_avx2(),
        _ => {}
    }
    SCALAR
}

const SCALAR: Tile = Tile {
    mr: 4,
    nr: 16,
    kernel: scalar_kernel,
};

/// The portable kernel (and the oracle of the others): fixed-size loops that compilers
/// vectorise where they can.
fn scalar_kernel(kc: usize, a: &[f32], b: &[f32], out: &mut [f32]) {
    const MR: usize = 4;
    const NR: usize = 16;
    let mut acc = [[0f32; NR]; MR];
    for (a, b) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (acc, &a) in acc.iter_mut().zip(a) {
            for (acc, &b) in acc.iter_mut().zip(b) {
                *acc += a * b;
            }
        }
    }
    for (out, acc) in out.chunks_exact_mut(NR).zip(&acc) {
        out.copy_from_slice(acc);
    }
}

/// Depth of a block: a panel pair (`kc × (mr + nr)` values) stays in L1.
const KC: usize = 256;
/// Rows of `A` packed at once (they stay in L2 while `B`'s panels go by).
const MC: usize = 96;
/// Columns of `B` packed at once.
const NC: usize = 2048;

/// `c = a · b`, or `c += a · b` with `accumulate`; `c` is row-major `a.rows × b.cols`.
/// Runs on up to `threads` threads of the engine's pool.
pub fn gemm(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: usize) {
    gemm_with(tile(), a, b, c, accumulate, threads)
}

fn gemm_with(tile: Tile, a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "a is m×k and b k×n");
    assert_eq!(c.len(), m * n, "c is m×n");
    a.check("a");
    b.check("b");
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let out = Out(c.as_mut_ptr());
    // Split the larger side of C, in whole tiles.
    let (split_rows, len, align) = match m >= n {
        true => (true, m, tile.mr),
        false => (false, n, tile.nr),
    };
    parallel_for(len, threads, align, |part| {
        let (rows, cols) = match split_rows {
            true => (part, 0..n),
            false => (0..m, part),
        };
        // SAFETY: the parts are disjoint, so each thread writes its own elements of c.
        unsafe { block(tile, a, b, out, n, rows, cols, accumulate) };
    });
}

/// `c`'s elements, written by threads that each own a disjoint set of them.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: threads write disjoint elements (their rows or columns of C), and C outlives the
// parallel call.
unsafe impl Send for Out {}
// SAFETY: as above; no element is touched by two threads.
unsafe impl Sync for Out {}

/// C[rows][cols] (row stride `ldc`) of the product, in blocks.
///
/// # Safety
/// `out` holds `a.rows × ldc` values and no other thread touches C[rows][cols].
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    tile: Tile,
    a: MatRef,
    b: MatRef,
    out: Out,
    ldc: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    accumulate: bool,
) {
    let (mr, nr) = (tile.mr, tile.nr);
    let depth = KC.min(a.cols);
    let mut b_pack = vec![0f32; depth * NC.min(cols.len()).next_multiple_of(nr)];
    let mut a_pack = vec![0f32; depth * MC.min(rows.len()).next_multiple_of(mr)];
    let mut acc = vec![0f32; mr * nr];
    for jc in cols.clone().step_by(NC) {
        let nc = NC.min(cols.end - jc);
        for pc in (0..a.cols).step_by(KC) {
            let kc = KC.min(a.cols - pc);
            pack(&mut b_pack, nr, kc, nc, b.columns(jc, pc));
            for ic in rows.clone().step_by(MC) {
                let mc = MC.min(rows.end - ic);
                pack(&mut a_pack, mr, kc, mc, a.rows_from(ic, pc));
                for (jp, b_panel) in b_pack
                    .chunks_exact(kc * nr)
                    .take(nc.div_ceil(nr))
                    .enumerate()
                {
                    for (ip, a_panel) in a_pack
                        .chunks_exact(kc * mr)
                        .take(mc.div_ceil(mr))
                        .enumerate()
                    {
                        (tile.kernel)(kc, a_panel, b_panel, &mut acc);
                        let (i0, j0) = (ic + ip * mr, jc + jp * nr);
                        let (h, w) = (mr.min(rows.end - i0), nr.min(cols.end - j0));
                        let overwrite = pc == 0 && !accumulate;
                        for (r, acc) in acc.chunks_exact(nr).take(h).enumerate() {
                            // SAFETY: row i0 + r < a.rows and columns j0..j0 + w < ldc are
                            // this thread's (the caller's promise).
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(out.0.add((i0 + r) * ldc + j0), w)
                            };
                            match overwrite {
                                true => row.copy_from_slice(&acc[..w]),
                                false => row.iter_mut().zip(acc).for_each(|(c, v)| *c += v),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where a block's values lie: value (depth `kk`, line `l`) is
/// `data[start + kk * depth_stride + l * line_stride]` (lines are rows of A or columns of B).
struct Lines<'a> {
    data: &'a [f32],
    start: usize,
    depth_stride: usize,
    line_stride: usize,
}

/// Packs `len` lines of depth `kc` into panels of `width` lines: panel `p` holds, for each
/// depth `kk`, lines `p·width ..` side by side (zeros past `len`). The copy runs along
/// whichever direction the operand stores contiguously.
fn pack(out: &mut [f32], width: usize, kc: usize, len: usize, src: Lines) {
    let Lines {
        data,
        start,
        depth_stride,
        line_stride,
    } = src;
    for (p, panel) in out
        .chunks_exact_mut(kc * width)
        .take(len.div_ceil(width))
        .enumerate()
    {
        let first = p * width;
        let lines = width.min(len - first);
        let base = start + first * line_stride;
        if lines < width {
            panel.fill(0.0);
        }
        if line_stride == 1 {
            for (kk, dst) in panel.chunks_exact_mut(width).enumerate() {
                let at = base + kk * depth_stride;
                dst[..lines].copy_from_slice(&data[at..at + lines]);
            }
        } else if depth_stride == 1 {
            // Each line is contiguous: read it in one run, write it down the panel.
            for l in 0..lines {
                let line = &data[base + l * line_stride..][..kc];
                for (dst, &v) in panel[l..].iter_mut().step_by(width).zip(line) {
                    *dst = v;
                }
            }
        } else {
            for l in 0..lines {
                let line = base + l * line_stride;
                for (kk, dst) in panel.chunks_exact_mut(width).enumerate() {
                    dst[l] = data[line + kk * depth_stride];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((seed * 7919 + i as u64 * 104_729) % 2003) as f32 / 1001.0) - 1.0)
            .collect()
    }

    fn at(m: &MatRef, r: usize, c: usize) -> f32 {
        m.data[r * m.row_stride + c * m.col_stride]
    }

    fn naive(a: MatRef, b: MatRef) -> Vec<f64> {
        let mut c = vec![0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols)
                    .map(|p| at(&a, i, p) as f64 * at(&b, p, j) as f64)
                    .sum();
            }
        }
        c
    }

    /// The tiles this CPU can run: the scalar one always.
    fn tiles() -> Vec<Tile> {
        #[cfg(target_arch = "x86_64")]
        {
            use super::super::x86::{gemm_tile_avx2, gemm_tile_avx512, has_avx2, has_avx512};
            let avx2 = has_avx2().then(gemm_tile_avx2);
            let avx512 = has_avx512().then(gemm_tile_avx512);
            [Some(SCALAR), avx2, avx512].into_iter().flatten().collect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        vec![SCALAR]
    }

    #[test]
    fn every_tile_multiplies_every_layout_and_shape() {
        let shapes = [
            (0, 3, 5),
            (3, 0, 5),
            (1, 1, 1),
            (7, 17, 3),
            (17, 33, 64),
            (33, 300, 7),
            (100, 129, 65),
            (129, 64, 300),
            (13, 600, 40),
        ];
        for tile in tiles() {
            for &(m, k, n) in &shapes {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (a_data, b_data) = (values(1, m * k), values(2, k * n));
                    let a = match ta {
                        false => MatRef::row_major(&a_data, m, k),
                        true => MatRef::row_major(&a_data, k, m).t(),
                    };
                    let b = match tb {
                        false => MatRef::row_major(&b_data, k, n),
                        true => MatRef::row_major(&b_data, n, k).t(),
                    };
                    let want = naive(a, b);
                    for (accumulate, threads) in [(false, 1), (true, 2), (false, 2)] {
                        let start = values(3, m * n);
                        let mut c = start.clone();
                        gemm_with(tile, a, b, &mut c, accumulate, threads);
                        for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                            let w = w + if accumulate { start[i] as f64 } else { 0.0 };
                            let tolerance = 1e-5 * (k as f64).max(1.0);
                            assert!(
                                (got as f64 - w).abs() <= tolerance,
                                "{}x{} tile, {m}x{k}x{n} (a^T {ta}, b^T {tb}, acc {accumulate}): [{i}] {got} vs {w}",
                                tile.mr,
                                tile.nr
                            );
                        }
                    }
                }
            }
        }
    }

    /// Speed on the products of training a 17M-parameter LLaMA with a 49,152-token
    /// vocabulary (sequences of 128 tokens): `cargo test --release -p synapse-core
    /// gemm_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn gemm_speed() {
        let shapes = [
            ("logits x·Wᵀ", 128, 256, 49152, false, true),
            ("dx = dy·W", 128, 49152, 256, false, false),
            ("dW = dyᵀ·x", 49152, 128, 256, true, false),
            ("ffn up", 128, 256, 768, false, true),
            ("dW ffn", 768, 128, 256, true, false),
        ];
        for (name, m, k, n, ta, tb) in shapes {
            let (a_data, b_data) = (values(1, m * k), values(2, k * n));
            let a = match ta {
                false => MatRef::row_major(&a_data, m, k),
                true => MatRef::row_major(&a_data, k, m).t(),
            };
            let b = match tb {
                false => MatRef::row_major(&b_data, k, n),
                true => MatRef::row_major(&b_data, n, k).t(),
            };
            let mut c = vec![0f32; m * n];
            gemm(a, b, &mut c, false, 2);
            let runs = 5;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                gemm(a, b, &mut c, false, 2);
            }
            let s = start.elapsed().as_secs_f64() / runs as f64;
            println!(
                "{name:14} {m}x{k}x{n}: {:.1} GFLOPS",
                2.0 * (m * k * n) as f64 / s / 1e9
            );
        }
    }
}
