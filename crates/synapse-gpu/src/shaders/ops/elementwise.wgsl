// Element-wise kernels: 256 lanes a workgroup, workgroups in lines of 32768 (a dispatch has
// at most 65535 per dimension). The kernel's file defines `fn apply(i: u32)`, which this
// file's `main` calls for every element i < params.len.

struct Params {
    len: u32,
    // Values per row, for the kernels that read rows (a bias, [gate | up]).
    width: u32,
    // The activation: 0 SiLU, 1 GELU with tanh, 2 GELU with erf (synapse_core's
    // `Activation`, in that order).
    activation: u32,
    // A factor, or a soft-cap.
    value: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let i = (group.y * 32768u + group.x) * 256u + lane;
    if (i < params.len) {
        apply(i);
    }
}

// tanh is +-1 in f32 long before 15; the clamp keeps its exponentials in range.
fn safe_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// erf to within about 1e-6: Numerical Recipes' erfc fit, as synapse_core's `erf`.
fn erf(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(poly);
    return select(erfc - 1.0, 1.0 - erfc, x >= 0.0);
}

fn activation(x: f32) -> f32 {
    switch params.activation {
        case 0u: {
            return x / (1.0 + exp(-x));
        }
        case 1u: {
            // 0.5 x (1 + tanh(u)) as x sigmoid(2u): the same function, without the
            // cancellation of 1 + tanh(u) for negative x.
            let u = 0.7978846 * (x + 0.044715 * x * x * x);
            return x / (1.0 + exp(clamp(-2.0 * u, -80.0, 80.0)));
        }
        default: {
            return 0.5 * x * (1.0 + erf(x * 0.70710678));
        }
    }
}
