// x = cap * tanh(x / cap), the cap in `value`.
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

fn apply(i: u32) {
    x[i] = params.value * safe_tanh(x[i] / params.value);
}
