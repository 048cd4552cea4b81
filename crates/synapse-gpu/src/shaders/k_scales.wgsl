// Q4_K and Q5_K: per super-block of 256 values, scales d and dmin, and codes that
// start with the twelve bytes that pack the eight units' 6-bit scales and minimums.

// Byte `i` of the codes from word `first` on.
fn code_byte(first: u32, i: u32) -> u32 {
    return extractBits(codes[first + i / 4u], 8u * (i % 4u), 8u);
}

// Unit j's d * scale and dmin * minimum, for the super-block whose codes start at word
// `first` and whose d and dmin are scale(2 * super_block..).
fn unit_scale_min(super_block: u32, first: u32, j: u32) -> vec2<f32> {
    var sm: vec2<u32>;
    if (j < 4u) {
        sm = vec2<u32>(code_byte(first, j) & 63u, code_byte(first, j + 4u) & 63u);
    } else {
        let packed = code_byte(first, j + 4u);
        sm = vec2<u32>((packed & 15u) | ((code_byte(first, j - 4u) >> 6u) << 4u),
                       (packed >> 4u) | ((code_byte(first, j) >> 6u) << 4u));
    }
    return vec2<f32>(sm) * vec2<f32>(scale(2u * super_block), scale(2u * super_block + 1u));
}

// Unit j's values: the nibbles at `shift` of words qs..qs + 8, plus 16 times `high`'s
// bits, scaled, less the minimum.
fn k4_values(super_block: u32, first: u32, j: u32, qs: u32, shift: u32,
             high: array<vec4<f32>, 8>) -> array<vec4<f32>, 8> {
    let sm = unit_scale_min(super_block, first, j);
    var v: array<vec4<f32>, 8>;
    for (var w = 0u; w < 8u; w++) {
        v[w] = sm.x * (nibbles(codes[qs + w], shift) + 16.0 * high[w]) - sm.y;
    }
    return v;
}
