// x *= value.
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

fn apply(i: u32) {
    x[i] *= params.value;
}
