// Per-row kernels: one workgroup of WG lanes per row of `width` values; the lanes take
// every WG-th value, then combine their partial results in shared memory with `reduce`.

struct Params {
    rows: u32,
    width: u32,
    // The norms' epsilon, or the activation (see elementwise.wgsl), as the kernel reads it.
    scalar: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// The rows.
@group(0) @binding(1) var<storage, read> x: array<f32>;

const WG: u32 = 64u;
var<workgroup> shared_sums: array<f32, WG>;

// The sum of every lane's `value`, in every lane.
fn row_sum(value: f32, lane: u32) -> f32 {
    shared_sums[lane] = value;
    workgroupBarrier();
    for (var width = WG / 2u; width > 0u; width /= 2u) {
        if (lane < width) {
            shared_sums[lane] += shared_sums[lane + width];
        }
        workgroupBarrier();
    }
    let sum = shared_sums[0];
    workgroupBarrier();
    return sum;
}
