//! Max-plus over an explicitly sparse weight matrix: only the active
//! entries of each output row are stored (CSR), so a forward pass costs
//! `batch × active weights` instead of `batch × n_in × n_out`.
//!
//! `y[n, j] = max(b[j], max_{k in row j} x[n, col[k]] + v[k])`; the winner is
//! the entry index `k` (entries are sorted by column, so ties go to the
//! lowest column, as in the dense kernels), or [`NONE`] when the bias wins.
//! A row with no active entry outputs its bias — the bias is mandatory.
//! These are exactly the dense results for a weight matrix holding `-∞` at
//! every inactive position, with one difference by design: a NaN input in a
//! column that row `j` does not use never reaches `y[:, j]` (in the dense
//! layer it does, since `NaN + -∞` is NaN).

use rayon::prelude::*;

use super::NONE;
use crate::kernels::line_buf::LineBuf;
use crate::kernels::transpose_block_into;

/// The sparsity pattern of a `[n_out, n_in]` weight matrix, row by row,
/// with its column-by-column view (the input gradient walks it that way)
/// built once with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    pub n_out: usize,
    pub n_in: usize,
    /// Row `j` owns entries `row_ptr[j]..row_ptr[j + 1]`.
    row_ptr: Vec<u32>,
    /// Column of each entry, ascending within a row.
    col: Vec<u32>,
    /// Column `i` owns `by_col[col_ptr[i]..col_ptr[i + 1]]`.
    col_ptr: Vec<u32>,
    /// `(entry, row)` of every entry, column by column, rows ascending.
    by_col: Vec<(u32, u32)>,
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
        let mut col_ptr = vec![0u32; n_in + 1];
        col.iter().for_each(|&i| col_ptr[i as usize + 1] += 1);
        (0..n_in).for_each(|i| col_ptr[i + 1] += col_ptr[i]);
        let mut by_col = vec![(0u32, 0u32); col.len()];
        let mut next = col_ptr.clone();
        for j in 0..n_out {
            for k in row_ptr[j] as usize..row_ptr[j + 1] as usize {
                let at = &mut next[col[k] as usize];
                by_col[*at as usize] = (k as u32, j as u32);
                *at += 1;
            }
        }
        Csr { n_out, n_in, row_ptr, col, col_ptr, by_col }
    }

    /// Number of active entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// Entry indices of row `j`.
    pub fn row(&self, j: usize) -> std::ops::Range<usize> {
        self.row_ptr[j] as usize..self.row_ptr[j + 1] as usize
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

/// Batch rows per vector: the lanes-over-batch loops run on groups of 16,
/// and feature-major buffers pad each row of a batch chunk to a multiple.
const LANES: usize = 16;

/// Output rows per block of the forward and input columns per block of the
/// backward: one 64-byte line of results per batch row once the block is
/// transposed into place.
const R: usize = 16;

/// Most batch rows per chunk (so a chunk's scratch blocks stay in L1/L2).
const NB: usize = 256;

/// Below this many candidate evaluations (entries and biases × batch) the
/// kernels stay on the calling thread if the batch fits one chunk of [`NB`]
/// rows: waking another thread costs more. The paper's layer (K = 1024, 512
/// outputs, batch 64) is ~100 000.
const PAR_MIN_WORK: usize = 1 << 20;

/// The batch cut into chunks that the lanes-over-batch loops handle
/// independently, in parallel when there are several: `size` rows each (a
/// multiple of [`LANES`]), the last one possibly shorter. Large work is cut
/// into at least four chunks per thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Chunks {
    batch: usize,
    size: usize,
}

impl Chunks {
    fn new(csr: &Csr, batch: usize) -> Chunks {
        let size = if (csr.nnz() + csr.n_out) * batch < PAR_MIN_WORK {
            NB
        } else {
            // At least four tasks per thread.
            batch.div_ceil(rayon::current_num_threads() * 4).next_multiple_of(LANES).min(NB)
        };
        Chunks { batch, size }
    }

    /// Whether there is more than one chunk.
    fn parallel(&self) -> bool {
        self.size < self.batch
    }

    /// Batch rows `n0..n0 + nb` of chunk `c`, and `nb` padded to whole vectors.
    fn rows(&self, c: usize) -> (usize, usize, usize) {
        let n0 = c * self.size;
        let nb = self.size.min(self.batch - n0);
        (n0, nb, nb.next_multiple_of(LANES))
    }
}

/// The winners of a recorded sparse forward, in the two layouts the
/// backward reads: batch-major `[batch, n_out]` (entry index, or [`NONE`]
/// when the bias won) for the weight and bias gradients, and, per batch
/// chunk, output-major `[n_out, padded chunk]` for the input gradient.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Winners {
    n_out: usize,
    chunks: Chunks,
    by_row: LineBuf<u32>,
    by_output: LineBuf<u32>,
}

impl Winners {
    /// All winners, `[batch, n_out]`.
    pub fn by_row(&self) -> &[u32] {
        &self.by_row
    }
}

/// Sparse max-plus forward into `y [batch, n_out]`; with `record`, also the
/// winners the backward needs.
///
/// Lanes run along the batch: each chunk of the batch is transposed to
/// `xᵀ [n_in, chunk]`, then for each output row `j` and each group of 16
/// batch rows, the entries `k` of row `j` update a running best held in
/// registers with `xᵀ[col[k], :] + v[k]` (adds and selects, no
/// data-dependent branch). Entries are visited in column order and must
/// beat the running best strictly, so ties go to the lowest column; the
/// bias comes last. Rows are done 16 (`R`) at a time in a small block that is
/// transposed straight into its place in `y`. Non-finite inputs take the
/// exact scalar path, which propagates NaN like the dense scalar kernel.
pub fn forward(
    csr: &Csr,
    batch: usize,
    x: &[f32],
    values: &[f32],
    bias: &[f32],
    y: &mut [f32],
    record: bool,
) -> Winners {
    let (n_in, n_out) = (csr.n_in, csr.n_out);
    assert!(x.len() == batch * n_in && y.len() == batch * n_out && values.len() == csr.nnz() && bias.len() == n_out);
    let chunks = Chunks::new(csr, batch);
    let mut win = Winners { n_out, chunks, by_row: LineBuf::default(), by_output: LineBuf::default() };
    if record {
        win.by_row = LineBuf::filled(batch * n_out, NONE);
        win.by_output = LineBuf::filled(batch.next_multiple_of(LANES) * n_out, NONE);
    }
    if batch == 0 || n_out == 0 {
        return win;
    }
    if !(all_finite(x) && all_finite(values) && all_finite(bias)) {
        forward_exact(csr, batch, x, values, bias, y, &mut win);
        return win;
    }
    let task = |c: usize, y: &mut [f32], by_row: &mut [u32], by_output: &mut [u32]| {
        let (n0, nb, nbp) = chunks.rows(c);
        let xt = feature_major(&x[n0 * n_in..(n0 + nb) * n_in], nb, n_in, nbp, 0.0);
        let mut best = [0.0f32; R * NB];
        let mut scratch = [0u32; R * NB];
        for j0 in (0..n_out).step_by(R) {
            let rows = R.min(n_out - j0);
            let best = &mut best[..rows * nbp];
            // Record straight into this chunk's output-major winners.
            let arg = if record { &mut by_output[j0 * nbp..(j0 + rows) * nbp] } else { &mut scratch[..rows * nbp] };
            rows_max(csr, &xt, nbp, values, bias, j0, best, arg);
            transpose_block_into(best, rows, nb, nbp, &mut y[j0..], n_out);
            if record {
                transpose_block_into(arg, rows, nb, nbp, &mut by_row[j0..], n_out);
            }
        }
    };
    let per = chunks.size * n_out;
    let (by_row, by_output) = (&mut win.by_row, &mut win.by_output);
    if chunks.parallel() {
        if record {
            let (wr, wo) = (by_row.par_chunks_mut(per), by_output.par_chunks_mut(per));
            y.par_chunks_mut(per).zip(wr).zip(wo).enumerate().for_each(|(c, ((y, r), o))| task(c, y, r, o));
        } else {
            y.par_chunks_mut(per).enumerate().for_each(|(c, y)| task(c, y, &mut [], &mut []));
        }
    } else {
        task(0, y, by_row, by_output);
    }
    win
}

/// `x [rows, cols]` transposed to `[cols, stride]`, the `stride - rows`
/// padding columns set to `pad`.
fn feature_major<E: Copy + Default>(x: &[E], rows: usize, cols: usize, stride: usize, pad: E) -> LineBuf<E> {
    let mut t = LineBuf::filled(cols * stride, pad);
    transpose_block_into(x, rows, cols, cols, &mut t, stride);
    t
}

/// The forward for inputs holding NaN or ±∞, one output at a time.
fn forward_exact(csr: &Csr, batch: usize, x: &[f32], values: &[f32], bias: &[f32], y: &mut [f32], win: &mut Winners) {
    let (n_in, n_out) = (csr.n_in, csr.n_out);
    for n in 0..batch {
        let xr = &x[n * n_in..(n + 1) * n_in];
        for j in 0..n_out {
            let (v, k) = row_max_exact(csr, xr, values, j);
            let bias_wins = k == NONE || bias[j] > v || (bias[j].is_nan() && !v.is_nan());
            let (v, k) = if bias_wins { (bias[j], NONE) } else { (v, k) };
            y[n * n_out + j] = v;
            if !win.by_row.is_empty() {
                let (n0, _, nbp) = win.chunks.rows(n / win.chunks.size);
                win.by_row[n * n_out + j] = k;
                win.by_output[n0 * n_out + j * nbp + n - n0] = k;
            }
        }
    }
}

simd_dispatch! {
    /// Rows `j0..` of `best`/`arg` (`[rows, nbp]` each) from a chunk's
    /// `xt [n_in, nbp]`; finite inputs.
    fn rows_max(
        csr: &Csr,
        xt: &[f32],
        nbp: usize,
        values: &[f32],
        bias: &[f32],
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
    nbp: usize,
    values: &[f32],
    bias: &[f32],
    j0: usize,
    best: &mut [f32],
    arg: &mut [u32],
) {
    for (r, (b, a)) in best.chunks_exact_mut(nbp).zip(arg.chunks_exact_mut(nbp)).enumerate() {
        let (j, bj) = (j0 + r, bias[j0 + r]);
        for n in (0..nbp).step_by(LANES) {
            // The running best of 16 batch rows stays in registers across
            // the entries (a pass per entry through memory would reload
            // what the previous pass had just stored).
            let (mut bv, mut av) = ([f32::NEG_INFINITY; LANES], [NONE; LANES]);
            for k in csr.row(j) {
                let (xs, w, kk) = (lanes(xt, csr.col[k] as usize * nbp + n), values[k], k as u32);
                for l in 0..LANES {
                    let v = xs[l] + w;
                    let better = v > bv[l];
                    bv[l] = if better { v } else { bv[l] };
                    av[l] = if better { kk } else { av[l] };
                }
            }
            // The bias is the last candidate: it must be strictly greater.
            for l in 0..LANES {
                let bias_wins = av[l] == NONE || bj > bv[l];
                bv[l] = if bias_wins { bj } else { bv[l] };
                av[l] = if bias_wins { NONE } else { av[l] };
            }
            b[n..n + LANES].copy_from_slice(&bv);
            a[n..n + LANES].copy_from_slice(&av);
        }
    }
}

/// The 16 values at `at`, as a fixed-size array (so loops over it unroll
/// into one vector operation).
#[inline(always)]
fn lanes<E>(v: &[E], at: usize) -> &[E; LANES] {
    v[at..at + LANES].try_into().expect("16 lanes")
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

/// Route every `g[n, j]` (`g: [batch, n_out]`) to its winner: `gv[k]` and
/// `gx[n, col[k]]`, or `gb[j]` for the bias. `gv` and `gb` are added to;
/// `gx` is overwritten. Empty output slices are skipped.
///
/// Every sum runs in the order of the dense kernel (over the batch for
/// weights and bias, over outputs for inputs) and adds `0.0` where the
/// candidate lost, which changes no sum: results are bit-identical to the
/// dense layer's. The vector lanes go where that order allows them.
pub fn scatter_grads(csr: &Csr, winners: &Winners, g: &[f32], gx: &mut [f32], gv: &mut [f32], gb: &mut [f32]) {
    let (batch, n_out) = (winners.chunks.batch, csr.n_out);
    assert!(
        winners.n_out == n_out && winners.by_row.len() == batch * n_out,
        "winners of another layer or not recorded"
    );
    assert!(g.len() == batch * n_out, "upstream gradient of {} values for {batch}×{n_out} outputs", g.len());
    assert!(gx.is_empty() || gx.len() == batch * csr.n_in, "dx of {} values for {batch}×{}", gx.len(), csr.n_in);
    assert!(gv.is_empty() || gv.len() == csr.nnz(), "dv of {} values for {} entries", gv.len(), csr.nnz());
    assert!(gb.is_empty() || gb.len() == n_out, "db of {} values for {n_out} outputs", gb.len());
    if !gv.is_empty() || !gb.is_empty() {
        weight_and_bias_grads(csr, batch, &winners.by_row, g, gv, gb);
    }
    if !gx.is_empty() && batch > 0 {
        input_grads(csr, winners, g, gx);
    }
}

/// `dx`, chunk by chunk of the batch: `dxᵀ[i, :]` gathers the batch rows
/// `gᵀ[j, :]` where entry `k` (row `j`, column `i`) won — lanes over the
/// batch, entries of column `i` in ascending row order as in the dense sum —
/// [`R`] columns at a time, each block transposed into its place in `gx`.
fn input_grads(csr: &Csr, winners: &Winners, g: &[f32], gx: &mut [f32]) {
    let (n_in, n_out, chunks) = (csr.n_in, csr.n_out, winners.chunks);
    let task = |c: usize, gx: &mut [f32]| {
        let (n0, nb, nbp) = chunks.rows(c);
        let gt = feature_major(&g[n0 * n_out..(n0 + nb) * n_out], nb, n_out, nbp, 0.0);
        let wt = &winners.by_output[n0 * n_out..(n0 + nbp) * n_out];
        let mut acc = [0.0f32; R * NB];
        for i0 in (0..n_in).step_by(R) {
            let cols = R.min(n_in - i0);
            let acc = &mut acc[..cols * nbp];
            column_sums(&gt, wt, nbp, &csr.col_ptr[i0..], &csr.by_col, acc);
            transpose_block_into(acc, cols, nb, nbp, &mut gx[i0..], n_in);
        }
    };
    if chunks.parallel() {
        gx.par_chunks_mut(chunks.size * n_in).enumerate().for_each(|(c, gx)| task(c, gx));
    } else {
        task(0, gx);
    }
}

simd_dispatch! {
    /// `acc [cols, nbp]`: for each input column `c`, the sum over its entries
    /// `by_col[col_ptr[c]..col_ptr[c + 1]]`.
    fn column_sums(
        gt: &[f32],
        wt: &[u32],
        nbp: usize,
        col_ptr: &[u32],
        by_col: &[(u32, u32)],
        acc: &mut [f32],
    ) => column_sums_generic
}

#[inline(always)]
fn column_sums_generic(gt: &[f32], wt: &[u32], nbp: usize, col_ptr: &[u32], by_col: &[(u32, u32)], acc: &mut [f32]) {
    for (c, out) in acc.chunks_exact_mut(nbp).enumerate() {
        let entries = &by_col[col_ptr[c] as usize..col_ptr[c + 1] as usize];
        for n in (0..nbp).step_by(LANES) {
            let mut sum = [0.0f32; LANES];
            for &(k, j) in entries {
                let (gj, wj) = (lanes(gt, j as usize * nbp + n), lanes(wt, j as usize * nbp + n));
                for l in 0..LANES {
                    sum[l] += masked(gj[l], wj[l] == k);
                }
            }
            out[n..n + LANES].copy_from_slice(&sum);
        }
    }
}

/// Output rows per lane group of [`weight_and_bias_grads`].
const L: usize = 16;
/// Targets summed in one pass over the batch (independent sums, so the
/// adds overlap instead of waiting on each other).
const E: usize = 8;
/// A target no winner holds: entry indices are below nnz, the bias is NONE.
const NEVER: u32 = NONE - 1;

/// `dv[k] = Σ_n g[n, j]·[winner(n, j) = k]` and the same for the bias, each
/// a sum in batch order, computed for 16 output rows at once (one per lane)
/// and up to [`E`] targets (the bias, the first entry of each row, the
/// second, ...) per pass over the batch.
fn weight_and_bias_grads(csr: &Csr, batch: usize, winners: &[u32], g: &[f32], gv: &mut [f32], gb: &mut [f32]) {
    use std::borrow::Cow;
    let n_out = csr.n_out;
    // Both operands as [batch, stride] with the rows padded to whole groups;
    // padding lanes hold gradient 0, so whatever they match adds nothing.
    let stride = n_out.next_multiple_of(L);
    let (winners, gp) = if stride == n_out {
        (Cow::Borrowed(winners), Cow::Borrowed(g))
    } else {
        let (mut wp, mut gp) = (vec![NEVER; batch * stride], vec![0.0f32; batch * stride]);
        for n in 0..batch {
            wp[n * stride..][..n_out].copy_from_slice(&winners[n * n_out..][..n_out]);
            gp[n * stride..][..n_out].copy_from_slice(&g[n * n_out..][..n_out]);
        }
        (Cow::Owned(wp), Cow::Owned(gp))
    };
    let mut targets: Vec<[u32; L]> = Vec::new();
    for j0 in (0..n_out).step_by(L) {
        let lanes = L.min(n_out - j0);
        // The targets of this group: the bias, then the e-th entry of every row.
        targets.clear();
        if !gb.is_empty() {
            targets.push([NONE; L]);
        }
        if !gv.is_empty() {
            let longest = (j0..j0 + lanes).map(|j| csr.row(j).len()).max().unwrap_or(0);
            targets.extend((0..longest).map(|e| {
                std::array::from_fn(|l| {
                    let row = if l < lanes { csr.row(j0 + l) } else { 0..0 };
                    if e < row.len() { (row.start + e) as u32 } else { NEVER }
                })
            }));
        }
        for pass in targets.chunks(E) {
            let mut t = [[NEVER; L]; E];
            t[..pass.len()].copy_from_slice(pass);
            let sums = lane_sums(&winners, &gp, stride, j0, &t);
            for (target, sum) in pass.iter().zip(sums) {
                for (l, (&k, s)) in target.iter().zip(sum).enumerate().take(lanes) {
                    if k == NONE {
                        gb[j0 + l] += s;
                    } else if k != NEVER {
                        gv[k as usize] += s;
                    }
                }
            }
        }
    }
}

/// Lane `l` of sum `e`: `Σ_n g[n, j0 + l]` over the `n` where
/// `targets[e][l]` won, in batch order (`winners`, `g`: `[batch, stride]`).
fn lane_sums(winners: &[u32], g: &[f32], stride: usize, j0: usize, targets: &[[u32; L]; E]) -> [[f32; L]; E] {
    assert!(winners.len() == g.len() && winners.len().is_multiple_of(stride) && j0 + L <= stride);
    #[cfg(target_arch = "x86_64")]
    if super::Isa::detect() == super::Isa::Avx512 {
        // SAFETY: AVX-512F is available; the bounds were checked above.
        return unsafe { lane_sums_avx512(winners, g, stride, j0, targets) };
    }
    lane_sums_portable(winners, g, stride, j0, targets)
}

/// [`lane_sums`] in plain Rust, for CPUs without AVX-512.
fn lane_sums_portable(winners: &[u32], g: &[f32], stride: usize, j0: usize, targets: &[[u32; L]; E]) -> [[f32; L]; E] {
    let mut acc = [[0.0f32; L]; E];
    for n in 0..winners.len() / stride {
        let (w, gn) = (lanes(winners, n * stride + j0), lanes(g, n * stride + j0));
        for e in 0..E {
            for l in 0..L {
                acc[e][l] += masked(gn[l], w[l] == targets[e][l]);
            }
        }
    }
    acc
}

/// [`lane_sums`] in AVX-512 registers: per batch row one load of winners
/// and of gradients, then per target a compare and a masked add (adding
/// nothing where the target lost is the same as adding `+0.0`: a sum that
/// starts at `+0.0` is never `-0.0`). The compiler, left to itself,
/// vectorised the loop over the batch instead, with gathers, which are slow.
///
/// # Safety
/// AVX-512F must be available; `winners` and `g` hold whole rows of
/// `stride` with `j0 + 16 <= stride`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sums_avx512(
    winners: &[u32],
    g: &[f32],
    stride: usize,
    j0: usize,
    targets: &[[u32; L]; E],
) -> [[f32; L]; E] {
    use std::arch::x86_64::*;
    // SAFETY (all loads and stores): 16 elements at `n·stride + j0` lie inside
    // row n, and each target and result array holds 16.
    let t: [__m512i; E] = std::array::from_fn(|e| unsafe { _mm512_loadu_si512(targets[e].as_ptr().cast()) });
    let mut acc = [_mm512_setzero_ps(); E];
    for n in 0..winners.len() / stride {
        let (w, gn) = unsafe {
            (
                _mm512_loadu_si512(winners.as_ptr().add(n * stride + j0).cast()),
                _mm512_loadu_ps(g.as_ptr().add(n * stride + j0)),
            )
        };
        for e in 0..E {
            acc[e] = _mm512_mask_add_ps(acc[e], _mm512_cmpeq_epi32_mask(w, t[e]), acc[e], gn);
        }
    }
    let mut out = [[0.0f32; L]; E];
    for e in 0..E {
        unsafe { _mm512_storeu_ps(out[e].as_mut_ptr(), acc[e]) };
    }
    out
}

/// `g` if `won`, else `+0.0`, through a bit mask: written as `if won { g }
/// else { 0.0 }` the compiler kept the loops around it scalar.
#[inline(always)]
fn masked(g: f32, won: bool) -> f32 {
    f32::from_bits(g.to_bits() & u32::from(won).wrapping_neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_gradient_sums_agree_bit_for_bit_on_every_path() {
        // Winners drawn among the targets, NEVER-like misses and the bias;
        // gradients with full mantissas and some -0.0.
        let (batch, stride, j0) = (37, 48, 16);
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let targets: [[u32; L]; E] = std::array::from_fn(|e| std::array::from_fn(|l| (e * 3 + l % 3) as u32));
        let winners: Vec<u32> =
            (0..batch * stride).map(|_| if next() % 5 == 0 { NONE } else { (next() % 30) as u32 }).collect();
        let g: Vec<f32> = (0..batch * stride)
            .map(|_| if next() % 7 == 0 { -0.0 } else { (next() % 100_000) as f32 * 1.37e-5 - 0.6137 })
            .collect();
        let portable = lane_sums_portable(&winners, &g, stride, j0, &targets);
        let bits = |a: [[f32; L]; E]| a.map(|r| r.map(f32::to_bits));
        assert!(portable.iter().flatten().any(|&v| v != 0.0), "the case must have winners");
        assert_eq!(bits(lane_sums(&winners, &g, stride, j0, &targets)), bits(portable));
    }
}
