//! The key/value cache: every layer's keys and values, in f32 or f16, in the layout the
//! attention kernel reads (see `synapse_core::attention`). Without a sliding window it
//! holds every position of the context; with one it is a ring buffer of the window plus
//! one batch, so memory stays bounded however long the generation.

use synapse_core::attention::{self, AttentionShape, KvLayer, KvLayerMut, TILE};

/// Element type of the cached keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

enum Store {
    F32 {
        keys: Vec<f32>,
        values: Vec<f32>,
    },
    /// f16 bits.
    F16 {
        keys: Vec<u16>,
        values: Vec<u16>,
    },
}

pub struct KvCache {
    store: Store,
    kv_dim: usize,
    /// Positions held per layer; position `p` lives in slot `p % slots`.
    slots: usize,
    context: usize,
    window: Option<usize>,
    max_batch: usize,
}

impl KvCache {
    /// A cache for `context` positions whose forward batches have at most `max_batch`
    /// tokens. Zeroed memory from the allocator is not touched until written, so a long
    /// context costs resident memory only for the positions actually used.
    pub fn new(
        n_layers: usize,
        kv_dim: usize,
        context: usize,
        window: Option<usize>,
        max_batch: usize,
        kv_type: KvType,
    ) -> KvCache {
        let max_batch = max_batch.max(1);
        // A batch written at `pos` must not overwrite what its first query still sees,
        // `pos + 1 - window..pos`.
        let needed = window.map_or(context, |w| context.min(w.max(1) + max_batch - 1));
        let slots = needed.max(1).next_multiple_of(TILE);
        let len = n_layers * slots * kv_dim;
        let store = match kv_type {
            KvType::F32 => Store::F32 {
                keys: vec![0.0; len],
                values: vec![0.0; len],
            },
            KvType::F16 => Store::F16 {
                keys: vec![0; len],
                values: vec![0; len],
            },
        };
        KvCache {
            store,
            kv_dim,
            slots,
            context,
            window,
            max_batch,
        }
    }

    /// The context length in positions.
    pub fn capacity(&self) -> usize {
        self.context
    }

    pub fn kv_type(&self) -> KvType {
        match self.store {
            Store::F32 { .. } => KvType::F32,
            Store::F16 { .. } => KvType::F16,
        }
    }

    /// Bytes of key and value storage.
    pub fn allocated_bytes(&self) -> usize {
        match &self.store {
            Store::F32 { keys, values } => (keys.len() + values.len()) * 4,
            Store::F16 { keys, values } => (keys.len() + values.len()) * 2,
        }
    }

    fn layer_range(&self, layer: usize) -> std::ops::Range<usize> {
        let len = self.slots * self.kv_dim;
        layer * len..(layer + 1) * len
    }

    /// Stores the keys and values (`[n][kv_dim]`) of the consecutive positions from `pos`.
    pub fn write(&mut self, layer: usize, pos: usize, keys: &[f32], values: &[f32]) {
        let n = keys.len() / self.kv_dim;
        assert!(pos + n <= self.context);
        // A ring buffer only has room for the window plus one batch.
        assert!(self.window.is_none() || n <= self.max_batch);
        let r = self.layer_range(layer);
        let layer = match &mut self.store {
            Store::F32 { keys, values } => KvLayerMut::F32 {
                keys: &mut keys[r.clone()],
                values: &mut values[r],
            },
            Store::F16 { keys, values } => KvLayerMut::F16 {
                keys: &mut keys[r.clone()],
                values: &mut values[r],
            },
        };
        attention::store_kv(layer, self.slots, self.kv_dim, pos, keys, values);
    }

    /// Attention of the queries `q` (`[n][n_heads * head_dim]`) at positions `pos..pos + n`,
    /// after their keys and values were written, into `out` (shaped like `q`).
    pub fn attention(
        &self,
        layer: usize,
        q: &[f32],
        pos: usize,
        shape: &AttentionShape,
        threads: usize,
        out: &mut [f32],
    ) {
        assert_eq!(shape.n_kv_heads * shape.head_dim, self.kv_dim);
        assert_eq!(
            shape.window, self.window,
            "the cache is sized for its window"
        );
        let r = self.layer_range(layer);
        let kv = match &self.store {
            Store::F32 { keys, values } => KvLayer::F32 {
                keys: &keys[r.clone()],
                values: &values[r],
            },
            Store::F16 { keys, values } => KvLayer::F16 {
                keys: &keys[r.clone()],
                values: &values[r],
            },
        };
        attention::attention(q, kv, self.slots, pos, shape, threads, out);
    }

    /// Whether a session of `current_len` positions can go back to `new_len` and continue:
    /// false when a ring buffer has overwritten positions the next query would see.
    pub fn can_rewind(&self, current_len: usize, new_len: usize) -> bool {
        if new_len > current_len {
            return false;
        }
        match self.window {
            None => true,
            Some(w) => (new_len + 1).saturating_sub(w) >= current_len.saturating_sub(self.slots),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synapse_core::attention::reference_attention;

    fn shape(window: Option<usize>) -> AttentionShape {
        AttentionShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 32,
            scale: 0.17,
            window,
            softcap: None,
        }
    }

    /// Feeds `total` positions in batches of `batch` and checks each batch's attention
    /// against the reference over the whole history (rounded as the cache stores it).
    fn run(
        kv_type: KvType,
        window: Option<usize>,
        context: usize,
        total: usize,
        batch: usize,
    ) -> KvCache {
        let s = shape(window);
        let (kvd, qd) = (64, 192);
        let mut cache = KvCache::new(2, kvd, context, window, batch, kv_type);
        let mut seed = 7u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
        };
        let round = |x: f32| match kv_type {
            KvType::F32 => x,
            KvType::F16 => half::f16::from_f32(x).to_f32(),
        };
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for pos in (0..total).step_by(batch) {
            let n = batch.min(total - pos);
            for layer in 0..2 {
                let k: Vec<f32> = (0..n * kvd).map(|_| rand()).collect();
                let v: Vec<f32> = (0..n * kvd).map(|_| rand()).collect();
                let q: Vec<f32> = (0..n * qd).map(|_| rand()).collect();
                cache.write(layer, pos, &k, &v);
                if layer == 1 {
                    keys.extend(k.iter().map(|&x| round(x)));
                    values.extend(v.iter().map(|&x| round(x)));
                    let mut out = vec![0.0; n * qd];
                    cache.attention(layer, &q, pos, &s, 2, &mut out);
                    let want = reference_attention(&q, &keys, &values, pos, &s);
                    for (a, b) in out.iter().zip(&want) {
                        assert!((a - b).abs() < 1e-4, "{kv_type:?} pos {pos}: {a} vs {b}");
                    }
                }
            }
        }
        cache
    }

    #[test]
    fn f32_and_f16_caches_match_the_reference() {
        for kv_type in [KvType::F32, KvType::F16] {
            let cache = run(kv_type, None, 200, 200, 23);
            assert_eq!(cache.kv_type(), kv_type);
        }
        let f32_bytes = KvCache::new(2, 64, 200, None, 8, KvType::F32).allocated_bytes();
        let f16_bytes = KvCache::new(2, 64, 200, None, 8, KvType::F16).allocated_bytes();
        assert_eq!(f32_bytes, 2 * f16_bytes);
    }

    #[test]
    fn sliding_window_memory_stays_bounded() {
        let cache = run(KvType::F16, Some(40), 100_000, 700, 8);
        let long = KvCache::new(2, 64, 10_000_000, Some(40), 8, KvType::F16);
        assert_eq!(cache.allocated_bytes(), long.allocated_bytes());
        // Window + batch - 1 positions, rounded up to whole key tiles.
        assert_eq!(long.allocated_bytes(), 2 * 48 * 64 * 2 * 2);
        run(KvType::F32, Some(16), 1000, 300, 1);
    }

    #[test]
    fn rewinding_a_ring_buffer_is_refused_once_overwritten() {
        let flat = KvCache::new(1, 64, 1000, None, 8, KvType::F16);
        assert!(flat.can_rewind(900, 0) && flat.can_rewind(900, 899));
        assert!(!flat.can_rewind(10, 11));
        // 48 slots: after 100 positions, 52..100 are held.
        let ring = KvCache::new(1, 64, 1000, Some(40), 8, KvType::F16);
        assert!(ring.can_rewind(100, 100) && ring.can_rewind(100, 91));
        assert!(!ring.can_rewind(100, 90));
        assert!(ring.can_rewind(30, 0));
    }
}
