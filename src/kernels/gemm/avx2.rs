//! AVX2 + FMA micro-kernel: a 6 × 16 tile of the product in 12 registers
//! (of the 16 the instruction set has: two more hold the B row, one the
//! broadcast). Per `k`: two loads of the packed B row, then for each of the
//! 6 rows a broadcast of `a[r, k]` and two fused multiply-adds.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows and columns of the register tile.
pub const MR: usize = 6;
pub const NR: usize = 16;

/// See [`super::Tile`].
///
/// # Safety
/// The CPU must support AVX2 and FMA, and the pointers must satisfy
/// [`super::Tile`]'s contract for `MR` and `NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile(
    kc: usize,
    a: *const f32,
    rs_a: usize,
    cs_a: usize,
    rows: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    // As in the AVX-512 kernel: one register per row pointer; rows past
    // `rows` repeat the last one and are never stored.
    let ar: [*const f32; MR] = std::hint::black_box(std::array::from_fn(|r| a.wrapping_add(r.min(rows - 1) * rs_a)));
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for k in 0..kc {
        // SAFETY: k < kc keeps every read inside the contract's bounds.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(k * NR));
            let b1 = _mm256_loadu_ps(b.add(k * NR + 8));
            for (acc, row) in acc.iter_mut().zip(&ar) {
                let av = _mm256_set1_ps(*row.add(k * cs_a));
                acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
            }
        }
    }
    let (va, vb) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
    for (r, acc) in acc.iter().enumerate() {
        for (h, acc) in acc.iter().enumerate() {
            // SAFETY: the contract makes c + r·rsc + [0, NR) writable (and
            // readable unless beta is 0).
            unsafe {
                let at = c.add(r * rsc + h * 8);
                let v = _mm256_mul_ps(*acc, va);
                _mm256_storeu_ps(at, if beta == 0.0 { v } else { _mm256_fmadd_ps(vb, _mm256_loadu_ps(at), v) });
            }
        }
    }
}
