//! AVX-512 max-plus kernel: 16 batch rows per register, a register tile of
//! 16 rows × [`TILE_J`] outputs. Per input `i`: one load of `xᵀ[i, rows]`,
//! then for each output `j` a broadcast of `W[j, i]` (from a packed panel),
//! an add and a max — the two arithmetic instructions per 16 candidates
//! that bound any max-plus kernel. Winners are tracked per block (see the
//! parent module).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::Kernel;
#[cfg(target_arch = "x86_64")]
use super::{BLOCK, Dims};

/// Output columns per register tile (16 rows × 8 columns = 8 block maxima,
/// 8 running maxima and 8 block ids: 24 of the 32 zmm registers).
pub const TILE_J: usize = 8;
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// Compute output columns `[j0, j1)` for the whole batch.
///
/// # Safety
/// The CPU must support AVX-512F, and the calling task must own the columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn columns(k: &Kernel<'_>, j0: usize, j1: usize) {
    let mut j = j0;
    while j < j1 {
        let nj = if j + TILE_J <= j1 { TILE_J } else { 1 };
        for nb in (0..k.bp).step_by(LANES) {
            // SAFETY: AVX-512F is enabled; the task owns columns j..j+nj.
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

/// Rows `[nb, nb+16)` × columns `[j, j+NJ)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const NJ: usize>(k: &Kernel<'_>, j: usize, nb: usize) {
    let Dims { batch, n_in, .. } = k.d;
    let track = k.want_winners();
    let xp = k.xp[nb * n_in..].as_ptr();
    // Row pointers hidden from the optimiser so each stays in its own register
    // and every weight load is a single `[row + 4i]` address.
    let wr: [*const f32; NJ] = std::hint::black_box(std::array::from_fn(|c| k.w_row(j + c).as_ptr()));
    let mut acc = [_mm512_set1_ps(f32::NEG_INFINITY); NJ];
    let mut blk = [_mm512_setzero_si512(); NJ];
    for t in 0..n_in.div_ceil(BLOCK) {
        let mut bm = [_mm512_set1_ps(f32::NEG_INFINITY); NJ];
        for i in t * BLOCK..((t + 1) * BLOCK).min(n_in) {
            // SAFETY: i < n_in keeps xp + 16i + 16 and every wr[c] + i in bounds.
            let xv = unsafe { _mm512_loadu_ps(xp.add(i * LANES)) };
            for c in 0..NJ {
                let wv = _mm512_set1_ps(unsafe { *wr[c].add(i) });
                bm[c] = _mm512_max_ps(bm[c], _mm512_add_ps(xv, wv));
            }
        }
        if track {
            // Strictly greater: on equal maxima the earlier block keeps the win.
            let tv = _mm512_set1_epi32(t as i32);
            for c in 0..NJ {
                let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bm[c], acc[c]);
                acc[c] = _mm512_mask_mov_ps(acc[c], gt, bm[c]);
                blk[c] = _mm512_mask_mov_epi32(blk[c], gt, tv);
            }
        } else {
            for c in 0..NJ {
                acc[c] = _mm512_max_ps(acc[c], bm[c]);
            }
        }
    }
    let (mut m, mut b) = ([[0.0f32; LANES]; NJ], [[0u32; LANES]; NJ]);
    for c in 0..NJ {
        if !track && let Some(bias) = k.bias {
            acc[c] = _mm512_max_ps(acc[c], _mm512_set1_ps(bias[j + c]));
        }
        // SAFETY: each array holds 16 elements.
        unsafe {
            _mm512_storeu_ps(m[c].as_mut_ptr(), acc[c]);
            _mm512_storeu_si512(b[c].as_mut_ptr().cast(), blk[c]);
        }
    }
    if !track {
        for (c, column) in m.iter().enumerate() {
            for (l, &v) in column[..(batch - nb).min(LANES)].iter().enumerate() {
                // SAFETY: this task owns column j + c.
                unsafe { k.store(nb + l, j + c, v, 0) };
            }
        }
        return;
    }
    for l in 0..(batch - nb).min(LANES) {
        let n = nb + l;
        let xr = k.x_row(n).as_ptr();
        for c in 0..NJ {
            let (v, win) = k.resolve(n, j + c, m[c][l], b[c][l] as usize, |lo, hi| {
                // SAFETY: [lo, hi) lies inside row n of x and row j + c of W.
                unsafe { first_match(xr, wr[c], m[c][l], lo, hi) }
            });
            // SAFETY: this task owns column j + c.
            unsafe { k.store(n, j + c, v, win) };
        }
    }
}

/// The first `i` in `[lo, hi)` (one block: at most 16 inputs) with
/// `x[i] + w[i] == m`: two masked loads, an add and a compare.
///
/// # Safety
/// AVX-512F must be available; `x + [lo, hi)` and `w + [lo, hi)` must be readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn first_match(x: *const f32, w: *const f32, m: f32, lo: usize, hi: usize) -> usize {
    debug_assert!(hi - lo <= LANES, "a block is one register wide");
    let lanes: __mmask16 = if hi - lo == LANES { 0xffff } else { (1 << (hi - lo)) - 1 };
    // SAFETY: the mask keeps both loads inside [lo, hi).
    let (xv, wv) = unsafe { (_mm512_maskz_loadu_ps(lanes, x.add(lo)), _mm512_maskz_loadu_ps(lanes, w.add(lo))) };
    let eq = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(lanes, _mm512_add_ps(xv, wv), _mm512_set1_ps(m));
    debug_assert!(eq != 0, "the block maximum {m} is one of its candidates");
    lo + eq.trailing_zeros() as usize
}

/// # Safety
/// Never callable: AVX-512 kernels exist only on x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn columns(_: &Kernel<'_>, _: usize, _: usize) {
    unreachable!("AVX-512 is x86-64 only")
}
