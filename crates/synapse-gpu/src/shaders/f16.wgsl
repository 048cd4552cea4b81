// F16 weights: two values to a word, the first in the low half.
fn row_dots(row: u32, first: u32, tokens: u32, lane: u32) -> array<f32, TILE> {
    let pairs = shape.cols / 2u;
    var acc: array<f32, TILE>;
    for (var i = lane; i < pairs; i += WG) {
        let w = unpack2x16float(codes[row * pairs + i]);
        for (var t = 0u; t < tokens; t++) {
            let xi = (first + t) * shape.cols + 2u * i;
            acc[t] += dot(w, vec2<f32>(x[xi], x[xi + 1u]));
        }
    }
    return acc;
}
