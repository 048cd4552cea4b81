// gate = activation(gate) * up.
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;

fn apply(i: u32) {
    gate[i] = activation(gate[i]) * up[i];
}
