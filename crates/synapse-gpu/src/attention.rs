//! The key/value cache's pages on the GPU and attention over them (shaders/ops/kv.wgsl,
//! kv_write.wgsl, attention.wgsl).

use crate::kernel::{Kernel, WORKGROUP};
use crate::Gpu;
use std::ops::Range;
use synapse_inference::kv_cache::TILE;
use synapse_inference::model::backend::AttentionShape;

const KV: &str = include_str!("shaders/ops/kv.wgsl");
const KV_WRITE: Kernel = Kernel {
    name: "kv_write",
    source: &[KV, include_str!("shaders/ops/kv_write.wgsl")],
    reduction: None,
};
const ATTENTION: Kernel = Kernel {
    name: "attention",
    source: &[KV, include_str!("shaders/ops/attention.wgsl")],
    reduction: Some(&WORKGROUP),
};

/// Where one layer of a sequence's keys and values lie: a buffer of f32 pages in the
/// layout of the engine's host pages (page after page; in each, layer after layer, a
/// tile's keys as `[kv_dim][TILE]`, then its values as `[TILE][kv_dim]`), the sequence's
/// page per tile of slots, and the cache's geometry.
pub struct KvPlacement<'a> {
    pub pages: &'a wgpu::Buffer,
    pub table: &'a [u32],
    /// Slots of the ring (position p is in slot p % slots).
    pub slots: usize,
    pub n_layers: usize,
    pub layer: usize,
}

impl Gpu {
    /// The parameters kv.wgsl reads, for `rows` of the batch starting at position
    /// `first_pos`.
    fn kv_params(
        kv: &KvPlacement,
        shape: &AttentionShape,
        rows: &Range<usize>,
        first_pos: usize,
    ) -> [u32; 12] {
        let kv_dim = shape.n_kv_heads * shape.head_dim;
        let words = [
            rows.len(),
            rows.start,
            first_pos,
            kv.slots,
            kv.n_layers * 2 * TILE * kv_dim,
            kv.layer * 2 * TILE * kv_dim,
            shape.n_heads,
            shape.n_kv_heads,
            shape.head_dim,
            shape.window.unwrap_or(0),
        ]
        .map(|w| w as u32);
        let [a, b, c, d, e, f, g, h, i, j] = words;
        let softcap = shape.softcap.unwrap_or(0.0);
        [
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            i,
            j,
            shape.scale.to_bits(),
            softcap.to_bits(),
        ]
    }

    /// Writes `rows` of `keys` and `values` (rows of the shape's kv_dim) to the slots of
    /// positions `first_pos..`.
    pub fn encode_kv_write(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kv: &KvPlacement,
        shape: &AttentionShape,
        (keys, values): (&wgpu::Buffer, &wgpu::Buffer),
        (rows, first_pos): (Range<usize>, usize),
    ) {
        let params = Gpu::kv_params(kv, shape, &rows, first_pos);
        let table = self.upload_words(kv.table);
        let kv_dim = shape.n_kv_heads * shape.head_dim;
        let groups = [kv_dim.div_ceil(64) as u32, rows.len() as u32, 1];
        let buffers = [&table, kv.pages, keys, values];
        self.dispatch(encoder, &KV_WRITE, &params, &buffers, groups);
    }

    /// Attends `rows` of queries `q` (rows of n_heads * head_dim), at positions
    /// `first_pos..`, over their sequence's keys and values up to each one's position,
    /// into the same rows of `out`.
    pub fn encode_attention(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kv: &KvPlacement,
        shape: &AttentionShape,
        (q, out): (&wgpu::Buffer, &wgpu::Buffer),
        (rows, first_pos): (Range<usize>, usize),
    ) {
        assert!(shape.head_dim <= 256, "heads of up to 256 values");
        let params = Gpu::kv_params(kv, shape, &rows, first_pos);
        let table = self.upload_words(kv.table);
        let groups = [rows.len() as u32, shape.n_heads as u32, 1];
        let buffers = [&table, kv.pages, q, out];
        self.dispatch(encoder, &ATTENTION, &params, &buffers, groups);
    }
}
