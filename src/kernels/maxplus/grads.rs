//! The max-plus backward, fast: the rule of [`super::scalar::grads`] —
//! every upstream entry `g[n, j]` goes whole to its winner, `gx[n, i*]` and
//! `gw[j, i*]`, or `gb[j]` when the bias won — computed in one parallel
//! region. Each task owns whole rows of one result: it clears them and
//! scatters into them while they are in its cache (a separate zero-filling
//! pass over a large weight gradient costs as much as the scatter itself).
//! Sums run in the reference's order — a slot of `gx` over the outputs in
//! output order, a slot of `gw` or `gb` over the batch in batch order — so
//! the results are the reference's, bit for bit, for any thread count.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Mutex;

use super::Dims;

/// `[gx [batch, n_in], gw [n_out, n_in], gb [n_out]]` of a max-plus product
/// from its `winners` and the upstream gradient `g` (both `[batch, n_out]`),
/// each only where `want` asks for it. The weight gradient is scattered into
/// `zeroed_gw` when one is given (and wanted): a zero-filled `[n_out, n_in]`
/// buffer, such as [`super::product`] clears while it reads `W`.
pub fn grads(
    d: Dims,
    winners: &[u32],
    g: &[f32],
    want: [bool; 3],
    zeroed_gw: Option<Vec<f32>>,
) -> [Option<Vec<f32>>; 3] {
    assert!(winners.len() == d.batch * d.n_out && g.len() == winners.len());
    let Dims { batch, n_in, n_out } = d;
    let [want_x, want_w, want_b] = want;
    let zeroed_gw = zeroed_gw.filter(|_| want_w);
    if let Some(gw) = &zeroed_gw {
        assert_eq!(gw.len(), n_out * n_in, "max-plus grads: a weight gradient buffer of the wrong size");
        debug_assert!(gw.iter().all(|&v| v == 0.0), "max-plus grads: the weight gradient buffer is not zero-filled");
    }
    let gw_zeroed = zeroed_gw.is_some();
    let mut gx = want_x.then(|| Vec::with_capacity(batch * n_in));
    let mut gw = want_w.then(|| zeroed_gw.unwrap_or_else(|| Vec::with_capacity(n_out * n_in)));
    let mut gb = want_b.then(|| vec![0.0f32; n_out]);
    let jobs = jobs(d, gx.as_mut(), gw.as_mut().map(|gw| (gw, gw_zeroed)), gb.as_deref_mut());
    // Each job is taken, once, by the task that claims its index.
    let jobs: Vec<Mutex<Option<Job>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    crate::runtime::run_tasks(jobs.len(), |t| match jobs[t].lock().unwrap().take().unwrap() {
        Job::X(n0, rows) => input_rows(d, winners, g, n0, cleared(rows)),
        Job::W(js, gw, gb) => weight_rows(d, winners, g, js, gw.map(GwRows::zeros), gb),
    });
    // SAFETY: the jobs cleared every row of gx, and of gw unless it came
    // zero-filled (`cleared`, `GwRows::zeros`).
    unsafe {
        if let Some(gx) = &mut gx {
            gx.set_len(batch * n_in);
        }
        if let Some(gw) = &mut gw {
            gw.set_len(n_out * n_in); // already so when it came zero-filled
        }
    }
    [gx, gw, gb]
}

/// The work of one task: rows of `gx` from row `n0` on, or rows `js` of
/// `gw` (if wanted) with the same entries of `gb` (if wanted).
enum Job<'a> {
    X(usize, &'a mut [MaybeUninit<f32>]),
    W(Range<usize>, Option<GwRows<'a>>, Option<&'a mut [f32]>),
}

/// Rows of the weight gradient: still to be cleared, or zero-filled already.
enum GwRows<'a> {
    Unset(&'a mut [MaybeUninit<f32>]),
    Zero(&'a mut [f32]),
}

impl<'a> GwRows<'a> {
    /// The rows, all zero.
    fn zeros(self) -> &'a mut [f32] {
        match self {
            GwRows::Unset(rows) => cleared(rows),
            GwRows::Zero(rows) => rows,
        }
    }
}

/// The jobs of one call, in the order `run_tasks` hands them out: jobs of up
/// to 8 rows of `gx`, and 4 jobs per thread over the rows of `gw` / `gb`.
/// `run_tasks` gives each thread a contiguous share of the list, so the
/// weight jobs sit where the forward's tasks over the same rows of `W` sat,
/// and each thread works on the rows whose cache lines it wrote; each input
/// job comes after a group of weight jobs, because it reads rows of winners
/// that the other threads wrote.
fn jobs<'a>(
    d: Dims,
    gx: Option<&'a mut Vec<f32>>,
    gw: Option<(&'a mut Vec<f32>, bool)>,
    gb: Option<&'a mut [f32]>,
) -> Vec<Job<'a>> {
    let Dims { batch, n_in, n_out } = d;
    let (per_n, per_j) = (8, n_out.div_ceil(rayon::current_num_threads() * 4).max(1));
    let x_jobs: Vec<Job> = match gx {
        Some(gx) => {
            let rows = gx.spare_capacity_mut()[..batch * n_in].chunks_mut(per_n * n_in.max(1));
            rows.enumerate().map(|(t, c)| Job::X(t * per_n, c)).collect()
        }
        None => vec![],
    };
    let mut w_jobs: Vec<Job> = Vec::new();
    if gw.is_some() || gb.is_some() {
        let chunk = per_j * n_in.max(1);
        let mut gw_rows = gw.map(|(gw, zeroed)| -> std::vec::IntoIter<GwRows> {
            match zeroed {
                true => gw.chunks_mut(chunk).map(GwRows::Zero).collect::<Vec<_>>().into_iter(),
                false => gw.spare_capacity_mut()[..n_out * n_in]
                    .chunks_mut(chunk)
                    .map(GwRows::Unset)
                    .collect::<Vec<_>>()
                    .into_iter(),
            }
        });
        let mut gb_rows = gb.map(|gb| gb.chunks_mut(per_j));
        for t in 0..n_out.div_ceil(per_j) {
            let js = t * per_j..((t + 1) * per_j).min(n_out);
            w_jobs.push(Job::W(
                js,
                gw_rows.as_mut().and_then(Iterator::next),
                gb_rows.as_mut().and_then(Iterator::next),
            ));
        }
    }
    let (nx, nw) = (x_jobs.len(), w_jobs.len());
    let mut x_jobs = x_jobs.into_iter();
    let mut jobs = Vec::with_capacity(nx + nw);
    for (t, w_job) in w_jobs.into_iter().enumerate() {
        jobs.push(w_job);
        jobs.extend(x_jobs.by_ref().take((t + 1) * nx / nw - t * nx / nw));
    }
    jobs.extend(x_jobs);
    jobs
}

/// Rows of `gx` from row `n0` on (zero-filled): row by row, each slot
/// summing the gradients of the outputs it won, in output order.
fn input_rows(d: Dims, winners: &[u32], g: &[f32], n0: usize, rows: &mut [f32]) {
    let Dims { n_in, n_out, .. } = d;
    let n_in32 = n_in as u32;
    for (n, row) in (n0..).zip(rows.chunks_exact_mut(n_in.max(1))) {
        let out = n * n_out..(n + 1) * n_out;
        for (&k, &gv) in winners[out.clone()].iter().zip(&g[out]) {
            if k < n_in32 {
                row[k as usize] += gv;
            }
        }
    }
}

/// Rows `js` of `gw` (zero-filled) and entries `js` of `gb`: for each output
/// column, the gradients of the batch entries it had, in batch order, to the
/// weight or the bias that won them. The column's winners and gradients are
/// first copied output-major, so that the reads run along memory.
fn weight_rows(
    d: Dims,
    winners: &[u32],
    g: &[f32],
    js: Range<usize>,
    gw: Option<&mut [f32]>,
    mut gb: Option<&mut [f32]>,
) {
    let Dims { batch, n_in, n_out } = d;
    let mut scratch = OUTPUT_MAJOR.with(|s| s.take());
    let (kt, gt) = &mut scratch;
    output_major(winners, n_out, 0..batch, js.clone(), kt);
    output_major(g, n_out, 0..batch, js, gt);
    let n_in32 = n_in as u32;
    let mut gw_rows = gw.map(|rows| rows.chunks_mut(n_in.max(1)));
    for (r, (ks, gs)) in kt.chunks_exact(batch.max(1)).zip(gt.chunks_exact(batch.max(1))).enumerate() {
        let mut row = gw_rows.as_mut().and_then(Iterator::next);
        for (&k, &gv) in ks.iter().zip(gs) {
            if k < n_in32 {
                if let Some(row) = row.as_deref_mut() {
                    row[k as usize] += gv;
                }
            } else if k == n_in32
                && let Some(gb) = gb.as_deref_mut()
            {
                gb[r] += gv;
            }
        }
    }
    OUTPUT_MAJOR.with(|s| s.set(scratch));
}

/// Rows `rows` × columns `cols` of the `[batch, n_out]` matrix `a`,
/// output-major (`[cols][rows]`), into `t` (resized to fit; its earlier
/// contents are overwritten). Read down a column in place, entries `n_out`
/// apart crowd into a few L1 sets and evict each other. Each weight job
/// copies only its own block, inside the parallel region.
fn output_major<E: Copy + Default>(a: &[E], n_out: usize, rows: Range<usize>, cols: Range<usize>, t: &mut Vec<E>) {
    t.resize(rows.len() * cols.len(), E::default());
    if !t.is_empty() {
        let block = &a[rows.start * n_out + cols.start..];
        crate::kernels::transpose_block_into(block, rows.len(), cols.len(), n_out, t, rows.len());
    }
}

thread_local! {
    /// A thread's buffers for the [`output_major`] copies of the winners and
    /// of the upstream gradient, kept from one weight job to the next.
    static OUTPUT_MAJOR: Cell<(Vec<u32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// `rows` set to zero, and from then on plain floats.
fn cleared(rows: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    rows.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was just written.
    unsafe { std::slice::from_raw_parts_mut(rows.as_mut_ptr().cast(), rows.len()) }
}
