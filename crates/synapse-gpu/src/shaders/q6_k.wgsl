// Q6_K: per super-block, a scale d and 52 words of codes: 32 of low nibbles, 16 of
// high bit pairs, 4 of signed 8-bit scales (one per 16 values). Unit j is quarter j % 4
// of half j / 4: its low 4 bits are the nibbles at 4 * (q / 2) of bytes 64h + 32 (q % 2)
// on, its high 2 bits at 2q of bytes 32h on; a value is d * scale * (code - 32).
fn unit_values(unit: u32) -> array<vec4<f32>, 8> {
    let super_block = unit / 8u;
    let half = (unit % 8u) / 4u;
    let quarter = unit % 4u;
    let first = 52u * super_block;
    let low = first + 16u * half + 8u * (quarter % 2u);
    let high = first + 32u + 8u * half;
    // Values 0..16 and 16..32 of the unit have scales of their own.
    let unit_scales = first + 48u;
    let s = 8u * half + 2u * quarter;
    let s0 = extractBits(bitcast<i32>(codes[unit_scales + s / 4u]), 8u * (s % 4u), 8u);
    let s1 = extractBits(bitcast<i32>(codes[unit_scales + (s + 1u) / 4u]), 8u * ((s + 1u) % 4u), 8u);
    let d = scale(super_block) * vec2<f32>(f32(s0), f32(s1));
    var v: array<vec4<f32>, 8>;
    for (var w = 0u; w < 8u; w++) {
        let h = codes[high + w];
        let bits = 2u * quarter;
        let top = vec4<u32>(extractBits(h, bits, 2u), extractBits(h, 8u + bits, 2u),
                            extractBits(h, 16u + bits, 2u), extractBits(h, 24u + bits, 2u));
        let code = nibbles(codes[low + w], 4u * (quarter / 2u)) + 16.0 * vec4<f32>(top) - 32.0;
        v[w] = select(d.y, d.x, w < 4u) * code;
    }
    return v;
}
