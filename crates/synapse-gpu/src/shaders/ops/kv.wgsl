// Key/value pages as the engine's KV cache lays them out (synapse-inference's HostPages):
// page after page, each holding, layer after layer, TILE positions' keys transposed
// ([kv_dim][TILE]) then their values ([TILE][kv_dim]). Position p of a sequence lives in
// slot p % slots, in the page table's entry slot / TILE, at index slot % TILE.

const TILE: u32 = 16u;

struct Params {
    rows: u32,
    // Rows of q, k, v and out before this run's first.
    first_row: u32,
    // The position of the run's first row.
    first_pos: u32,
    slots: u32,
    page_len: u32,
    layer_offset: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    // 0: no window; else a query at p sees p + 1 - window..=p.
    window: u32,
    scale: f32,
    // 0: no soft-cap.
    softcap: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;

fn kv_dim() -> u32 {
    return params.n_kv_heads * params.head_dim;
}

// Where position `pos`'s part of this layer starts, and its index in the tile.
fn place(pos: u32) -> vec2<u32> {
    let slot = pos % params.slots;
    return vec2<u32>(table[slot / TILE] * params.page_len + params.layer_offset, slot % TILE);
}

fn key_at(at: vec2<u32>, d: u32) -> u32 {
    return at.x + d * TILE + at.y;
}

fn value_at(at: vec2<u32>, d: u32) -> u32 {
    return at.x + TILE * kv_dim() + at.y * kv_dim() + d;
}
