// Workgroup reductions in shared memory, for adapters without subgroup operations: the
// lanes' values are halved in a tree, one barrier a level. The kernel defines WG.

var<workgroup> lane_values: array<f32, WG>;

// The sum (or, `is_max`, the largest) of every lane's `value`, in every lane.
fn workgroup_combine(value: f32, lane: u32, is_max: bool) -> f32 {
    lane_values[lane] = value;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if (lane < width) {
            let other = lane_values[lane + width];
            lane_values[lane] = select(lane_values[lane] + other, max(lane_values[lane], other), is_max);
        }
        workgroupBarrier();
    }
    let result = lane_values[0];
    workgroupBarrier();
    return result;
}

fn workgroup_sum(value: f32, lane: u32) -> f32 {
    return workgroup_combine(value, lane, false);
}

fn workgroup_max(value: f32, lane: u32) -> f32 {
    return workgroup_combine(value, lane, true);
}
