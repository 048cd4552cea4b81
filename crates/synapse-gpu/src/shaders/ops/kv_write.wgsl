// Writes the run's keys and values (rows of kv_dim) to their positions' slots.
@group(0) @binding(2) var<storage, read_write> pages: array<f32>;
@group(0) @binding(3) var<storage, read> keys: array<f32>;
@group(0) @binding(4) var<storage, read> values: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let d = id.x;
    let row = id.y;
    if (d >= kv_dim() || row >= params.rows) {
        return;
    }
    let at = place(params.first_pos + row);
    let source = (params.first_row + row) * kv_dim() + d;
    pages[key_at(at, d)] = keys[source];
    pages[value_at(at, d)] = values[source];
}
