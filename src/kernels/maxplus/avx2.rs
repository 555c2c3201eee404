//! AVX2 max-plus kernel: the AVX-512 design with 8-lane registers and a
//! tile of 8 rows × [`TILE_J`] outputs (12 of the 16 ymm registers).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::BLOCK;
use super::Kernel;

pub const TILE_J: usize = 4;
#[cfg(target_arch = "x86_64")]
const LANES: usize = 8;

/// Compute output columns `[j0, j1)` for the whole batch; false (outputs
/// unspecified) if their rows of W hold a NaN or +∞.
///
/// # Safety
/// The CPU must support AVX2, and the calling task must own the columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub unsafe fn columns(k: &Kernel<'_>, j0: usize, j1: usize) -> bool {
    k.walk(j0, j1, TILE_J, LANES, |j, nb, full, first| {
        // SAFETY: AVX2 is enabled (see the caller's contract); the task owns the tile's columns.
        unsafe { if full { tile::<TILE_J>(k, j, nb, first) } else { tile::<1>(k, j, nb, first) } }
    })
}

/// Rows `[nb, nb+8)` × columns `[j, j+NJ)`; the `first` tile of these
/// columns also clears their rows of the weight gradient, if one is being
/// cleared, and returns false (nothing written) if their rows of W hold a
/// NaN or +∞.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const NJ: usize>(k: &Kernel<'_>, j: usize, nb: usize, first: bool) -> bool {
    let n_in = k.d.n_in;
    let track = k.want_winners();
    let xp = k.xp[nb * n_in..].as_ptr();
    let wr: [*const f32; NJ] = std::hint::black_box(std::array::from_fn(|c| k.w_row(j + c).as_ptr()));
    let gw = if first { k.grad_w_rows::<NJ>(j) } else { None };
    let mut acc = [_mm256_set1_ps(f32::NEG_INFINITY); NJ];
    let mut blk = [_mm256_setzero_ps(); NJ]; // block ids, kept as float bit patterns
    let mut w_sum = _mm256_setzero_ps();
    for t in 0..n_in.div_ceil(BLOCK) {
        let (i0, i1) = (t * BLOCK, ((t + 1) * BLOCK).min(n_in));
        let mut bm = [_mm256_set1_ps(f32::NEG_INFINITY); NJ];
        for i in i0..i1 {
            // SAFETY: i < n_in keeps both reads in bounds.
            let xv = unsafe { _mm256_loadu_ps(xp.add(i * LANES)) };
            for c in 0..NJ {
                let wv = _mm256_set1_ps(unsafe { *wr[c].add(i) });
                bm[c] = _mm256_max_ps(bm[c], _mm256_add_ps(xv, wv));
            }
        }
        if first {
            // The block's weights, W[j + c, i0..i1], 8 at a time; and the
            // same entries of the weight gradient.
            for h in (i0..i1).step_by(LANES) {
                let valid =
                    _mm256_cmpgt_epi32(_mm256_set1_epi32((i1 - h) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                for r in wr {
                    // SAFETY: the mask keeps the load inside the row's [h, i1).
                    w_sum = _mm256_add_ps(w_sum, unsafe { _mm256_maskload_ps(r.add(h), valid) });
                }
                if let Some(gw) = &gw {
                    for g in gw {
                        // SAFETY: as the loads, in the task's own gradient rows.
                        unsafe { _mm256_maskstore_ps(g.add(h), valid, _mm256_setzero_ps()) };
                    }
                }
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
    if first && _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(w_sum, _mm256_set1_ps(f32::INFINITY))) != 0 {
        return false;
    }
    let (mut m, mut b) = ([[0.0f32; LANES]; NJ], [[0u32; LANES]; NJ]);
    for c in 0..NJ {
        // SAFETY: each array holds 8 elements.
        unsafe {
            _mm256_storeu_ps(m[c].as_mut_ptr(), acc[c]);
            _mm256_storeu_ps(b[c].as_mut_ptr().cast(), blk[c]);
        }
    }
    // SAFETY: this task owns columns j..j+NJ; `first_match` reads `len` elements.
    unsafe { k.resolve_tile(j, nb, &m, &b, |x, w, m, len| first_match(x, w, m, len)) };
    true
}

/// The first `i < len` (one block: `len ≤ 16`) with `x[i] + w[i] == m`, 8 at a time.
///
/// # Safety
/// AVX2 must be available; `x[..len]` and `w[..len]` must be readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn first_match(x: *const f32, w: *const f32, m: f32, len: usize) -> usize {
    let mv = _mm256_set1_ps(m);
    let mut i = 0;
    while i + LANES <= len {
        // SAFETY: i + 8 <= len.
        let s = unsafe { _mm256_add_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(w.add(i))) };
        let eq = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(s, mv));
        if eq != 0 {
            return i + eq.trailing_zeros() as usize;
        }
        i += LANES;
    }
    // SAFETY: i..len is inside both slices.
    (i..len).find(|&i| unsafe { *x.add(i) + *w.add(i) } == m).expect("the block maximum is one of its candidates")
}

/// # Safety
/// Never callable: AVX2 kernels exist only on x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn columns(_: &Kernel<'_>, _: usize, _: usize) -> bool {
    unreachable!("AVX2 is x86-64 only")
}
