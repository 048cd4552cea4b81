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

// The dot product of unit j's 32 codes (nibbles at `shift` of words qs..qs + 8, plus 16
// times `high`'s bits) with x[xb..], scaled and less the minimum's share.
fn k4_dot(super_block: u32, first: u32, j: u32, qs: u32, shift: u32, xb: u32,
          high: array<vec4<f32>, 8>) -> f32 {
    var sum = 0.0;
    var x_sum = 0.0;
    for (var w = 0u; w < 8u; w++) {
        let xv = x4(xb + 4u * w);
        sum += dot(nibbles(codes[qs + w], shift) + 16.0 * high[w], xv);
        x_sum += dot(xv, vec4<f32>(1.0));
    }
    let sm = unit_scale_min(super_block, first, j);
    return sm.x * sum - sm.y * x_sum;
}
