//! The register tiles of [`crate::kernels::gemm`]: AVX-512 keeps a 12 × 32 tile of C in 24
//! zmm registers, AVX2 a 6 × 16 tile in 12 ymm registers; each `k` loads a row of the B
//! panel (2 vectors), broadcasts the A panel's values, and adds their products.

use crate::kernels::gemm::Tile;
use std::arch::x86_64::*;

pub fn gemm_tile_avx512() -> Tile {
    Tile {
        mr: 12,
        nr: 32,
        kernel: |kc, a, b, out| {
            assert!(a.len() >= kc * 12 && b.len() >= kc * 32 && out.len() >= 12 * 32);
            // SAFETY: `isa()` picked AVX-512 (so the CPU has it), and the panels hold kc
            // rows, as asserted.
            unsafe { tile_12x32(kc, a.as_ptr(), b.as_ptr(), out.as_mut_ptr()) }
        },
    }
}

pub fn gemm_tile_avx2() -> Tile {
    Tile {
        mr: 6,
        nr: 16,
        kernel: |kc, a, b, out| {
            assert!(a.len() >= kc * 6 && b.len() >= kc * 16 && out.len() >= 6 * 16);
            // SAFETY: `isa()` picked AVX2 (so the CPU has it and FMA), and the panels hold
            // kc rows, as asserted.
            unsafe { tile_6x16(kc, a.as_ptr(), b.as_ptr(), out.as_mut_ptr()) }
        },
    }
}

/// # Safety
/// The CPU has AVX-512 F; `a` holds `kc × 12` values, `b` `kc × 32`, `out` 12 × 32.
#[target_feature(enable = "avx512f")]
unsafe fn tile_12x32(kc: usize, a: *const f32, b: *const f32, out: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; 12];
    for p in 0..kc {
        // SAFETY: p < kc, so row p of each panel is inside it.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(b.add(p * 32)),
                _mm512_loadu_ps(b.add(p * 32 + 16)),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm512_set1_ps(unsafe { *a.add(p * 12 + r) });
            acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: out holds 12 rows of 32.
        unsafe {
            _mm512_storeu_ps(out.add(r * 32), acc[0]);
            _mm512_storeu_ps(out.add(r * 32 + 16), acc[1]);
        }
    }
}

/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `kc × 6` values, `b` `kc × 16`, `out` 6 × 16.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_6x16(kc: usize, a: *const f32, b: *const f32, out: *mut f32) {
    let mut acc = [[_mm256_setzero_ps(); 2]; 6];
    for p in 0..kc {
        // SAFETY: p < kc, so row p of each panel is inside it.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(b.add(p * 16)),
                _mm256_loadu_ps(b.add(p * 16 + 8)),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm256_set1_ps(unsafe { *a.add(p * 6 + r) });
            acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: out holds 6 rows of 16.
        unsafe {
            _mm256_storeu_ps(out.add(r * 16), acc[0]);
            _mm256_storeu_ps(out.add(r * 16 + 8), acc[1]);
        }
    }
}
