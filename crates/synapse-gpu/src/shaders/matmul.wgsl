// out[t * rows + r] = dot(weight row r, activation row t): one workgroup of WG lanes per
// (row, token); the lanes split the row's blocks, then add up their sums in shared memory.
// Appended to this file, the weight type's WGSL (for the types in blocks: blocks.wgsl and
// the type's block_dot) defines
//   fn row_dot(row: u32, x_start: u32, lane: u32) -> f32
// which returns this lane's part of the dot product of `row` with x[x_start..].

struct Shape {
    rows: u32,
    cols: u32,
    // Rows per line of workgroups: a dispatch has at most 65535 workgroups per dimension.
    row_span: u32,
    // Where the scales start in `codes`.
    scales_start: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
// The matrix: its code words, then its scales (f32 bits) from shape.scales_start on.
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> sums: array<f32, WG>;

fn scale(i: u32) -> f32 {
    return bitcast<f32>(codes[shape.scales_start + i]);
}

fn x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

// The 4-bit codes at bit `shift` of each byte of `q`.
fn nibbles(q: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(extractBits(q, shift, 4u), extractBits(q, shift + 8u, 4u),
                               extractBits(q, shift + 16u, 4u), extractBits(q, shift + 24u, 4u)));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let row = group.x + group.y * shape.row_span;
    let token = group.z;
    if (row >= shape.rows) {
        return;
    }
    sums[lane] = row_dot(row, token * shape.cols, lane);
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if (lane < width) {
            sums[lane] += sums[lane + width];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        out[token * shape.rows + row] = sums[0];
    }
}
