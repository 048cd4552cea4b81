// F32 weights: `codes` holds the values' bits.
fn row_dot(row: u32, x_start: u32, lane: u32) -> f32 {
    let start = row * shape.cols;
    var acc = 0.0;
    for (var i = lane; i < shape.cols; i += WG) {
        acc += bitcast<f32>(codes[start + i]) * x[x_start + i];
    }
    return acc;
}
