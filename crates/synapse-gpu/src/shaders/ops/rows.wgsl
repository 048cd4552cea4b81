// Per-row kernels: one workgroup of WG lanes per row of `width` values; the lanes take
// every WG-th value, then combine their partial results with `workgroup_sum` (reduce/).

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
