//! Attention over key/value pages on the GPU against synapse_core's f64 oracle
//! (`reference_attention`), with the pages in the engine's layout: pages shuffled in the
//! page table, grouped-query heads, a sliding window over a ring of slots, soft-capping.

mod common;

use common::{gpus, values};
use synapse_core::attention::{reference_attention, AttentionShape, TILE};
use synapse_gpu::KvPlacement;

#[test]
fn attention_over_pages_matches_the_oracle() {
    for gpu in gpus() {
        eprintln!("subgroups: {}", gpu.has_subgroups());
        let base = AttentionShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            scale: 0.125,
            window: None,
            softcap: None,
        };
        let windowed = AttentionShape {
            window: Some(20),
            softcap: Some(2.0),
            ..base
        };
        let gemma_head = AttentionShape {
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 256,
            ..base
        };
        // (shape, positions written, slots, queries at the end)
        for (shape, len, slots, queries) in [
            (base, 50, 64, 5),
            (windowed, 50, 32, 6),
            (gemma_head, 19, 32, 19),
        ] {
            let kv_dim = shape.n_kv_heads * shape.head_dim;
            let q_dim = shape.n_heads * shape.head_dim;
            let (n_layers, layer) = (3, 1);
            let keys: Vec<f32> = values(1, len * kv_dim);
            let vals: Vec<f32> = values(2, len * kv_dim);
            let q: Vec<f32> = values(3, queries * q_dim).iter().map(|v| 4.0 * v).collect();
            // The ring's tiles on pages in reverse order, after two unused pages.
            let tiles = slots / TILE;
            let table: Vec<u32> = (0..tiles as u32).rev().map(|t| t + 2).collect();
            let page_len = n_layers * 2 * TILE * kv_dim;
            let pages = gpu.buffer((tiles + 2) * page_len);
            let kv = KvPlacement {
                pages: &pages,
                table: &table,
                slots,
                n_layers,
                layer,
            };
            let (k_buf, v_buf) = (gpu.upload_f32(&keys), gpu.upload_f32(&vals));
            let (q_buf, out) = (gpu.upload_f32(&q), gpu.buffer(queries * q_dim));
            let mut encoder = gpu.encoder();
            // Positions in runs of at most 24 rows, as forward passes write them (a pass never
            // holds more positions than the ring beyond the window), the queries' last.
            let first = len - queries;
            let mut start = 0;
            while start < first {
                let end = (start + 24).min(first);
                let run = (start..end, start);
                gpu.encode_kv_write(&mut encoder, &kv, &shape, (&k_buf, &v_buf), run);
                start = end;
            }
            gpu.encode_kv_write(
                &mut encoder,
                &kv,
                &shape,
                (&k_buf, &v_buf),
                (first..len, first),
            );
            // The queries sit in rows 0.. of their buffer.
            let rows = (0..queries, first);
            gpu.encode_attention(&mut encoder, &kv, &shape, (&q_buf, &out), rows);
            let got = gpu.read_f32(encoder, &out, queries * q_dim).unwrap();
            let want = reference_attention(&q, &keys, &vals, first, &shape);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5,
                    "{shape:?}, value {i}: {g} against {w}"
                );
            }
        }
    }
}
