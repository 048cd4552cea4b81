// F16 weights: two values to a word, the first in the low half.
fn row_dot(row: u32, x_start: u32, lane: u32) -> f32 {
    let pairs = shape.cols / 2u;
    var acc = 0.0;
    for (var i = lane; i < pairs; i += WG) {
        let w = unpack2x16float(codes[row * pairs + i]);
        acc += dot(w, vec2<f32>(x[x_start + 2u * i], x[x_start + 2u * i + 1u]));
    }
    return acc;
}
