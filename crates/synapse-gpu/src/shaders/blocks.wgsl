// Weight types in units of 32 values (a block, or an eighth of a K-quant super-block): the
// lane takes every WG-th unit of the row, dequantizes it once with the type's
//   fn unit_values(unit: u32) -> array<vec4<f32>, 8>
// (values 4k..4k + 4 of unit `unit`, counted from the matrix's first row, in element k),
// and adds its dot product with each of the tile's activation rows.
fn row_dots(row: u32, first: u32, tokens: u32, lane: u32) -> array<f32, TILE> {
    let units = shape.cols / 32u;
    var acc: array<f32, TILE>;
    for (var u = lane; u < units; u += WG) {
        let w = unit_values(row * units + u);
        for (var t = 0u; t < tokens; t++) {
            let xb = (first + t) * shape.cols + 32u * u;
            var sum = 0.0;
            for (var k = 0u; k < 8u; k++) {
                sum += dot(w[k], x4(xb + 4u * k));
            }
            acc[t] += sum;
        }
    }
    return acc;
}
