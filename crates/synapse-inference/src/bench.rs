//! Benchmark workloads shared by the doors that time the engine (`synapse bench`, the
//! browser module's `bench`), so that their figures measure the same work.

/// Seed of the synthetic token sequence (shared with `bench/llamacpp_bench.py`).
pub const TOKEN_SEED: u64 = 0x5EED;

/// `n` pseudo-random token ids below `vocab` (splitmix64 from `seed`, top 32 bits modulo
/// `vocab`). The same ids on every run and in the llama.cpp driver.
pub fn synthetic_tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 32) % vocab as u64) as u32
        })
        .collect()
}
