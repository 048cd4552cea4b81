// Q4_1: per block of 32 values, a scale d and a minimum m, then nibbles laid out as
// Q4_0's; a value is d * nibble + m.
fn unit_values(block: u32) -> array<vec4<f32>, 8> {
    let d = scale(2u * block);
    let m = scale(2u * block + 1u);
    var v: array<vec4<f32>, 8>;
    for (var w = 0u; w < 4u; w++) {
        let q = codes[4u * block + w];
        v[w] = d * nibbles(q, 0u) + m;
        v[w + 4u] = d * nibbles(q, 4u) + m;
    }
    return v;
}
