//! The key/value cache: every layer's keys and values for each position seen so far,
//! allocated once for the session's context length.

use synapse_core::attention::{causal_attention, AttentionShape};

/// The element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

pub struct KvCache {
    /// `[layer][position][kv_dim]`.
    keys: Vec<f32>,
    values: Vec<f32>,
    kv_dim: usize,
    capacity: usize,
}

impl KvCache {
    /// Zeroed memory from the allocator is not touched until written, so a long context
    /// costs resident memory only for the positions actually used.
    pub fn new(
        n_layers: usize,
        kv_dim: usize,
        context: usize,
        _window: Option<usize>,
        _max_batch: usize,
        _kv_type: KvType,
    ) -> KvCache {
        let len = n_layers * context * kv_dim;
        KvCache {
            keys: vec![0.0; len],
            values: vec![0.0; len],
            kv_dim,
            capacity: context,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn range(&self, layer: usize, positions: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let base = layer * self.capacity * self.kv_dim;
        base + positions.start * self.kv_dim..base + positions.end * self.kv_dim
    }

    /// Stores the keys and values of consecutive positions starting at `pos`.
    pub fn write(&mut self, layer: usize, pos: usize, keys: &[f32], values: &[f32]) {
        let r = self.range(layer, pos..pos + keys.len() / self.kv_dim);
        self.keys[r.clone()].copy_from_slice(keys);
        self.values[r].copy_from_slice(values);
    }

    /// Attention of the queries of positions `pos..` (written already) over the cache.
    pub fn attention(
        &self,
        layer: usize,
        q: &[f32],
        pos: usize,
        shape: &AttentionShape,
        threads: usize,
        out: &mut [f32],
    ) {
        let n = q.len() / (shape.n_heads * shape.head_dim);
        let r = self.range(layer, 0..pos + n);
        causal_attention(
            q,
            &self.keys[r.clone()],
            &self.values[r],
            pos,
            *shape,
            threads,
            out,
        );
    }

    pub fn allocated_bytes(&self) -> usize {
        (self.keys.len() + self.values.len()) * 4
    }

    pub fn can_rewind(&self, _current_len: usize, _new_len: usize) -> bool {
        true
    }
}
