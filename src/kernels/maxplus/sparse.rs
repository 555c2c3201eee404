//! Max-plus over an explicitly sparse weight matrix: only the active
//! entries of each output row are stored (CSR), so a forward pass costs
//! `batch × active weights` instead of `batch × n_in × n_out`.
//!
//! `y[n, j] = max(b[j], max_{k in row j} x[n, col[k]] + v[k])`; the winner is
//! the entry index `k` (entries are sorted by column, so ties go to the
//! lowest column, as in the dense kernels), or [`NONE`] when the bias wins.
//! A row with no active entry outputs its bias — the bias is mandatory.
//! These are exactly the dense results for a weight matrix holding `-∞` at
//! every inactive position.

use rayon::prelude::*;

use super::NONE;
use crate::kernels::{transpose, transpose_into};

/// The sparsity pattern of a `[n_out, n_in]` weight matrix, row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    pub n_out: usize,
    pub n_in: usize,
    /// Row `j` owns entries `row_ptr[j]..row_ptr[j + 1]`.
    pub row_ptr: Vec<u32>,
    /// Column of each entry, ascending within a row.
    pub col: Vec<u32>,
}

impl Csr {
    /// The pattern of the positions where `active(j, i)` holds.
    pub fn from_fn(n_out: usize, n_in: usize, mut active: impl FnMut(usize, usize) -> bool) -> Csr {
        let mut row_ptr = Vec::with_capacity(n_out + 1);
        let mut col = Vec::new();
        row_ptr.push(0);
        for j in 0..n_out {
            col.extend((0..n_in).filter(|&i| active(j, i)).map(|i| i as u32));
            row_ptr.push(col.len() as u32);
        }
        Csr { n_out, n_in, row_ptr, col }
    }

    /// Number of active entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// Entry indices of row `j`.
    pub fn row(&self, j: usize) -> std::ops::Range<usize> {
        self.row_ptr[j] as usize..self.row_ptr[j + 1] as usize
    }

    /// The output row of every entry, in entry order.
    pub fn rows_of_entries(&self) -> Vec<u32> {
        (0..self.n_out).flat_map(|j| self.row(j).map(move |_| j as u32)).collect()
    }

    /// Scatter entry values into a dense `[n_out, n_in]` matrix filled with `fill`.
    pub fn to_dense(&self, values: &[f32], fill: f32) -> Vec<f32> {
        let mut dense = vec![fill; self.n_out * self.n_in];
        for j in 0..self.n_out {
            for k in self.row(j) {
                dense[j * self.n_in + self.col[k] as usize] = values[k];
            }
        }
        dense
    }
}

/// Below this many candidate evaluations (entries and biases × batch) the
/// forward stays on the calling thread: waking another one costs more. The
/// paper's layer (K = 1024, 512 outputs, batch 64) is ~100 000.
const PAR_MIN_WORK: usize = 1 << 20;

/// Sparse max-plus forward. `winners_t`, when given, receives the winners
/// *transposed*, `[n_out, batch]` (entry index or [`NONE`] for the bias) —
/// the layout [`scatter_grads`] consumes.
///
/// Lanes run along the batch: for each entry `k` of row `j`, one pass over
/// the batch updates `best[j, :]` with `xᵀ[col[k], :] + v[k]` (adds and
/// selects the compiler vectorises; no data-dependent branch). Entries are
/// visited in column order and must beat the running best strictly, so ties
/// go to the lowest column. Non-finite inputs take the exact scalar path,
/// which propagates NaN like the dense scalar kernel.
pub fn forward(
    csr: &Csr,
    batch: usize,
    x: &[f32],
    values: &[f32],
    bias: &[f32],
    y: &mut [f32],
    winners_t: Option<&mut [u32]>,
) {
    let (n_in, n_out) = (csr.n_in, csr.n_out);
    assert!(x.len() == batch * n_in && y.len() == batch * n_out && values.len() == csr.nnz() && bias.len() == n_out);
    let mut own = Vec::new();
    let arg: &mut [u32] = match winners_t {
        Some(w) => {
            assert_eq!(w.len(), y.len());
            w
        }
        None => {
            own.resize(y.len(), NONE);
            &mut own
        }
    };
    let finite = all_finite(x) && all_finite(values) && all_finite(bias);
    let mut best = vec![f32::NEG_INFINITY; n_out * batch];
    if finite {
        let xt = transpose(x, batch, n_in);
        if (csr.nnz() + n_out) * batch < PAR_MIN_WORK {
            rows_max(csr, &xt, values, bias, batch, 0, &mut best, arg);
            return transpose_into(&best, n_out, batch, y);
        }
        let rows = n_out.div_ceil(rayon::current_num_threads() * 4).max(1);
        best.par_chunks_mut(rows * batch)
            .zip(arg.par_chunks_mut(rows * batch))
            .enumerate()
            .for_each(|(t, (bc, ac))| rows_max(csr, &xt, values, bias, batch, t * rows, bc, ac));
    } else {
        for n in 0..batch {
            let xr = &x[n * n_in..(n + 1) * n_in];
            for j in 0..n_out {
                let (v, k) = row_max_exact(csr, xr, values, j);
                let bias_wins = k == NONE || bias[j] > v || (bias[j].is_nan() && !v.is_nan());
                best[j * batch + n] = if bias_wins { bias[j] } else { v };
                arg[j * batch + n] = if bias_wins { NONE } else { k };
            }
        }
    }
    transpose_into(&best, n_out, batch, y);
}

simd_dispatch! {
    /// Rows `j0..` of `best`/`arg` (`[rows, batch]` each), finite inputs.
    fn rows_max(
        csr: &Csr,
        xt: &[f32],
        values: &[f32],
        bias: &[f32],
        batch: usize,
        j0: usize,
        best: &mut [f32],
        arg: &mut [u32],
    ) => rows_max_generic
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_max_generic(
    csr: &Csr,
    xt: &[f32],
    values: &[f32],
    bias: &[f32],
    batch: usize,
    j0: usize,
    best: &mut [f32],
    arg: &mut [u32],
) {
    for (r, (b, a)) in best.chunks_exact_mut(batch).zip(arg.chunks_exact_mut(batch)).enumerate() {
        let j = j0 + r;
        a.fill(NONE);
        for k in csr.row(j) {
            let (xs, w, kk) = (&xt[csr.col[k] as usize * batch..][..batch], values[k], k as u32);
            for ((b, a), &xv) in b.iter_mut().zip(a.iter_mut()).zip(xs) {
                let v = xv + w;
                let better = v > *b;
                *b = if better { v } else { *b };
                *a = if better { kk } else { *a };
            }
        }
        // The bias is the last candidate: it must be strictly greater.
        let bj = bias[j];
        for (b, a) in b.iter_mut().zip(a.iter_mut()) {
            let bias_wins = *a == NONE || bj > *b;
            *b = if bias_wins { bj } else { *b };
            *a = if bias_wins { NONE } else { *a };
        }
    }
}

/// Whether no value is NaN or ±∞ (a fold without early exit, so it vectorises).
fn all_finite(v: &[f32]) -> bool {
    v.iter().fold(true, |ok, a| ok & a.is_finite())
}

/// Max over the entries of row `j` with NaN propagation (the first NaN wins).
fn row_max_exact(csr: &Csr, xr: &[f32], values: &[f32], j: usize) -> (f32, u32) {
    let (mut best, mut arg) = (f32::NEG_INFINITY, NONE);
    for k in csr.row(j) {
        let v = xr[csr.col[k] as usize] + values[k];
        if arg == NONE || v > best || (v.is_nan() && !best.is_nan()) {
            best = v;
            arg = k as u32;
        }
    }
    (best, arg)
}

simd_dispatch! {
    /// Route every `g[n, j]` (`g: [batch, n_out]`) to its winner given the
    /// transposed winners of [`forward`]: `gv[k]` and `gx[n, col[k]]`, or `gb[j]`
    /// for the bias. Empty output slices are skipped; results are added.
    pub fn scatter_grads(
        csr: &Csr,
        batch: usize,
        winners_t: &[u32],
        g: &[f32],
        gx: &mut [f32],
        gv: &mut [f32],
        gb: &mut [f32],
    ) => scatter_grads_generic
}

#[inline(always)]
fn scatter_grads_generic(
    csr: &Csr,
    batch: usize,
    winners_t: &[u32],
    g: &[f32],
    gx: &mut [f32],
    gv: &mut [f32],
    gb: &mut [f32],
) {
    // Every sum runs in the order of the dense kernel (over the batch for
    // weights and bias, over outputs for inputs) and adds `0.0` where the
    // candidate lost, which changes no sum: results are bit-identical to the
    // dense layer's. The vector lanes go where that order allows them.
    let (n_in, n_out) = (csr.n_in, csr.n_out);
    if !gv.is_empty() || !gb.is_empty() {
        weight_and_bias_grads(csr, batch, winners_t, g, gv, gb);
    }
    if !gx.is_empty() {
        // dxᵀ[col[k], :] gathers the batch row g[:, j] where entry k of row j
        // won: lanes over the batch, rows visited in ascending j.
        let gt = transpose(g, batch, n_out);
        let mut gxt = vec![0.0f32; n_in * batch];
        for j in 0..n_out {
            let (w, gj) = (&winners_t[j * batch..][..batch], &gt[j * batch..][..batch]);
            for k in csr.row(j) {
                let row = &mut gxt[csr.col[k] as usize * batch..][..batch];
                for ((o, &wn), &gn) in row.iter_mut().zip(w).zip(gj) {
                    *o += masked(gn, wn == k as u32);
                }
            }
        }
        for (o, a) in gx.iter_mut().zip(transpose(&gxt, n_in, batch)) {
            *o += a;
        }
    }
}

/// Output rows per lane group of [`weight_and_bias_grads`].
const L: usize = 16;
/// A target no winner holds: entry indices are below nnz, the bias is NONE.
const NEVER: u32 = NONE - 1;

/// `dv[k] = Σ_n g[n, j]·[winner(n, j) = k]` and the same for the bias, each
/// a sum in batch order, computed for 16 output rows at once (one per lane).
#[inline(always)]
fn weight_and_bias_grads(csr: &Csr, batch: usize, winners_t: &[u32], g: &[f32], gv: &mut [f32], gb: &mut [f32]) {
    let n_out = csr.n_out;
    // Both operands as [batch, stride] with the rows padded to whole groups;
    // padding lanes hold gradient 0, so whatever they match adds nothing.
    let stride = n_out.next_multiple_of(L);
    let (winners, gp) = if stride == n_out {
        (transpose(winners_t, n_out, batch), std::borrow::Cow::Borrowed(g))
    } else {
        let mut wt = winners_t.to_vec();
        wt.resize(stride * batch, NEVER);
        let mut gp = vec![0.0f32; batch * stride];
        for (dst, src) in gp.chunks_exact_mut(stride).zip(g.chunks_exact(n_out)) {
            dst[..n_out].copy_from_slice(src);
        }
        (transpose(&wt, stride, batch), std::borrow::Cow::Owned(gp))
    };
    for j0 in (0..n_out).step_by(L) {
        let lanes = L.min(n_out - j0);
        if !gb.is_empty() {
            let acc = lane_sums(&winners, &gp, stride, j0, &[NONE; L]);
            gb[j0..j0 + lanes].iter_mut().zip(acc).for_each(|(o, a)| *o += a);
        }
        if !gv.is_empty() {
            let longest = (j0..j0 + lanes).map(|j| csr.row(j).len()).max().unwrap_or(0);
            for e in 0..longest {
                // The e-th entry of every row in the group (or a never-winner).
                let mut target = [NEVER; L];
                for (l, t) in target.iter_mut().enumerate().take(lanes) {
                    let row = csr.row(j0 + l);
                    if e < row.len() {
                        *t = (row.start + e) as u32;
                    }
                }
                let acc = lane_sums(&winners, &gp, stride, j0, &target);
                for (&t, a) in target.iter().zip(acc) {
                    if t != NEVER {
                        gv[t as usize] += a;
                    }
                }
            }
        }
    }
}

/// Lane `l`: `Σ_n g[n, j0 + l]` over the `n` where `target[l]` won, in batch
/// order (`winners`, `g`: `[batch, stride]`).
#[inline(always)]
fn lane_sums(winners: &[u32], g: &[f32], stride: usize, j0: usize, target: &[u32; L]) -> [f32; L] {
    let mut acc = [0.0f32; L];
    for (w, gn) in winners.chunks_exact(stride).zip(g.chunks_exact(stride)) {
        let (w, gn): (&[u32; L], &[f32; L]) =
            (w[j0..j0 + L].try_into().expect("L lanes"), gn[j0..j0 + L].try_into().expect("L lanes"));
        for l in 0..L {
            acc[l] += masked(gn[l], w[l] == target[l]);
        }
    }
    acc
}

/// `g` if `won`, else `+0.0`, through a bit mask: written as `if won { g }
/// else { 0.0 }` the compiler kept the loops around it scalar (2× slower).
#[inline(always)]
fn masked(g: f32, won: bool) -> f32 {
    f32::from_bits(g.to_bits() & u32::from(won).wrapping_neg())
}
