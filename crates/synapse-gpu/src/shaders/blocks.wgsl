// Weight types in blocks of 32 values: the lane's part of a row is the sum of every WG-th
// block's `block_dot(block, x_first)` (the type's file defines it: the dot product of
// block `block` of the matrix with x[x_first..x_first + 32]).
fn row_dot(row: u32, x_start: u32, lane: u32) -> f32 {
    let blocks = shape.cols / 32u;
    var acc = 0.0;
    for (var b = lane; b < blocks; b += WG) {
        acc += block_dot(row * blocks + b, x_start + 32u * b);
    }
    return acc;
}
