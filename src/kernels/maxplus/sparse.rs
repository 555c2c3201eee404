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

/// Sparse max-plus forward; `winners` (entry index or [`NONE`]) when given.
pub fn forward(
    csr: &Csr,
    batch: usize,
    x: &[f32],
    values: &[f32],
    bias: &[f32],
    y: &mut [f32],
    winners: Option<&mut [u32]>,
) {
    let (n_in, n_out) = (csr.n_in, csr.n_out);
    assert!(x.len() == batch * n_in && y.len() == batch * n_out && values.len() == csr.nnz() && bias.len() == n_out);
    let row = |n: usize, yr: &mut [f32], wr: Option<&mut [u32]>| {
        let xr = &x[n * n_in..(n + 1) * n_in];
        let mut wr = wr;
        for j in 0..n_out {
            let (mut best, mut arg) = (f32::NEG_INFINITY, NONE);
            for k in csr.row(j) {
                let v = xr[csr.col[k] as usize] + values[k];
                if arg == NONE || v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    arg = k as u32;
                }
            }
            if arg == NONE || bias[j] > best || (bias[j].is_nan() && !best.is_nan()) {
                best = bias[j];
                arg = NONE;
            }
            yr[j] = best;
            if let Some(w) = wr.as_deref_mut() {
                w[j] = arg;
            }
        }
    };
    match winners {
        Some(w) => {
            assert_eq!(w.len(), y.len());
            y.par_chunks_mut(n_out)
                .zip(w.par_chunks_mut(n_out))
                .enumerate()
                .for_each(|(n, (yr, wr))| row(n, yr, Some(wr)));
        }
        None => y.par_chunks_mut(n_out).enumerate().for_each(|(n, yr)| row(n, yr, None)),
    }
}

/// Route every `g[n, j]` to its winner: `gv[k]` and `gx[n, col[k]]`, or
/// `gb[j]` for the bias. Empty output slices are skipped. Batch-ordered sums.
pub fn scatter_grads(
    csr: &Csr,
    batch: usize,
    winners: &[u32],
    g: &[f32],
    gx: &mut [f32],
    gv: &mut [f32],
    gb: &mut [f32],
) {
    let n_out = csr.n_out;
    if !gx.is_empty() {
        gx.par_chunks_mut(csr.n_in.max(1)).enumerate().for_each(|(n, row)| {
            for j in 0..n_out {
                let k = winners[n * n_out + j];
                if k != NONE {
                    row[csr.col[k as usize] as usize] += g[n * n_out + j];
                }
            }
        });
    }
    for n in 0..batch {
        for j in 0..n_out {
            let (k, gv_nj) = (winners[n * n_out + j], g[n * n_out + j]);
            if k == NONE {
                if !gb.is_empty() {
                    gb[j] += gv_nj;
                }
            } else if !gv.is_empty() {
                gv[k as usize] += gv_nj;
            }
        }
    }
}
