// Causal attention of the run's queries over their sequence's pages: one workgroup per
// (row, head). The lanes take every WG-th visible position: a first pass finds the
// largest score, a second adds up exp(score - max) and the values it weights; then the
// lanes' sums are combined (reduce/).
@group(0) @binding(2) var<storage, read> pages: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
// The largest head this kernel takes (Gemma's 256).
const MAX_HEAD: u32 = 256u;

fn score(query: u32, kv_head: u32, pos: u32) -> f32 {
    let at = place(pos);
    var dot = 0.0;
    for (var d = 0u; d < params.head_dim; d++) {
        dot += q[query + d] * pages[key_at(at, kv_head * params.head_dim + d)];
    }
    var s = dot * params.scale;
    if (params.softcap > 0.0) {
        s = params.softcap * tanh(clamp(s / params.softcap, -15.0, 15.0));
    }
    return s;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row = group.x;
    let head = group.y;
    let pos = params.first_pos + row;
    var first = 0u;
    if (params.window > 0u && pos + 1u > params.window) {
        first = pos + 1u - params.window;
    }
    let kv_head = head / (params.n_heads / params.n_kv_heads);
    let q_dim = params.n_heads * params.head_dim;
    let query = (params.first_row + row) * q_dim + head * params.head_dim;

    var local_max = -3.4e38;
    for (var p = first + lane; p <= pos; p += WG) {
        local_max = max(local_max, score(query, kv_head, p));
    }
    let top = workgroup_max(local_max, lane);

    var weight_sum = 0.0;
    var acc: array<f32, MAX_HEAD>;
    for (var p = first + lane; p <= pos; p += WG) {
        let w = exp(score(query, kv_head, p) - top);
        weight_sum += w;
        let at = place(p);
        for (var d = 0u; d < params.head_dim; d++) {
            acc[d] += w * pages[value_at(at, kv_head * params.head_dim + d)];
        }
    }
    let total = workgroup_sum(weight_sum, lane);
    for (var d = 0u; d < params.head_dim; d++) {
        let sum = workgroup_sum(acc[d], lane);
        if (lane == 0u) {
            out[query + d] = sum / total;
        }
    }
}
