// Q4_0: per block of 32 values, a scale and four words of nibbles. Byte j holds value j in
// its low nibble and value j + 16 in its high one; a value is its nibble minus 8.
fn block_dot(block: u32, xb: u32) -> f32 {
    var sum = 0.0;
    for (var w = 0u; w < 4u; w++) {
        let q = codes[4u * block + w];
        sum += dot(nibbles(q, 0u) - 8.0, x4(xb + 4u * w))
             + dot(nibbles(q, 4u) - 8.0, x4(xb + 16u + 4u * w));
    }
    return scale(block) * sum;
}
