// out = activation(gate) * up, from rows of [gate | up] (`width` values each half).
@group(0) @binding(1) var<storage, read> gate_up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn apply(i: u32) {
    let gate = (i / params.width) * 2u * params.width + i % params.width;
    out[i] = activation(gate_up[gate]) * gate_up[gate + params.width];
}
