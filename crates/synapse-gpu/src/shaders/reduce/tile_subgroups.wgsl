// matmul.wgsl's sums over a workgroup's lanes for each token of a tile, with subgroup
// operations: each subgroup adds its lanes' parts at once, its first active lane keeps the sum
// (the others 0), and after one barrier lane t adds token t's WG slots.

var<workgroup> sums: array<f32, TILE * WG>;

// Token `lane`'s total in lanes below `tokens`.
fn tile_sums(dots: array<f32, TILE>, tokens: u32, lane: u32) -> f32 {
    let elected = subgroupBroadcastFirst(lane) == lane;
    for (var t = 0u; t < tokens; t++) {
        sums[t * WG + lane] = select(0.0, subgroupAdd(dots[t]), elected);
    }
    workgroupBarrier();
    var total = 0.0;
    if (lane < tokens) {
        for (var i = 0u; i < WG; i++) {
            total += sums[lane * WG + i];
        }
    }
    return total;
}
