//! The frame every SIMD max-plus kernel works in: what it reads and writes
//! ([`Kernel`]), how it walks its columns in register tiles
//! ([`Kernel::walk`]), and how a tile's running maxima become outputs and
//! winners ([`Kernel::resolve_tile`]). The kernels themselves (`avx2`,
//! `avx512`) are only the inner loops.

use super::{BLOCK, Dims};

/// Where the SIMD kernels write: `y [batch, n_out]` and, unless null,
/// `winners [batch, n_out]` and zeros over `grad_w [n_out, n_in]`. Shared by
/// tasks that own disjoint columns (rows of `grad_w`).
#[derive(Clone, Copy)]
pub(crate) struct Out {
    pub(super) y: *mut f32,
    pub(super) winners: *mut u32,
    pub(super) grad_w: *mut f32,
}

// SAFETY: every task writes only the columns it owns (see `forward_simd`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Everything a SIMD kernel reads, and where it writes.
pub(crate) struct Kernel<'a> {
    pub d: Dims,
    /// Batch padded to a whole number of registers.
    pub bp: usize,
    /// `x [batch, n_in]`, for the winner re-scan.
    pub x: &'a [f32],
    /// x packed as `[bp / lanes][n_in][lanes]`, zero-padded rows.
    pub xp: &'a [f32],
    /// `W [n_out, n_in]`.
    pub w: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub(super) out: Out,
}

impl Kernel<'_> {
    pub fn want_winners(&self) -> bool {
        !self.out.winners.is_null()
    }

    /// Rows `[j, j + NJ)` of the weight gradient to clear, if one is being
    /// cleared (pointers, for the calling task's own rows).
    pub fn grad_w_rows<const NJ: usize>(&self, j: usize) -> Option<[*mut f32; NJ]> {
        let n_in = self.d.n_in;
        (!self.out.grad_w.is_null()).then(|| std::array::from_fn(|c| self.out.grad_w.wrapping_add((j + c) * n_in)))
    }

    /// Row `j` of `W`.
    pub fn w_row(&self, j: usize) -> &[f32] {
        &self.w[j * self.d.n_in..(j + 1) * self.d.n_in]
    }

    /// Run `tile(j, nb, full, first)` over columns `[j0, j1)` in register
    /// tiles of `tile_j` columns (`full`) or single columns at the ragged
    /// end, and every panel `nb` of `lanes` rows; false (stopping early) as
    /// soon as a tile returns false. The first panel of each column range
    /// gets `first`: that tile also checks its rows of W for NaN and +∞ (see
    /// the module docs), returning false instead of writing if it finds one,
    /// and clears the same rows of the weight gradient if there is one.
    #[inline(always)]
    pub fn walk(
        &self,
        j0: usize,
        j1: usize,
        tile_j: usize,
        lanes: usize,
        mut tile: impl FnMut(usize, usize, bool, bool) -> bool,
    ) -> bool {
        let mut j = j0;
        while j < j1 {
            let nj = if j + tile_j <= j1 { tile_j } else { 1 };
            for nb in (0..self.bp).step_by(lanes) {
                if !tile(j, nb, nj == tile_j, nb == 0) {
                    return false;
                }
            }
            j += nj;
        }
        true
    }

    /// Write the results of a register tile, rows `[nb, nb + L)` (those
    /// inside the batch) × columns `[j, j + NJ)`, from each output's running
    /// maximum `m[c][l]` over the inputs and the block `blk[c][l]` where it
    /// was first reached (read only when winners are tracked).
    ///
    /// An output's winner is the bias if strictly greater than `m`, else the
    /// first input of that block attaining `m`, found by the kernel's
    /// `first_match(x, w, m, len)` (the first `i < len ≤ BLOCK` with
    /// `x[i] + w[i] == m`). Its value is the winning candidate's own sum —
    /// exactly the scalar result, even the sign of a zero: `max` returns one
    /// of its operands, so a nonzero maximum has the very bits of that sum,
    /// and only a zero (whose sign may differ from the first candidate
    /// reaching it) is recomputed; without winners, from the first
    /// candidate of the row that is zero.
    ///
    /// # Safety
    /// The calling task must own columns `[j, j + NJ)`, which must exist;
    /// `first_match` must read only its first `len` elements.
    #[inline(always)]
    pub unsafe fn resolve_tile<const NJ: usize, const L: usize>(
        &self,
        j: usize,
        nb: usize,
        m: &[[f32; L]; NJ],
        blk: &[[u32; L]; NJ],
        first_match: impl Fn(*const f32, *const f32, f32, usize) -> usize,
    ) {
        let Dims { batch, n_in, n_out } = self.d;
        debug_assert!(j + NJ <= n_out && nb < batch);
        let track = self.want_winners();
        let bias = self.bias.map(|b| b[j..j + NJ].as_ptr());
        for l in 0..(batch - nb).min(L) {
            let n = nb + l;
            // SAFETY: n < batch and c < NJ keep every offset inside x, W,
            // bias, y and winners; the caller owns these columns.
            unsafe {
                let at = n * n_out + j;
                let xr = self.x.as_ptr().add(n * n_in);
                for c in 0..NJ {
                    let mv = m[c][l];
                    let b = bias.map(|b| *b.add(c));
                    if !track {
                        *self.out.y.add(at + c) = b.map_or(mv, |b| b.max(mv));
                        continue;
                    }
                    let (v, win) = match b {
                        Some(b) if b > mv => (b, n_in),
                        _ => {
                            let wr = self.w.as_ptr().add((j + c) * n_in);
                            let lo = blk[c][l] as usize * BLOCK;
                            let i = lo + first_match(xr.add(lo), wr.add(lo), mv, (n_in - lo).min(BLOCK));
                            (if mv == 0.0 { *xr.add(i) + *wr.add(i) } else { mv }, i)
                        }
                    };
                    *self.out.y.add(at + c) = v;
                    *self.out.winners.add(at + c) = win as u32;
                }
            }
        }
        if !track && m.iter().flatten().fold(false, |z, &v| z | (v == 0.0)) {
            // SAFETY: passed on from the caller.
            unsafe { self.zero_maxima_without_winners(j, nb, m) };
        }
    }

    /// Give zero maxima of a tile written without winners the sign of the
    /// first candidate reaching them (rare, so out of line).
    ///
    /// # Safety
    /// As [`Kernel::resolve_tile`].
    #[cold]
    #[inline(never)]
    unsafe fn zero_maxima_without_winners<const NJ: usize, const L: usize>(
        &self,
        j: usize,
        nb: usize,
        m: &[[f32; L]; NJ],
    ) {
        let Dims { batch, n_in, n_out } = self.d;
        for (c, m) in m.iter().enumerate() {
            let wr = self.w_row(j + c);
            for (n, &mv) in (nb..batch).zip(m) {
                if mv == 0.0 && !self.bias.is_some_and(|b| b[j + c] > mv) {
                    let xr = &self.x[n * n_in..(n + 1) * n_in];
                    let v = xr.iter().zip(wr).map(|(a, b)| a + b).find(|&v| v == 0.0);
                    // SAFETY: n < batch and j + c < n_out; the caller owns the column.
                    unsafe { *self.out.y.add(n * n_out + j + c) = v.expect("the maximum is one of the sums") };
                }
            }
        }
    }
}
