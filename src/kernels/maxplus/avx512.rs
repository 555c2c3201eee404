//! AVX-512 max-plus kernel: 16 batch rows per register, a register tile of
//! 16 rows × [`TILE_J`] outputs. Per input `i`: one load of `xᵀ[i, rows]`,
//! then for each output `j` a broadcast of `W[j, i]` (from a packed panel),
//! an add and a max — the two arithmetic instructions per 16 candidates
//! that bound any max-plus kernel. Winners are tracked per block (see the
//! parent module).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use super::BLOCK;
use super::Kernel;

/// Output columns per register tile (16 rows × 8 columns = 8 block maxima,
/// 8 running maxima and 8 block ids: 24 of the 32 zmm registers).
pub const TILE_J: usize = 8;
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// Compute output columns `[j0, j1)` for the whole batch; false (outputs
/// unspecified) if their rows of W hold a NaN or +∞.
///
/// # Safety
/// The CPU must support AVX-512F, and the calling task must own the columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn columns(k: &Kernel<'_>, j0: usize, j1: usize) -> bool {
    k.walk(j0, j1, TILE_J, LANES, |j, nb, full, first| {
        // SAFETY: AVX-512F is enabled (see the caller's contract); the task owns the tile's columns.
        unsafe { if full { tile::<TILE_J>(k, j, nb, first) } else { tile::<1>(k, j, nb, first) } }
    })
}

/// Rows `[nb, nb+16)` × columns `[j, j+NJ)`. The `first` tile of these
/// columns also clears their rows of the weight gradient, if one is being
/// cleared, and returns false (nothing written) if their rows of W hold a
/// NaN or +∞.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const NJ: usize>(k: &Kernel<'_>, j: usize, nb: usize, first: bool) -> bool {
    let n_in = k.d.n_in;
    let track = k.want_winners();
    let xp = k.xp[nb * n_in..].as_ptr();
    // Row pointers hidden from the optimiser so each stays in its own register
    // and every weight load is a single `[row + 4i]` address.
    let wr: [*const f32; NJ] = std::hint::black_box(std::array::from_fn(|c| k.w_row(j + c).as_ptr()));
    let gw = if first { k.grad_w_rows::<NJ>(j) } else { None };
    let mut acc = [_mm512_set1_ps(f32::NEG_INFINITY); NJ];
    let mut blk = [_mm512_setzero_si512(); NJ];
    let mut w_sum = _mm512_setzero_ps();
    for t in 0..n_in.div_ceil(BLOCK) {
        let (i0, i1) = (t * BLOCK, ((t + 1) * BLOCK).min(n_in));
        let mut bm = [_mm512_set1_ps(f32::NEG_INFINITY); NJ];
        for i in i0..i1 {
            // SAFETY: i < n_in keeps xp + 16i + 16 and every wr[c] + i in bounds.
            let xv = unsafe { _mm512_loadu_ps(xp.add(i * LANES)) };
            for c in 0..NJ {
                let wv = _mm512_set1_ps(unsafe { *wr[c].add(i) });
                bm[c] = _mm512_max_ps(bm[c], _mm512_add_ps(xv, wv));
            }
        }
        if first {
            // The block's weights, W[j + c, i0..i1], one register per row;
            // and the same entries of the weight gradient.
            let lanes = (u32::MAX >> (32 - (i1 - i0))) as __mmask16;
            for r in wr {
                // SAFETY: the mask keeps the load inside the row's [i0, i1).
                w_sum = _mm512_add_ps(w_sum, unsafe { _mm512_maskz_loadu_ps(lanes, r.add(i0)) });
            }
            if let Some(gw) = &gw {
                for g in gw {
                    // SAFETY: as the loads, in the task's own gradient rows.
                    unsafe { _mm512_mask_storeu_ps(g.add(i0), lanes, _mm512_setzero_ps()) };
                }
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
    if first && _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(w_sum, _mm512_set1_ps(f32::INFINITY)) != 0 {
        return false;
    }
    let (mut m, mut b) = ([[0.0f32; LANES]; NJ], [[0u32; LANES]; NJ]);
    for c in 0..NJ {
        // SAFETY: each array holds 16 elements.
        unsafe {
            _mm512_storeu_ps(m[c].as_mut_ptr(), acc[c]);
            _mm512_storeu_si512(b[c].as_mut_ptr().cast(), blk[c]);
        }
    }
    // SAFETY: this task owns columns j..j+NJ; `first_match` reads `len` elements.
    unsafe { k.resolve_tile(j, nb, &m, &b, |x, w, m, len| first_match(x, w, m, len)) };
    true
}

/// The first `i < len` (one block: `len ≤ 16`) with `x[i] + w[i] == m`:
/// two masked loads, an add and a compare.
///
/// # Safety
/// AVX-512F must be available; `x[..len]` and `w[..len]` must be readable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn first_match(x: *const f32, w: *const f32, m: f32, len: usize) -> usize {
    debug_assert!(len <= LANES, "a block is one register wide");
    let lanes = ((1u32 << len) - 1) as __mmask16;
    // SAFETY: the mask keeps both loads inside [0, len).
    let (xv, wv) = unsafe { (_mm512_maskz_loadu_ps(lanes, x), _mm512_maskz_loadu_ps(lanes, w)) };
    let eq = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(lanes, _mm512_add_ps(xv, wv), _mm512_set1_ps(m));
    debug_assert!(eq != 0, "the block maximum {m} is one of its candidates");
    eq.trailing_zeros() as usize
}

/// # Safety
/// Never callable: AVX-512 kernels exist only on x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn columns(_: &Kernel<'_>, _: usize, _: usize) -> bool {
    unreachable!("AVX-512 is x86-64 only")
}
