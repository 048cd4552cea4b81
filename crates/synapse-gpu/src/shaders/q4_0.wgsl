// Q4_0: per block of 32 values, a scale and four words of nibbles. Byte j holds value j in
// its low nibble and value j + 16 in its high one; a value is its nibble minus 8.
fn unit_values(block: u32) -> array<vec4<f32>, 8> {
    let d = scale(block);
    var v: array<vec4<f32>, 8>;
    for (var w = 0u; w < 4u; w++) {
        let q = codes[4u * block + w];
        v[w] = d * (nibbles(q, 0u) - 8.0);
        v[w + 4u] = d * (nibbles(q, 4u) - 8.0);
    }
    return v;
}
