// Weight types in units of 32 values (a block, or an eighth of a K-quant super-block): the
// lane's part of a row is the sum of every WG-th unit's `block_dot(unit, x_first)` (the
// type's file defines it: the dot product of unit `unit` of the matrix, counted from its
// first row, with x[x_first..x_first + 32]).
fn row_dot(row: u32, x_start: u32, lane: u32) -> f32 {
    let units = shape.cols / 32u;
    var acc = 0.0;
    for (var u = lane; u < units; u += WG) {
        acc += block_dot(row * units + u, x_start + 32u * u);
    }
    return acc;
}
