//! Causal multi-head attention with grouped K/V heads, optional sliding window and score
//! soft-capping, over keys and values stored in f32 or f16 (flash-attention style: no
//! score matrix is materialised).
//!
//! Work is split into units of (block of query tokens, K/V head, key range). A unit's
//! query rows (every query head of the K/V group, for each token of the block) are scored
//! against tiles of [`TILE`] keys as a small register-blocked GEMM, with an online softmax
//! per row, then the tile's values are accumulated likewise. Keys are stored transposed in
//! tiles (`[head_dim][TILE]`), so the score GEMM broadcasts one query value and reads one
//! contiguous vector of keys per step; f16 is widened in registers as it is loaded (by
//! F16C on x86; the portable kernel widens a tile's K/V head once, into f32). For a
//! single query token the key range is split across threads (flash-decoding) and the
//! partial softmaxes merged.
//!
//! Storage: a layer is a list of [`Tile`]s of [`TILE`] slots each, which may lie anywhere
//! in memory (the pages of a paged cache, shared between sequences). The layer holds
//! `slots = tiles * TILE` positions, and position `p` lives in slot `p % slots`, so a
//! sliding-window cache is a ring buffer. With `kv_dim` values per position (all K/V
//! heads), a tile's keys are `[kv_dim][TILE]` and its values `[TILE][kv_dim]`.

use crate::ops::{exp, tanh};
use crate::quant::f16_to_f32;
use crate::threads::parallel_chunks_mut;
use std::ops::Range;

/// Keys per tile: one 512-bit vector of f32 scores.
pub const TILE: usize = 16;
/// Query rows per register block.
const ROWS: usize = 6;
/// Query rows per unit of work (before rounding to whole tokens).
const UNIT_ROWS: usize = 48;
/// Fewest key tiles per part when one query token's keys are split across threads.
const MIN_SPLIT_TILES: usize = 4;

#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies the q·k scores (usually `1 / sqrt(head_dim)`).
    pub scale: f32,
    /// A query at position `p` sees positions `p + 1 - window..=p` only.
    pub window: Option<usize>,
    /// Scores become `cap * tanh(score / cap)` after scaling.
    pub softcap: Option<f32>,
}

/// One tile of a layer: the keys (`[kv_dim][TILE]`, transposed) and values
/// (`[TILE][kv_dim]`) of [`TILE`] consecutive slots.
#[derive(Clone, Copy)]
pub struct Tile<'a, E> {
    pub keys: &'a [E],
    pub values: &'a [E],
}

/// One layer's tiles, in slot order (see the module docs); f16 as bits.
#[derive(Clone, Copy)]
pub enum KvLayer<'a> {
    F32(&'a [Tile<'a, f32>]),
    F16(&'a [Tile<'a, u16>]),
}

/// A writable [`Tile`].
pub enum TileMut<'a> {
    F32 {
        keys: &'a mut [f32],
        values: &'a mut [f32],
    },
    F16 {
        keys: &'a mut [u16],
        values: &'a mut [u16],
    },
}

/// Stores the key and value (`kv_dim` values each) of one position into slot `index` of
/// a tile.
pub fn store(tile: TileMut<'_>, kv_dim: usize, index: usize, key: &[f32], value: &[f32]) {
    fn put<E>(
        (keys, values): (&mut [E], &mut [E]),
        (kv_dim, index): (usize, usize),
        (key, value): (&[f32], &[f32]),
        conv: impl Fn(f32) -> E,
    ) {
        for (c, &x) in key[..kv_dim].iter().enumerate() {
            keys[c * TILE + index] = conv(x);
        }
        for (o, &x) in values[index * kv_dim..][..kv_dim].iter_mut().zip(value) {
            *o = conv(x);
        }
    }
    assert!(index < TILE, "slot {index} is outside a tile of {TILE}");
    let at = (kv_dim, index);
    match tile {
        TileMut::F32 { keys, values } => put((keys, values), at, (key, value), |x| x),
        TileMut::F16 { keys, values } => put((keys, values), at, (key, value), |x| {
            half::f16::from_f32(x).to_bits()
        }),
    }
}

/// Attention of the `n` queries `q` (`[n][n_heads * head_dim]`) at positions
/// `pos..pos + n` over the stored positions up to each query's own (they must have been
/// stored already, and with a window, not yet overwritten). Writes `out`, shaped like `q`.
pub fn attention(
    q: &[f32],
    kv: KvLayer<'_>,
    pos: usize,
    shape: &AttentionShape,
    threads: usize,
    out: &mut [f32],
) {
    let qd = shape.n_heads * shape.head_dim;
    assert!(q.len().is_multiple_of(qd), "queries are not whole rows");
    let run = QueryRun {
        rows: 0..q.len() / qd,
        kv,
        pos,
    };
    attention_runs(q, &[run], shape, threads, out)
}

/// The queries of one sequence in a batch (see [`attention_runs`]): query rows `rows` of
/// the batch, at positions `pos..pos + rows.len()`, attend over `kv`.
#[derive(Clone)]
pub struct QueryRun<'a> {
    pub rows: Range<usize>,
    pub kv: KvLayer<'a>,
    pub pos: usize,
}

/// [`attention`] of several sequences' queries at once: each run's rows of `q` over its
/// own keys and values, into the same rows of `out`. One dispatch to the threads covers
/// every run, so a batch of many short runs (one decode token per sequence) does not pay
/// a dispatch per sequence.
pub fn attention_runs(
    q: &[f32],
    runs: &[QueryRun<'_>],
    shape: &AttentionShape,
    threads: usize,
    out: &mut [f32],
) {
    attention_runs_with(Isa::detect(), q, runs, shape, threads, out)
}

fn attention_runs_with(
    isa: Isa,
    q: &[f32],
    runs: &[QueryRun<'_>],
    shape: &AttentionShape,
    threads: usize,
    out: &mut [f32],
) {
    let qd = shape.n_heads * shape.head_dim;
    let mut plans: Vec<Plan> = runs
        .iter()
        .map(|run| {
            let slots = match run.kv {
                KvLayer::F32(tiles) => tiles.len(),
                KvLayer::F16(tiles) => tiles.len(),
            } * TILE;
            Plan::new(run.rows.len(), slots, run.pos, shape)
        })
        .collect();
    // Split the key ranges only when the runs' units are too few to keep the threads busy.
    let units: usize = plans.iter().map(Plan::units).sum();
    for plan in &mut plans {
        plan.split_keys(units, threads);
    }
    // Every unit's partial result takes the largest stride, so that units are uniform.
    let stride = plans.iter().map(Plan::unit_stride).max().unwrap_or(0);
    // Each run's first unit in the batch's numbering, and the batch's units.
    let mut firsts = Vec::with_capacity(plans.len());
    let mut total = 0;
    for plan in &plans {
        firsts.push(total);
        total += plan.units();
    }
    if total == 0 {
        return;
    }
    let mut partials = vec![0f32; total * stride];
    parallel_chunks_mut(&mut partials, stride, threads, |units, parts| {
        let mut scratch = Scratch::new(stride / (shape.head_dim + 2), shape.head_dim);
        for (u, part) in units.zip(parts.chunks_exact_mut(stride)) {
            // The run this unit belongs to: the last one starting at or before it.
            let r = firsts.partition_point(|&f| f <= u) - 1;
            let (run, plan) = (&runs[r], &plans[r]);
            let unit = plan.unit(u - firsts[r]);
            let q = &q[run.rows.start * qd..run.rows.end * qd];
            run_unit(isa, plan, unit, q, run.kv, &mut scratch, part);
        }
    });
    for ((run, plan), first) in runs.iter().zip(&plans).zip(firsts) {
        let parts = &partials[first * stride..(first + plan.units()) * stride];
        plan.merge(
            parts,
            stride,
            &mut out[run.rows.start * qd..run.rows.end * qd],
        );
    }
}

/// How the batch is cut into units.
struct Plan {
    shape: AttentionShape,
    n: usize,
    pos: usize,
    slots: usize,
    group: usize,
    /// Tokens per query block, query blocks, key-range parts per block.
    block: usize,
    blocks: usize,
    splits: usize,
}

#[derive(Clone, Copy)]
struct Unit {
    /// Query tokens `t0..t1` of the batch.
    t0: usize,
    t1: usize,
    kv_head: usize,
    /// Key tiles (absolute position / TILE) `tiles.0..tiles.1`.
    tiles: (usize, usize),
}

impl Plan {
    /// The plan of `n` query tokens at `pos..pos + n` over `slots` stored positions.
    fn new(n: usize, slots: usize, pos: usize, shape: &AttentionShape) -> Plan {
        let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
        assert!(
            nkv > 0 && nh.is_multiple_of(nkv) && hd > 0,
            "bad shape {shape:?}"
        );
        let group = nh / nkv;
        let block = (UNIT_ROWS / group).clamp(1, n.max(1));
        Plan {
            shape: *shape,
            n,
            pos,
            slots,
            group,
            block,
            blocks: n.div_ceil(block),
            splits: 1,
        }
    }

    /// Splits each unit's key range in parts (flash-decoding) when `units`, those of the
    /// whole batch, are too few to keep `threads` busy.
    fn split_keys(&mut self, units: usize, threads: usize) {
        if threads > 1 && units > 0 && units < 4 * threads {
            let (lo, hi) = self.key_tiles(0, self.n);
            let most = ((hi - lo) / MIN_SPLIT_TILES).max(1);
            self.splits = (4 * threads).div_ceil(units).min(most);
        }
    }

    fn units(&self) -> usize {
        self.blocks * self.shape.n_kv_heads * self.splits
    }

    /// Floats of one unit's partial result: `[rows][max, sum, head_dim outputs]`.
    fn unit_stride(&self) -> usize {
        self.block * self.group * (self.shape.head_dim + 2)
    }

    /// The first key position a query at `p` sees.
    fn first_key(&self, p: usize) -> usize {
        self.shape.window.map_or(0, |w| (p + 1).saturating_sub(w))
    }

    /// Key tiles seen by query tokens `t0..t1`.
    fn key_tiles(&self, t0: usize, t1: usize) -> (usize, usize) {
        let lo = self.first_key(self.pos + t0);
        (lo / TILE, (self.pos + t1).div_ceil(TILE))
    }

    /// Unit `u`; the latest query blocks (the most keys) come first, so the threads that
    /// take the last units get the cheap ones.
    fn unit(&self, u: usize) -> Unit {
        let nkv = self.shape.n_kv_heads;
        let per_block = nkv * self.splits;
        let b = self.blocks - 1 - u / per_block;
        let (kv_head, split) = (u % per_block % nkv, u % per_block / nkv);
        let (t0, t1) = (b * self.block, ((b + 1) * self.block).min(self.n));
        let (lo, hi) = self.key_tiles(t0, t1);
        let per = (hi - lo).div_ceil(self.splits);
        let start = (lo + split * per).min(hi);
        Unit {
            t0,
            t1,
            kv_head,
            tiles: (start, (start + per).min(hi)),
        }
    }

    /// Combines the units' partial softmaxes, `stride` floats apart, into `out`.
    fn merge(&self, partials: &[f32], stride: usize, out: &mut [f32]) {
        let (nkv, hd, group) = (self.shape.n_kv_heads, self.shape.head_dim, self.group);
        let qd = self.shape.n_heads * hd;
        let per_block = nkv * self.splits;
        for u in (0..self.units()).filter(|u| u % per_block < nkv) {
            let unit = self.unit(u);
            for r in 0..(unit.t1 - unit.t0) * group {
                let (t, h) = (unit.t0 + r / group, unit.kv_head * group + r % group);
                let o = &mut out[t * qd + h * hd..][..hd];
                let row = |s: usize| &partials[(u + s * nkv) * stride + r * (hd + 2)..][..hd + 2];
                let max = (0..self.splits).fold(f32::NEG_INFINITY, |m, s| m.max(row(s)[0]));
                o.fill(0.0);
                let mut sum = 0.0;
                for s in 0..self.splits {
                    let p = row(s);
                    if p[0] == f32::NEG_INFINITY {
                        continue;
                    }
                    let w = exp(p[0] - max);
                    sum += w * p[1];
                    o.iter_mut().zip(&p[2..]).for_each(|(o, &x)| *o += w * x);
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// Per-thread buffers for one unit.
struct Scratch {
    /// One tile's keys and values of the unit's K/V head, widened from f16 (see
    /// [`HeadTiles`]).
    kv: Vec<f32>,
    /// `[rows][head_dim]` unnormalised outputs.
    o: Vec<f32>,
    /// `[rows]` scores, then probabilities, of the current tile.
    s: Vec<[f32; TILE]>,
    max: Vec<f32>,
    sum: Vec<f32>,
    /// Factor by which each row's earlier outputs shrink for the current tile.
    corr: Vec<f32>,
}

impl Scratch {
    /// Buffers for units of up to `rows` query rows.
    fn new(rows: usize, head_dim: usize) -> Scratch {
        Scratch {
            kv: vec![0.0; 2 * TILE * head_dim],
            o: vec![0.0; rows * head_dim],
            s: vec![[0.0; TILE]; rows],
            max: vec![0.0; rows],
            sum: vec![0.0; rows],
            corr: vec![0.0; rows],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    /// The variant for the matmul kernels' ISA ([`crate::kernels::isa`]), so that one
    /// choice (and one `SYNAPSE_KERNEL` override) holds for both: AVX-512 and AVX2 run
    /// their own variants, everything else (scalar, NEON) the portable one.
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::kernels::Isa as Kernels;
            match crate::kernels::isa() {
                Kernels::Avx512 => return Isa::Avx512,
                Kernels::Avx2 => return Isa::Avx2,
                Kernels::Scalar => {}
            }
        }
        Isa::Portable
    }
}

/// A stored element type: f32, or f16 bits.
trait Elem: Copy + Sync {
    /// `TILE` values from `src` as f32; `X86` when compiled with F16C and FMA.
    fn tile<const X86: bool>(src: &[Self]) -> [f32; TILE];
    fn get(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    fn tile<const X86: bool>(src: &[f32]) -> [f32; TILE] {
        src[..TILE].try_into().unwrap()
    }
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
}

/// f16 bits, which only the x86 kernels read in place (see [`HeadTiles`]).
#[cfg(target_arch = "x86_64")]
impl Elem for u16 {
    #[inline(always)]
    fn tile<const X86: bool>(src: &[u16]) -> [f32; TILE] {
        use std::arch::x86_64::{__m128i, __m256, _mm256_cvtph_ps, _mm_loadu_si128};
        const { assert!(X86, "the portable kernel widens f16 per tile") };
        let src: &[u16; TILE] = src[..TILE].try_into().unwrap();
        // SAFETY: `X86` is set only in code compiled for F16C on a CPU that has it, and
        // `src` holds 16 values.
        unsafe {
            let p = src.as_ptr() as *const __m128i;
            let halves = [
                _mm256_cvtph_ps(_mm_loadu_si128(p)),
                _mm256_cvtph_ps(_mm_loadu_si128(p.add(1))),
            ];
            std::mem::transmute::<[__m256; 2], [f32; TILE]>(halves)
        }
    }
    #[inline(always)]
    fn get(self) -> f32 {
        f16_to_f32(self)
    }
}

/// One tile of the unit's K/V head as a kernel reads it: keys `[head_dim][TILE]`, and
/// values `TILE` rows of `head_dim` each, `stride` apart.
struct HeadTile<'a, C> {
    keys: &'a [C],
    values: &'a [C],
    stride: usize,
}

/// Where a unit reads a layer: K/V head `head` of tile `tile`, `head_dim` values of rows
/// `kv_dim` long.
#[derive(Clone, Copy)]
struct HeadAt {
    tile: usize,
    head: usize,
    head_dim: usize,
    kv_dim: usize,
}

/// A layer's tiles as a kernel computing in `C` reads them: in place where `C` is the
/// stored type (f32; f16 on x86, widened by F16C as it is loaded), and as f32 for the
/// portable kernel, one instance for both stored types, which widens f16 once per tile
/// (in software, it would otherwise widen every key and value once per block of rows).
trait HeadTiles<C>: Copy {
    /// The keys and values `at` reads, widened into `buf` where they need it.
    fn head<'a>(self, at: HeadAt, buf: &'a mut [f32]) -> HeadTile<'a, C>
    where
        Self: 'a;
}

impl<'t, E: Elem> HeadTiles<E> for &'t [Tile<'t, E>] {
    #[inline(always)]
    fn head<'a>(self, at: HeadAt, _: &'a mut [f32]) -> HeadTile<'a, E>
    where
        Self: 'a,
    {
        let (tile, hd) = (&self[at.tile], at.head_dim);
        HeadTile {
            keys: &tile.keys[at.head * hd * TILE..][..hd * TILE],
            values: &tile.values[at.head * hd..],
            stride: at.kv_dim,
        }
    }
}

impl<'t> HeadTiles<f32> for KvLayer<'t> {
    #[inline(always)]
    fn head<'a>(self, at: HeadAt, buf: &'a mut [f32]) -> HeadTile<'a, f32>
    where
        Self: 'a,
    {
        let tile = match self {
            KvLayer::F32(tiles) => return tiles.head(at, buf),
            KvLayer::F16(tiles) => &tiles[at.tile],
        };
        let (head, hd, kvd) = (at.head, at.head_dim, at.kv_dim);
        let (keys, values) = buf.split_at_mut(hd * TILE);
        let src = &tile.keys[head * hd * TILE..][..hd * TILE];
        for (o, &h) in keys.iter_mut().zip(src) {
            *o = f16_to_f32(h);
        }
        for (j, row) in values.chunks_exact_mut(hd).enumerate() {
            for (o, &h) in row
                .iter_mut()
                .zip(&tile.values[j * kvd + head * hd..][..hd])
            {
                *o = f16_to_f32(h);
            }
        }
        HeadTile {
            keys,
            values,
            stride: hd,
        }
    }
}

#[inline(always)]
fn fma<const X86: bool>(a: f32, b: f32, c: f32) -> f32 {
    // Fused where the instruction exists; elsewhere `mul_add` would be a library call.
    if X86 || cfg!(target_arch = "aarch64") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

fn run_unit(
    isa: Isa,
    plan: &Plan,
    unit: Unit,
    q: &[f32],
    kv: KvLayer<'_>,
    scratch: &mut Scratch,
    part: &mut [f32],
) {
    // `kernels::isa()`, which `Isa::detect` follows, returns AVX-512 (or AVX2) only when
    // the CPU has the features these are compiled for (and more); the tests pass only
    // the variants the CPU has.
    #[cfg(target_arch = "x86_64")]
    match (isa, kv) {
        (Isa::Avx512, KvLayer::F32(t)) => {
            // SAFETY: `isa` is Avx512, so the CPU has AVX-512F, AVX2, FMA and F16C.
            return unsafe { unit_avx512(plan, unit, q, t, scratch, part) };
        }
        (Isa::Avx512, KvLayer::F16(t)) => {
            // SAFETY: `isa` is Avx512, so the CPU has AVX-512F, AVX2, FMA and F16C.
            return unsafe { unit_avx512(plan, unit, q, t, scratch, part) };
        }
        (Isa::Avx2, KvLayer::F32(t)) => {
            // SAFETY: `isa` is Avx2, so the CPU has AVX2, FMA and F16C.
            return unsafe { unit_avx2(plan, unit, q, t, scratch, part) };
        }
        (Isa::Avx2, KvLayer::F16(t)) => {
            // SAFETY: `isa` is Avx2, so the CPU has AVX2, FMA and F16C.
            return unsafe { unit_avx2(plan, unit, q, t, scratch, part) };
        }
        (Isa::Portable, _) => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let Isa::Portable = isa;
    unit_portable(plan, unit, q, kv, scratch, part)
}

/// What every unit of a call reads: its plan, the queries, and the layer's tiles.
struct Inputs<'a, T> {
    plan: &'a Plan,
    q: &'a [f32],
    tiles: T,
}

/// Defines `$name`, [`unit_kernel`] as a function of its own: for the x86 CPU features
/// `$features`, computing with the stored type, or portable, computing in f32. The inputs
/// are separate reference arguments, which tells the compiler that nothing the kernel
/// writes changes them.
macro_rules! unit_variant {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<E: Elem>(
            plan: &Plan,
            unit: Unit,
            q: &[f32],
            tiles: &[Tile<E>],
            scratch: &mut Scratch,
            part: &mut [f32],
        ) {
            unit_kernel::<_, E, true>(Inputs { plan, q, tiles }, unit, scratch, part)
        }
    };
    ($name:ident) => {
        #[inline(never)]
        fn $name(
            plan: &Plan,
            unit: Unit,
            q: &[f32],
            tiles: KvLayer<'_>,
            scratch: &mut Scratch,
            part: &mut [f32],
        ) {
            unit_kernel::<_, f32, false>(Inputs { plan, q, tiles }, unit, scratch, part)
        }
    };
}

unit_variant!(unit_avx512, "avx512f,avx2,fma,f16c");
unit_variant!(unit_avx2, "avx2,fma,f16c");
unit_variant!(unit_portable);

/// Rows of the next register block when `left` rows remain: up to `ROWS` on x86; 6, 3 or
/// 1 in the portable kernel, which is compiled for those three counts only (a group of 3
/// query heads per K/V head, SmolLM2's, or of 1, 2 or 6 still takes whole blocks); 1 in
/// the wasm32 module, for the browser's download: each further count costs it ~6 KB,
/// while attention is a few percent of a forward pass (Chromium's tok/s did not change).
const fn block_rows<const X86: bool>(left: usize) -> usize {
    match left {
        _ if cfg!(target_arch = "wasm32") => 1,
        ROWS.. => ROWS,
        _ if X86 => left,
        3.. => 3,
        _ => left,
    }
}

/// Runs `$f::<R>` for a block of `$rows` rows (a [`block_rows`] count), so that the row
/// count is a constant and the accumulators stay in registers.
macro_rules! by_rows {
    ($x86:expr, $rows:expr, $f:ident :: <$($g:tt),*> ($($arg:expr),*)) => {
        match $rows {
            1 => $f::<$($g,)* 1>($($arg),*),
            2 => $f::<$($g,)* 2>($($arg),*),
            3 => $f::<$($g,)* 3>($($arg),*),
            4 if $x86 => $f::<$($g,)* 4>($($arg),*),
            5 if $x86 => $f::<$($g,)* 5>($($arg),*),
            _ => $f::<$($g,)* ROWS>($($arg),*),
        }
    };
}

/// One unit: its rows' partial softmax (`max`, `sum`, unnormalised outputs) into `part`.
#[inline(always)]
fn unit_kernel<T: HeadTiles<C>, C: Elem, const X86: bool>(
    Inputs { plan, q, tiles }: Inputs<T>,
    unit: Unit,
    sc: &mut Scratch,
    part: &mut [f32],
) {
    let s = &plan.shape;
    let (hd, group, slots) = (s.head_dim, plan.group, plan.slots);
    let (qd, kvd) = (s.n_heads * hd, s.n_kv_heads * hd);
    let rows = (unit.t1 - unit.t0) * group;
    let qrow = |r: usize| {
        let (t, h) = (unit.t0 + r / group, unit.kv_head * group + r % group);
        &q[t * qd + h * hd..][..hd]
    };
    // Row r is the query at position pos + t0 + r / group; it sees keys first..=last.
    let last_of = |r: usize| plan.pos + unit.t0 + r / group;
    let first_of = |r: usize| plan.first_key(last_of(r));
    let (unit_first, unit_last) = (first_of(0), last_of(rows - 1));
    let (o, max, sum) = (
        &mut sc.o[..rows * hd],
        &mut sc.max[..rows],
        &mut sc.sum[..rows],
    );
    let widened = &mut sc.kv;
    o.fill(0.0);
    max.fill(f32::NEG_INFINITY);
    sum.fill(0.0);
    for tile in unit.tiles.0..unit.tiles.1 {
        let k0 = tile * TILE;
        let at = HeadAt {
            tile: k0 % slots / TILE,
            head: unit.kv_head,
            head_dim: hd,
            kv_dim: kvd,
        };
        let kv = tiles.head(at, widened);
        // Scores.
        let mut r = 0;
        while r < rows {
            let n = block_rows::<X86>(rows - r);
            let mut qs: [&[f32]; ROWS] = [&[]; ROWS];
            for (i, qs) in qs.iter_mut().enumerate() {
                *qs = qrow(r + i.min(n - 1));
            }
            by_rows!(X86, n, scores::<C, X86>(&qs, kv.keys, &mut sc.s[r..r + n]));
            r += n;
        }
        // Online softmax: the tile needs masking only where some row's range starts or
        // ends inside it.
        let full = k0 >= first_of(rows - 1) && k0 + TILE <= last_of(0) + 1;
        for r in 0..rows {
            let sr = &mut sc.s[r];
            for x in sr.iter_mut() {
                *x *= s.scale;
            }
            if let Some(cap) = s.softcap {
                for x in sr.iter_mut() {
                    *x = cap * tanh(*x / cap);
                }
            }
            if !full {
                let (first, last) = (first_of(r), last_of(r));
                for (j, x) in sr.iter_mut().enumerate() {
                    if k0 + j < first || k0 + j > last {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            let tile_max = reduce(*sr, |a, b| if a > b { a } else { b });
            if tile_max == f32::NEG_INFINITY {
                // Nothing visible to this row here.
                sr.fill(0.0);
                sc.corr[r] = 1.0;
                continue;
            }
            let new_max = max[r].max(tile_max);
            sc.corr[r] = exp(max[r] - new_max);
            max[r] = new_max;
            for x in sr.iter_mut() {
                // Masked keys must weigh exactly zero: their slots may hold stale values.
                *x = if *x == f32::NEG_INFINITY {
                    0.0
                } else {
                    exp(*x - new_max)
                };
            }
            sum[r] = sum[r] * sc.corr[r] + reduce(*sr, |a, b| a + b);
        }
        // Probabilities times values, for the keys some row sees.
        let j0 = unit_first.saturating_sub(k0).min(TILE);
        let j1 = (unit_last + 1 - k0).min(TILE);
        let mut r = 0;
        while r < rows {
            let n = block_rows::<X86>(rows - r);
            by_rows!(
                X86,
                n,
                accumulate::<C, X86>(
                    &sc.s[r..r + n],
                    &sc.corr[r..r + n],
                    &kv.values[j0 * kv.stride..],
                    (kv.stride, j1 - j0),
                    j0,
                    &mut o[r * hd..(r + n) * hd]
                )
            );
            r += n;
        }
    }
    for r in 0..rows {
        let p = &mut part[r * (hd + 2)..][..hd + 2];
        p[0] = max[r];
        p[1] = sum[r];
        p[2..].copy_from_slice(&o[r * hd..][..hd]);
    }
}

/// Folds a tile's lanes pairwise, in a tree that vectorises (a left fold would be a
/// chain of scalar operations as long as the tile).
#[inline(always)]
fn reduce(mut x: [f32; TILE], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = TILE / 2;
    while width > 0 {
        for i in 0..width {
            x[i] = f(x[i], x[i + width]);
        }
        width /= 2;
    }
    x[0]
}

/// Independent accumulators per row wanted for `R` rows: an FMA takes a few cycles to
/// produce its result, so a short block of rows must carry several sums at once to keep
/// the FMA units busy.
const fn lanes_per_row(r: usize) -> usize {
    if r <= 3 {
        2
    } else {
        1
    }
}

/// Raw q·k of `R` query rows against a key tile `[head_dim][TILE]`.
#[inline(always)]
fn scores<E: Elem, const X86: bool, const R: usize>(
    q: &[&[f32]; ROWS],
    ktile: &[E],
    out: &mut [[f32; TILE]],
) {
    #[inline(always)]
    fn step<E: Elem, const X86: bool, const R: usize>(
        acc: &mut [[f32; TILE]; R],
        q: &[&[f32]; ROWS],
        ktile: &[E],
        d: usize,
    ) {
        let k = E::tile::<X86>(&ktile[d * TILE..]);
        for (a, qr) in acc.iter_mut().zip(q) {
            let x = qr[d];
            for (a, &k) in a.iter_mut().zip(&k) {
                *a = fma::<X86>(x, k, *a);
            }
        }
    }
    let hd = q[0].len();
    // Plain arrays (not indexed by a variable), so that they live in registers; short
    // row blocks keep a second set of sums, over the odd dimensions.
    let mut even = [[0f32; TILE]; R];
    let mut odd = [[0f32; TILE]; R];
    let mut d = 0;
    if lanes_per_row(R) == 2 {
        while d + 2 <= hd {
            step::<E, X86, R>(&mut even, q, ktile, d);
            step::<E, X86, R>(&mut odd, q, ktile, d + 1);
            d += 2;
        }
    }
    for d in d..hd {
        step::<E, X86, R>(&mut even, q, ktile, d);
    }
    for ((o, e), od) in out[..R].iter_mut().zip(&even).zip(&odd) {
        for ((o, e), od) in o.iter_mut().zip(e).zip(od) {
            *o = e + od;
        }
    }
}

/// `o[r] = o[r] * corr[r] + sum_j p[r][j0 + j] * v[j]` for `R` rows, `v` being the
/// `keys` visible value rows of the tile, `stride` apart.
#[inline(always)]
fn accumulate<E: Elem, const X86: bool, const R: usize>(
    p: &[[f32; TILE]],
    corr: &[f32],
    v: &[E],
    (stride, keys): (usize, usize),
    j0: usize,
    o: &mut [f32],
) {
    /// Dimensions d..d + width * TILE (`width` is a constant wherever this is inlined).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn block<E: Elem, const X86: bool, const R: usize>(
        (p, corr, v): (&[[f32; TILE]], &[f32], &[E]),
        (stride, keys): (usize, usize),
        j0: usize,
        o: &mut [f32],
        d: usize,
        width: usize,
    ) {
        let hd = o.len() / R;
        // Fixed sizes, so the loops over rows unroll.
        let (p, corr): (&[[f32; TILE]; R], &[f32; R]) =
            (p[..R].try_into().unwrap(), corr[..R].try_into().unwrap());
        // Separate plain arrays, so that they live in registers.
        let mut acc = [[[0f32; TILE]; R]; 2];
        let [first, second] = &mut acc;
        for (c, acc) in [first, second].into_iter().enumerate().take(width) {
            for (r, a) in acc.iter_mut().enumerate() {
                let src = &o[r * hd + d + c * TILE..][..TILE];
                for (a, &x) in a.iter_mut().zip(src) {
                    *a = x * corr[r];
                }
            }
        }
        let [first, second] = &mut acc;
        for j in 0..keys {
            let row = &v[j * stride + d..];
            let x = E::tile::<X86>(row);
            for (a, pr) in first.iter_mut().zip(p) {
                let w = pr[j0 + j];
                for (a, &x) in a.iter_mut().zip(&x) {
                    *a = fma::<X86>(w, x, *a);
                }
            }
            if width == 2 {
                let x = E::tile::<X86>(&row[TILE..]);
                for (a, pr) in second.iter_mut().zip(p) {
                    let w = pr[j0 + j];
                    for (a, &x) in a.iter_mut().zip(&x) {
                        *a = fma::<X86>(w, x, *a);
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate().take(width) {
            for (r, a) in acc.iter().enumerate() {
                o[r * hd + d + c * TILE..][..TILE].copy_from_slice(a);
            }
        }
    }
    let hd = o.len() / R;
    let width = const { lanes_per_row(R) };
    let mut d = 0;
    while d + width * TILE <= hd {
        block::<E, X86, R>((p, corr, v), (stride, keys), j0, o, d, width);
        d += width * TILE;
    }
    while d + TILE <= hd {
        block::<E, X86, R>((p, corr, v), (stride, keys), j0, o, d, 1);
        d += TILE;
    }
    // Head dimensions that are not a multiple of the tile.
    for d in d..hd {
        for r in 0..R {
            let mut a = o[r * hd + d] * corr[r];
            for j in 0..keys {
                a = fma::<X86>(p[r][j0 + j], v[j * stride + d].get(), a);
            }
            o[r * hd + d] = a;
        }
    }
}

/// Plain softmax attention in f64, the oracle for tests: `keys` and `values` are
/// `[position][n_kv_heads * head_dim]` for positions `0..pos + n`.
pub fn reference_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    pos: usize,
    s: &AttentionShape,
) -> Vec<f32> {
    let (hd, qd, kvd) = (
        s.head_dim,
        s.n_heads * s.head_dim,
        s.n_kv_heads * s.head_dim,
    );
    let group = s.n_heads / s.n_kv_heads;
    let mut out = vec![0f32; q.len()];
    for t in 0..q.len() / qd {
        let p = pos + t;
        let first = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
        for h in 0..s.n_heads {
            let qh = &q[t * qd + h * hd..][..hd];
            let off = (h / group) * hd;
            let scores: Vec<f64> = (first..=p)
                .map(|k| {
                    let dot: f64 = qh
                        .iter()
                        .zip(&keys[k * kvd + off..][..hd])
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    let x = dot * s.scale as f64;
                    s.softcap.map_or(x, |c| c as f64 * (x / c as f64).tanh())
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = w.iter().sum();
            for d in 0..hd {
                let acc: f64 = w
                    .iter()
                    .zip(first..=p)
                    .map(|(wk, k)| wk * values[k * kvd + off + d] as f64)
                    .sum();
                out[t * qd + h * hd + d] = (acc / total) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::Coverage;
    // On wasm32 these run under Node (scripts/test-wasm.sh), the portable variant with
    // SIMD128.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rng(mut seed: u32) -> impl FnMut() -> f32 {
        move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
        }
    }

    /// Every kernel variant this CPU can run, from its features (those each variant's
    /// `target_feature` names).
    fn isas() -> Vec<Isa> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                isas.push(Isa::Avx2);
                if has!("avx512f") {
                    isas.push(Isa::Avx512);
                }
            }
        }
        isas
    }

    /// Attention runs the variant of the matmul kernels' ISA, so `SYNAPSE_KERNEL=scalar`
    /// makes it portable too.
    #[test]
    fn the_variant_follows_the_kernels_isa() {
        let isa = Isa::detect();
        assert!(isas().contains(&isa), "{isa:?} is not on this CPU");
        if crate::kernels::isa() == crate::kernels::Isa::Scalar {
            assert_eq!(isa, Isa::Portable);
        }
    }

    #[test]
    fn f16_widening_matches_half() {
        let mut covered = Coverage::new("f16_widening_matches_half", isas());
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = f16_to_f32(bits);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{bits:#x}"
            );
            let mut tile = [0u16; TILE];
            tile[5] = bits;
            for isa in isas() {
                covered.ran(isa);
                let got = match isa {
                    // The portable kernel's widening, of a one-dimensional head.
                    Isa::Portable => {
                        let tiles = [Tile {
                            keys: &tile[..],
                            values: &tile[..],
                        }];
                        let mut buf = [0f32; 2 * TILE];
                        let at = HeadAt {
                            tile: 0,
                            head: 0,
                            head_dim: 1,
                            kv_dim: 1,
                        };
                        let head = KvLayer::F16(&tiles).head(at, &mut buf);
                        assert_eq!(head.keys[5].to_bits(), head.values[5].to_bits());
                        head.keys[5]
                    }
                    #[cfg(target_arch = "x86_64")]
                    _ => u16::tile::<true>(&tile)[5],
                };
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{bits:#x}"
                );
            }
        }
        covered.finish();
    }

    /// Writes positions `0..total` in batches of `batch` into a layer of `slots` positions,
    /// running attention after each write, and compares every output with the reference
    /// over the same (rounded, for f16) keys and values, with every kernel variant. The
    /// layer's tiles lie in memory in reverse order, as pages of a paged cache may.
    #[allow(clippy::too_many_arguments)]
    fn check(
        covered: &mut Coverage<Isa>,
        shape: AttentionShape,
        f16: bool,
        slots: usize,
        total: usize,
        batch: usize,
        threads: usize,
    ) {
        let mut rand = rng((shape.head_dim * 31 + total * 7 + batch) as u32);
        let (qd, kvd) = (
            shape.n_heads * shape.head_dim,
            shape.n_kv_heads * shape.head_dim,
        );
        let round = |x: f32| {
            if f16 {
                half::f16::from_f32(x).to_f32()
            } else {
                x
            }
        };
        let keys: Vec<f32> = (0..total * kvd).map(|_| round(rand())).collect();
        let values: Vec<f32> = (0..total * kvd).map(|_| round(rand())).collect();
        let q: Vec<f32> = (0..total * qd).map(|_| rand()).collect();
        let (tiles, page) = (slots / TILE, TILE * kvd);
        let page_of = |tile: usize| tiles - 1 - tile;
        let (mut k32, mut v32) = (vec![0f32; slots * kvd], vec![0f32; slots * kvd]);
        let (mut k16, mut v16) = (vec![0u16; slots * kvd], vec![0u16; slots * kvd]);
        for pos in (0..total).step_by(batch) {
            let n = batch.min(total - pos);
            for p in pos..pos + n {
                let (key, value) = (&keys[p * kvd..][..kvd], &values[p * kvd..][..kvd]);
                let at = page_of(p % slots / TILE) * page..;
                let tile = if f16 {
                    TileMut::F16 {
                        keys: &mut k16[at.clone()][..page],
                        values: &mut v16[at][..page],
                    }
                } else {
                    TileMut::F32 {
                        keys: &mut k32[at.clone()][..page],
                        values: &mut v32[at][..page],
                    }
                };
                store(tile, kvd, p % TILE, key, value);
            }
            fn layer<'a, E>(
                k: &'a [E],
                v: &'a [E],
                tiles: usize,
                page_of: impl Fn(usize) -> usize,
            ) -> Vec<Tile<'a, E>> {
                let page = k.len() / tiles;
                (0..tiles)
                    .map(|t| Tile {
                        keys: &k[page_of(t) * page..][..page],
                        values: &v[page_of(t) * page..][..page],
                    })
                    .collect()
            }
            let (t32, t16) = (
                layer(&k32, &v32, tiles, page_of),
                layer(&k16, &v16, tiles, page_of),
            );
            let layer = if f16 {
                KvLayer::F16(&t16)
            } else {
                KvLayer::F32(&t32)
            };
            let qb = &q[pos * qd..(pos + n) * qd];
            let want = reference_attention(qb, &keys, &values, pos, &shape);
            for isa in isas() {
                covered.ran(isa);
                let mut out = vec![f32::NAN; n * qd];
                let run = QueryRun {
                    rows: 0..n,
                    kv: layer,
                    pos,
                };
                attention_runs_with(isa, qb, &[run], &shape, threads, &mut out);
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "{isa:?} {shape:?} f16 {f16} slots {slots} pos {pos} n {n} index {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// Several sequences in one call, each with its own layer, context and number of
    /// query rows (decode tokens beside a prompt chunk), match the reference one by one.
    #[test]
    fn runs_of_several_sequences_match_each_alone() {
        let test = "runs_of_several_sequences_match_each_alone";
        let mut covered = Coverage::new(test, isas());
        let s = shape(6, 2, 16);
        let (qd, kvd) = (6 * 16, 2 * 16);
        let mut rand = rng(11);
        // (stored positions before the queries, query rows)
        let runs: [(usize, usize); 5] = [(0, 1), (16, 1), (40, 3), (100, 1), (7, 9)];
        let mut data = Vec::new();
        let mut rows = 0;
        for &(pos, n) in &runs {
            let total = pos + n;
            let keys: Vec<f32> = (0..total * kvd).map(|_| rand()).collect();
            let values: Vec<f32> = (0..total * kvd).map(|_| rand()).collect();
            let slots = total.div_ceil(TILE) * TILE;
            let (mut k, mut v) = (vec![0f32; slots * kvd], vec![0f32; slots * kvd]);
            for p in 0..total {
                let at = p / TILE * TILE * kvd..;
                let tile = TileMut::F32 {
                    keys: &mut k[at.clone()][..TILE * kvd],
                    values: &mut v[at][..TILE * kvd],
                };
                store(
                    tile,
                    kvd,
                    p % TILE,
                    &keys[p * kvd..][..kvd],
                    &values[p * kvd..][..kvd],
                );
            }
            data.push((keys, values, k, v, rows..rows + n, pos));
            rows += n;
        }
        let q: Vec<f32> = (0..rows * qd).map(|_| rand()).collect();
        let layers: Vec<Vec<Tile<f32>>> = data
            .iter()
            .map(|(.., k, v, _, _)| {
                let page = TILE * kvd;
                (0..k.len() / page)
                    .map(|t| Tile {
                        keys: &k[t * page..][..page],
                        values: &v[t * page..][..page],
                    })
                    .collect()
            })
            .collect();
        let query_runs: Vec<QueryRun> = data
            .iter()
            .zip(&layers)
            .map(|((.., rows, pos), tiles)| QueryRun {
                rows: rows.clone(),
                kv: KvLayer::F32(tiles),
                pos: *pos,
            })
            .collect();
        for isa in isas() {
            covered.ran(isa);
            for threads in [1, 2, 3] {
                let mut out = vec![f32::NAN; rows * qd];
                attention_runs_with(isa, &q, &query_runs, &s, threads, &mut out);
                for (keys, values, _, _, rows, pos) in &data {
                    let range = rows.start * qd..rows.end * qd;
                    let want = reference_attention(&q[range.clone()], keys, values, *pos, &s);
                    for (a, b) in out[range].iter().zip(&want) {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{isa:?} t{threads} pos {pos}: {a} vs {b}"
                        );
                    }
                }
            }
        }
        covered.finish();
    }

    fn shape(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> AttentionShape {
        AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            window: None,
            softcap: None,
        }
    }

    #[test]
    fn matches_reference_for_gqa_mqa_mha_and_odd_head_dims() {
        let test = "matches_reference_for_gqa_mqa_mha_and_odd_head_dims";
        let mut covered = Coverage::new(test, isas());
        for (s, f16) in [
            (shape(9, 3, 64), false),
            (shape(9, 3, 64), true),
            (shape(8, 1, 80), true),
            (shape(4, 4, 96), false),
            (shape(2, 1, 256), true),
            (shape(4, 2, 24), false),
            (shape(32, 2, 16), true),
        ] {
            // Prefill in batches with tails, then single-token decode steps.
            check(&mut covered, s, f16, 144, 100, 37, 2);
            check(&mut covered, s, f16, 144, 70, 1, 3);
        }
        covered.finish();
    }

    #[test]
    fn single_thread_and_split_keys_agree_with_reference() {
        let test = "single_thread_and_split_keys_agree_with_reference";
        let mut covered = Coverage::new(test, isas());
        for threads in [1, 2, 4] {
            check(&mut covered, shape(9, 3, 64), true, 640, 600, 300, threads);
        }
        covered.finish();
    }

    #[test]
    fn sliding_window_wraps_the_ring_buffer() {
        let mut covered = Coverage::new("sliding_window_wraps_the_ring_buffer", isas());
        for (window, batch) in [(16, 1), (20, 8), (33, 16), (50, 64)] {
            let s = AttentionShape {
                window: Some(window),
                ..shape(6, 2, 32)
            };
            let slots = (window + batch - 1).next_multiple_of(TILE);
            for f16 in [false, true] {
                check(&mut covered, s, f16, slots, 300, batch, 2);
            }
        }
        covered.finish();
    }

    #[test]
    fn softcap_and_explicit_scale() {
        let mut covered = Coverage::new("softcap_and_explicit_scale", isas());
        let s = AttentionShape {
            scale: 0.9,
            softcap: Some(3.0),
            ..shape(4, 2, 48)
        };
        check(&mut covered, s, false, 96, 90, 13, 2);
        let s = AttentionShape {
            window: Some(24),
            ..s
        };
        check(&mut covered, s, true, 48, 90, 13, 2);
        covered.finish();
    }
}
