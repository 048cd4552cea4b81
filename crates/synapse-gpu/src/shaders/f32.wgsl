// F32 weights: `codes` holds the values' bits.
fn row_dots(row: u32, first: u32, tokens: u32, lane: u32) -> array<f32, TILE> {
    let start = row * shape.cols;
    var acc: array<f32, TILE>;
    for (var i = lane; i < shape.cols; i += WG) {
        let w = bitcast<f32>(codes[start + i]);
        for (var t = 0u; t < tokens; t++) {
            acc[t] += w * x[(first + t) * shape.cols + i];
        }
    }
    return acc;
}
