// matmul.wgsl's sums over a workgroup's lanes for each token of a tile, in shared memory:
// a tree, one barrier a level for all the tile's tokens at once.

// sums[t * WG + lane]: the lanes' parts of token t's dot product.
var<workgroup> sums: array<f32, TILE * WG>;

// Token `lane`'s total in lanes below `tokens`.
fn tile_sums(dots: array<f32, TILE>, tokens: u32, lane: u32) -> f32 {
    for (var t = 0u; t < tokens; t++) {
        sums[t * WG + lane] = dots[t];
    }
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if (lane < width) {
            for (var t = 0u; t < tokens; t++) {
                sums[t * WG + lane] += sums[t * WG + lane + width];
            }
        }
        workgroupBarrier();
    }
    return sums[min(lane, TILE - 1u) * WG];
}
