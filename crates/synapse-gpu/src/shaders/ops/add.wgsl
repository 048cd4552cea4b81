// acc += x.
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

fn apply(i: u32) {
    acc[i] += x[i];
}
