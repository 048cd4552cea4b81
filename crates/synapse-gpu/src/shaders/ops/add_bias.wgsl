// Adds the bias (`width` values) to every row.
@group(0) @binding(1) var<storage, read_write> rows: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

fn apply(i: u32) {
    rows[i] += bias[i % params.width];
}
