// Workgroup reductions with subgroup operations: each subgroup combines its lanes at once;
// its first active lane keeps the result and the others the identity, and after one barrier
// every lane combines those WG slots. No assumption on the subgroup size or on which lanes
// share a subgroup. The kernel defines WG; the module starts with `enable subgroups;`.

var<workgroup> lane_values: array<f32, WG>;

fn workgroup_sum(value: f32, lane: u32) -> f32 {
    let sum = subgroupAdd(value);
    lane_values[lane] = select(0.0, sum, subgroupBroadcastFirst(lane) == lane);
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < WG; i++) {
        total += lane_values[i];
    }
    workgroupBarrier();
    return total;
}

fn workgroup_max(value: f32, lane: u32) -> f32 {
    let largest = subgroupMax(value);
    lane_values[lane] = select(-3.4e38, largest, subgroupBroadcastFirst(lane) == lane);
    workgroupBarrier();
    var result = -3.4e38;
    for (var i = 0u; i < WG; i++) {
        result = max(result, lane_values[i]);
    }
    workgroupBarrier();
    return result;
}
