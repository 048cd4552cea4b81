// out = x / rms(x) * weight, per row.
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let start = group.x * params.width;
    var squares = 0.0;
    for (var i = lane; i < params.width; i += WG) {
        squares += x[start + i] * x[start + i];
    }
    let scale = inverseSqrt(workgroup_sum(squares, lane) / f32(params.width) + params.scalar);
    for (var i = lane; i < params.width; i += WG) {
        out[start + i] = x[start + i] * scale * weight[i];
    }
}
