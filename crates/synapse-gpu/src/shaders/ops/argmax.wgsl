// out[row] = the index of the row's largest value (the first of equals), for greedy
// decoding without reading the logits back. NaNs are never chosen (a row of NaNs gives
// 0xffffffff).
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let start = group.x * params.width;
    var value = 0.0;
    var index = 0xffffffffu;
    for (var i = lane; i < params.width; i += WG) {
        // `v == v` is false for NaN.
        let v = x[start + i];
        if ((index == 0xffffffffu && v == v) || v > value) {
            value = v;
            index = i;
        }
    }
    best_value[lane] = value;
    best_index[lane] = index;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if (lane < width) {
            let v = best_value[lane + width];
            let j = best_index[lane + width];
            let better = v > best_value[lane] || (v == best_value[lane] && j < best_index[lane]);
            if (j != 0xffffffffu && (best_index[lane] == 0xffffffffu || better)) {
                best_value[lane] = v;
                best_index[lane] = j;
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        out[group.x] = best_index[0];
    }
}
