// RoPE: rotates pairs of every head of every row by its position's angles, which the host
// computed (synapse_core's RopeTable) into `angles`: all the cosines, then all the sines,
// `half` per row. Pairs are elements 2i and 2i + 1 (style 0) or i and i + half (style 1).

struct Params {
    pairs: u32,
    width: u32,
    head_dim: u32,
    half: u32,
    style: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> angles: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let g = (group.y * 32768u + group.x) * 256u + lane;
    if (g >= params.pairs) {
        return;
    }
    let heads = params.width / params.head_dim;
    let i = g % params.half;
    let head = (g / params.half) % heads;
    let row = g / (params.half * heads);
    let start = row * params.width + head * params.head_dim;
    var a = start + 2u * i;
    var b = a + 1u;
    if (params.style == 1u) {
        a = start + i;
        b = a + params.half;
    }
    let angle = row * params.half + i;
    let c = angles[angle];
    let s = angles[arrayLength(&angles) / 2u + angle];
    let xa = x[a];
    let xb = x[b];
    x[a] = xa * c - xb * s;
    x[b] = xa * s + xb * c;
}
