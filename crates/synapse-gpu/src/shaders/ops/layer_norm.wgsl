// out = (x - mean(x)) / std(x) * weight + bias, per row.
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let start = group.x * params.width;
    let n = f32(params.width);
    var sum = 0.0;
    for (var i = lane; i < params.width; i += WG) {
        sum += x[start + i];
    }
    let mean = workgroup_sum(sum, lane) / n;
    var squares = 0.0;
    for (var i = lane; i < params.width; i += WG) {
        squares += (x[start + i] - mean) * (x[start + i] - mean);
    }
    let scale = inverseSqrt(workgroup_sum(squares, lane) / n + params.scalar);
    for (var i = lane; i < params.width; i += WG) {
        out[start + i] = (x[start + i] - mean) * scale * weight[i] + bias[i];
    }
}
