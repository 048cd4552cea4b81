// Q8_0: per block of 32 values, a scale and eight words of four signed 8-bit codes.
fn block_dot(block: u32, xb: u32) -> f32 {
    var sum = 0.0;
    for (var w = 0u; w < 8u; w++) {
        let q = bitcast<i32>(codes[8u * block + w]);
        let values = vec4<i32>(extractBits(q, 0u, 8u), extractBits(q, 8u, 8u),
                               extractBits(q, 16u, 8u), extractBits(q, 24u, 8u));
        sum += dot(vec4<f32>(values), x4(xb + 4u * w));
    }
    return scale(block) * sum;
}
