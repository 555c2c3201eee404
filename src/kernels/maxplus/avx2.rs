//! AVX2 max-plus kernel: the AVX-512 design with 8-lane registers and a
//! tile of 8 rows × [`TILE_J`] outputs (12 of the 16 ymm registers).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::Kernel;
#[cfg(target_arch = "x86_64")]
use super::{BLOCK, Dims};

pub const TILE_J: usize = 4;
#[cfg(target_arch = "x86_64")]
const LANES: usize = 8;

/// Compute output columns `[j0, j1)` for the whole batch.
///
/// # Safety
/// The CPU must support AVX2, and the calling task must own the columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub unsafe fn columns(k: &Kernel<'_>, j0: usize, j1: usize) {
    let mut j = j0;
    while j < j1 {
        let nj = if j + TILE_J <= j1 { TILE_J } else { 1 };
        for nb in (0..k.bp).step_by(LANES) {
            // SAFETY: AVX2 is enabled; the task owns columns j..j+nj.
            unsafe {
                if nj == TILE_J {
                    tile::<TILE_J>(k, j, nb);
                } else {
                    tile::<1>(k, j, nb);
                }
            }
        }
        j += nj;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const NJ: usize>(k: &Kernel<'_>, j: usize, nb: usize) {
    let Dims { batch, n_in, .. } = k.d;
    let track = k.want_winners();
    let xp = k.xp[nb * n_in..].as_ptr();
    let wr: [*const f32; NJ] = std::hint::black_box(std::array::from_fn(|c| k.w_row(j + c).as_ptr()));
    let mut acc = [_mm256_set1_ps(f32::NEG_INFINITY); NJ];
    let mut blk = [_mm256_setzero_ps(); NJ]; // block ids, kept as float bit patterns
    for t in 0..n_in.div_ceil(BLOCK) {
        let mut bm = [_mm256_set1_ps(f32::NEG_INFINITY); NJ];
        for i in t * BLOCK..((t + 1) * BLOCK).min(n_in) {
            // SAFETY: i < n_in keeps both reads in bounds.
            let xv = unsafe { _mm256_loadu_ps(xp.add(i * LANES)) };
            for c in 0..NJ {
                let wv = _mm256_set1_ps(unsafe { *wr[c].add(i) });
                bm[c] = _mm256_max_ps(bm[c], _mm256_add_ps(xv, wv));
            }
        }
        if track {
            let tv = _mm256_castsi256_ps(_mm256_set1_epi32(t as i32));
            for c in 0..NJ {
                let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(bm[c], acc[c]);
                acc[c] = _mm256_blendv_ps(acc[c], bm[c], gt);
                blk[c] = _mm256_blendv_ps(blk[c], tv, gt);
            }
        } else {
            for c in 0..NJ {
                acc[c] = _mm256_max_ps(acc[c], bm[c]);
            }
        }
    }
    let (mut m, mut b) = ([[0.0f32; LANES]; NJ], [[0u32; LANES]; NJ]);
    for c in 0..NJ {
        if !track && let Some(bias) = k.bias {
            acc[c] = _mm256_max_ps(acc[c], _mm256_set1_ps(bias[j + c]));
        }
        // SAFETY: each array holds 8 elements.
        unsafe {
            _mm256_storeu_ps(m[c].as_mut_ptr(), acc[c]);
            _mm256_storeu_ps(b[c].as_mut_ptr().cast(), blk[c]);
        }
    }
    for l in 0..(batch - nb).min(LANES) {
        let n = nb + l;
        for c in 0..NJ {
            let (v, win) = if track {
                k.resolve(n, j + c, m[c][l], b[c][l] as usize, |lo, hi| {
                    first_match(k.x_row(n), k.w_row(j + c), m[c][l], lo, hi)
                })
            } else {
                (m[c][l], 0)
            };
            // SAFETY: this task owns column j + c.
            unsafe { k.store(n, j + c, v, win) };
        }
    }
}

/// The first `i` in `[lo, hi)` with `x[i] + w[i] == m`, 8 at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn first_match(x: &[f32], w: &[f32], m: f32, lo: usize, hi: usize) -> usize {
    let mv = _mm256_set1_ps(m);
    let mut i = lo;
    while i + LANES <= hi {
        // SAFETY: i + 8 <= hi <= len.
        let s = unsafe { _mm256_add_ps(_mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(w.as_ptr().add(i))) };
        let eq = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(s, mv));
        if eq != 0 {
            return i + eq.trailing_zeros() as usize;
        }
        i += LANES;
    }
    (i..hi).find(|&i| x[i] + w[i] == m).expect("the block maximum is one of its candidates")
}

/// # Safety
/// Never callable: AVX2 kernels exist only on x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn columns(_: &Kernel<'_>, _: usize, _: usize) {
    unreachable!("AVX2 is x86-64 only")
}
