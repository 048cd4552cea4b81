//! The key/value cache: every layer's keys and values for each position seen so far,
//! allocated once for the session's context length.

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
    pub fn new(n_layers: usize, kv_dim: usize, capacity: usize) -> KvCache {
        let len = n_layers * capacity * kv_dim;
        KvCache {
            keys: vec![0.0; len],
            values: vec![0.0; len],
            kv_dim,
            capacity,
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

    /// Keys and values of positions `0..len` of `layer`.
    pub fn layer(&self, layer: usize, len: usize) -> (&[f32], &[f32]) {
        let r = self.range(layer, 0..len);
        (&self.keys[r.clone()], &self.values[r])
    }
}
