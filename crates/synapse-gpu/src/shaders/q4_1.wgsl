// Q4_1: per block of 32 values, a scale d and a minimum m, then nibbles laid out as
// Q4_0's; a value is d * nibble + m.
fn block_dot(block: u32, xb: u32) -> f32 {
    var sum = 0.0;
    var x_sum = 0.0;
    for (var w = 0u; w < 4u; w++) {
        let q = codes[4u * block + w];
        let lo = x4(xb + 4u * w);
        let hi = x4(xb + 16u + 4u * w);
        sum += dot(nibbles(q, 0u), lo) + dot(nibbles(q, 4u), hi);
        x_sum += dot(lo + hi, vec4<f32>(1.0));
    }
    return scale(2u * block) * sum + scale(2u * block + 1u) * x_sum;
}
