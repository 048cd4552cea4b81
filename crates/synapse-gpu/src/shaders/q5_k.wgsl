// Q5_K: 43 words of codes per super-block: 3 of packed scales, 8 of fifth bits (bit j of
// byte l: value l of unit j), then 32 of nibbles laid out as Q4_K's.
fn unit_values(unit: u32) -> array<vec4<f32>, 8> {
    let super_block = unit / 8u;
    let j = unit % 8u;
    let first = 43u * super_block;
    var high: array<vec4<f32>, 8>;
    for (var w = 0u; w < 8u; w++) {
        let h = codes[first + 3u + w];
        high[w] = vec4<f32>(vec4<u32>(extractBits(h, j, 1u), extractBits(h, 8u + j, 1u),
                                      extractBits(h, 16u + j, 1u), extractBits(h, 24u + j, 1u)));
    }
    return k4_values(super_block, first, j, first + 11u + 8u * (j / 2u), 4u * (j % 2u), high);
}
