// Q8_0: per block of 32 values, a scale and eight words of four signed 8-bit codes.
fn unit_values(block: u32) -> array<vec4<f32>, 8> {
    let d = scale(block);
    var v: array<vec4<f32>, 8>;
    for (var w = 0u; w < 8u; w++) {
        let q = bitcast<i32>(codes[8u * block + w]);
        v[w] = d * vec4<f32>(vec4<i32>(extractBits(q, 0u, 8u), extractBits(q, 8u, 8u),
                                       extractBits(q, 16u, 8u), extractBits(q, 24u, 8u)));
    }
    return v;
}
