// out[t * rows + r] = dot(weight row r, activation row t): one workgroup of WG lanes per
// row and tile of up to TILE tokens. The lanes split the row, each weight read once for
// all the tile's tokens (a prefill reads the matrix once per TILE tokens, not per token),
// then add up their sums (tile_sums: reduce/tile_shared.wgsl, or with subgroup operations
// reduce/tile_subgroups.wgsl).
// Appended to this file, the weight type's WGSL (for the types in blocks: blocks.wgsl and
// the type's unit_values) defines
//   fn row_dots(row: u32, first: u32, tokens: u32, lane: u32) -> array<f32, TILE>
// which returns this lane's part of the dot products of `row` with activation rows
// first..first + tokens.

// The matrix is bound a part of whole rows at a time (see matrix.rs).
struct Shape {
    // Rows of this part.
    rows: u32,
    cols: u32,
    // Rows per line of workgroups: a dispatch has at most 65535 workgroups per dimension.
    row_span: u32,
    // Where the scales start in `codes`.
    scales_start: u32,
    tokens: u32,
    // Rows of the whole matrix (of each row of `out`), and this part's first.
    out_rows: u32,
    row_offset: u32,
}

@group(0) @binding(0) var<uniform> shape: Shape;
// The matrix: its code words, then its scales (f32 bits) from shape.scales_start on.
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const TILE: u32 = 8u;
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
    let first = group.z * TILE;
    // The same in every lane of the workgroup, as the barriers below need.
    if (row >= shape.rows) {
        return;
    }
    let tokens = min(TILE, shape.tokens - first);
    let dots = row_dots(row, first, tokens, lane);
    // Uniform control flow: the reduction may use barriers and subgroup operations.
    let total = tile_sums(dots, tokens, lane);
    if (lane < tokens) {
        out[(first + lane) * shape.out_rows + shape.row_offset + row] = total;
    }
}
