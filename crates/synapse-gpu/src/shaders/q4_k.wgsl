// Q4_K: 35 words of codes per super-block: 3 of packed scales, then 32 of nibbles (units
// 2p and 2p + 1 share words 8p..8p + 8, low and high nibbles).
fn unit_values(unit: u32) -> array<vec4<f32>, 8> {
    let super_block = unit / 8u;
    let j = unit % 8u;
    let first = 35u * super_block;
    var none: array<vec4<f32>, 8>;
    return k4_values(super_block, first, j, first + 3u + 8u * (j / 2u), 4u * (j % 2u), none);
}
