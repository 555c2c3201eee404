//! Max-plus ("tropical") matrix products, the heart of a morphological layer:
//!
//! ```text
//! y[n, j] = max( b[j], max_i x[n, i] + W[j, i] )      winner[n, j] = argmax
//! ```
//!
//! * [`scalar`] — the definition, one candidate at a time; the reference.
//! * [`avx512`], [`avx2`] — the same results, bit for bit, 16 or 8 outputs per
//!   instruction (picked at run time; see [`Isa`]).
//! * [`sparse`] — only the active weights of a sparse layer (CSR rows).
//!
//! **Winner rule** (PyTorch's `torch.max` on CPU): the lowest index among
//! exact ties wins; the bias is the last candidate (index `n_in`), so it wins
//! only when strictly greater than every `x + W`. The backward pass sends
//! the whole upstream gradient to the winner ([`grads`]).
//!
//! **NaN / +∞ policy**: the SIMD kernels assume finite inputs, `-∞` weights
//! allowed (that is how masked/pruned weights are stored). If `x` holds a
//! non-finite value or `W`/`b` a NaN or `+∞`, [`forward`] takes the scalar
//! path, which propagates NaN like `torch.max` (the first NaN wins).
//! The kernels look for NaN and +∞ in `W` without a pass of their own: a
//! tile adds up, lane by lane, the rows of `W` it reads (one add per 16
//! weights, next to 16 × 16 add + max pairs), and checks the sum before it
//! writes anything. The sum is NaN or +∞ if any weight is NaN or +∞ (`-∞`
//! plus `+∞` is NaN); a sum of finite weights can also overflow to +∞, but
//! only with weights beyond ~10³⁵, which then take the exact path as well —
//! slower, never wrong.
//!
//! **How the SIMD kernels track winners cheaply.** Keeping an index per lane
//! on every candidate doubles the instruction count. Instead the `i` loop is
//! cut into blocks of [`BLOCK`] inputs: inside a block only `add` + `max`
//! run; at the end of a block one compare decides, per output, whether this
//! block beat the best so far (strictly — so earlier blocks win ties) and
//! records the block number. Afterwards a short re-scan of the winning block
//! finds the first `i` whose `x + W` equals the maximum: exactly the lowest
//! index attaining it, as in [`scalar`].

pub mod avx2;
pub mod avx512;
pub mod scalar;
pub mod sparse;

use std::cell::{Cell, RefCell};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::kernels::lined::{Lined, on_a_line};

/// Sizes of one max-plus product: `x [batch, n_in]`, `W [n_out, n_in]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub n_in: usize,
    pub n_out: usize,
}

/// "No candidate" (only when `n_in == 0` and there is no bias).
pub const NONE: u32 = u32::MAX;

/// Inputs per winner-tracking block of the SIMD kernels: one AVX-512
/// register, so the re-scan of a block is a single compare.
pub const BLOCK: usize = 16;

/// Instruction sets with a max-plus kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    /// The best kernel this CPU runs. `MORPHGRAD_ISA=scalar|avx2|avx512`
    /// overrides it (capped at what the CPU supports).
    pub fn detect() -> Isa {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let best = Isa::available().into_iter().last().unwrap_or(Isa::Scalar);
            match std::env::var("MORPHGRAD_ISA").ok().as_deref() {
                Some("scalar") => Isa::Scalar,
                Some("avx2") if Isa::Avx2.is_available() => Isa::Avx2,
                _ => best,
            }
        })
    }

    /// Every kernel this CPU can run, slowest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512].into_iter().filter(|i| i.is_available()).collect()
    }

    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Output rows (batch entries) one SIMD register holds.
    fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }
}

crate::kernels::simd_dispatch! {
    /// Whether some value is NaN or ±∞ (no early exit, so it vectorises).
    fn any_non_finite(v: &[f32]) -> bool => any_non_finite_generic
}

// One compare per value: `a < +∞` is false exactly for NaN and +∞.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn any_non_finite_generic(v: &[f32]) -> bool {
    v.iter().fold(false, |bad, a| bad | !(a.abs() < f32::INFINITY))
}

crate::kernels::simd_dispatch! {
    /// Whether some value is NaN or +∞ (`-∞` weights are allowed: inactive).
    fn any_nan_or_pos_inf(v: &[f32]) -> bool => any_nan_or_pos_inf_generic
}

#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn any_nan_or_pos_inf_generic(v: &[f32]) -> bool {
    v.iter().fold(false, |bad, &a| bad | !(a < f32::INFINITY))
}

/// The max-plus product with the best kernel for this CPU, in parallel.
/// `winners` (same shape as `y`) is filled when given; skipping it is faster.
pub fn forward(d: Dims, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], winners: Option<&mut [u32]>) {
    forward_with(Isa::detect(), d, x, w, bias, y, winners);
}

/// What [`forward_new`] returns.
pub struct Forward {
    /// `y [batch, n_out]`.
    pub y: Vec<f32>,
    /// `winners [batch, n_out]`, empty unless asked for.
    pub winners: Vec<u32>,
    /// A zero-filled `[n_out, n_in]` buffer for the weight gradient, if
    /// asked for: see [`forward_new`].
    pub grad_w: Option<Vec<f32>>,
}

/// [`forward`] into new buffers. The SIMD kernels write every output, so
/// the buffers are never zero-filled first (at batch 64 that was 256 KB of
/// stores on one core, and lines the other core then had to take over).
///
/// With `zeroed_grad_w`, it also returns a zero-filled buffer shaped like
/// `W` for [`grads_with`] to scatter the weight gradient into. The SIMD
/// kernels clear it while they read `W`, a register of zeros stored per 16
/// weights read: the forward is bound by its adds and maxes, and the stores
/// mostly overlap them. For a 512 × 512 layer at batch 16 they add ~5.5 µs
/// to the forward, where clearing the 1 MB in the backward took 11 µs, half
/// of the backward.
pub fn forward_new(
    d: Dims,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    with_winners: bool,
    zeroed_grad_w: bool,
) -> Forward {
    check_shapes(d, x, w, bias);
    let n = d.batch * d.n_out;
    let (mut y, mut winners) = (Vec::with_capacity(n), Vec::with_capacity(if with_winners { n } else { 0 }));
    let mut grad_w = zeroed_grad_w.then(|| Vec::with_capacity(w.len()));
    let out = Out {
        y: y.as_mut_ptr(),
        winners: if with_winners { winners.as_mut_ptr() } else { std::ptr::null_mut() },
        grad_w: grad_w.as_mut().map_or(std::ptr::null_mut(), Vec::as_mut_ptr),
    };
    // SAFETY: the buffers have room for n > 0 outputs (and a weight
    // gradient if asked); the detected ISA is available.
    if n > 0 && unsafe { try_simd(Isa::detect(), d, x, w, bias, out) } {
        // SAFETY: the SIMD kernels wrote all n outputs (and winners, and
        // zeros over the weight gradient, if asked).
        unsafe {
            y.set_len(n);
            winners.set_len(if with_winners { n } else { 0 });
            if let Some(gw) = &mut grad_w {
                gw.set_len(w.len());
            }
        }
    } else {
        y.resize(n, 0.0);
        winners.resize(if with_winners { n } else { 0 }, 0);
        if let Some(gw) = &mut grad_w {
            gw.resize(w.len(), 0.0);
        }
        if n > 0 {
            forward_scalar(d, x, w, bias, &mut y, with_winners.then_some(&mut winners[..]));
        }
    }
    Forward { y, winners, grad_w }
}

/// The max-plus product with a chosen kernel (for tests and benches; panics
/// if the CPU lacks it). Every kernel gives the scalar results: where the
/// SIMD kernels' assumptions fail (see the module docs) the product is
/// computed by the scalar one.
pub fn forward_with(
    isa: Isa,
    d: Dims,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    mut winners: Option<&mut [u32]>,
) {
    assert!(isa.is_available(), "{isa:?} kernels are not supported by this CPU");
    check_shapes(d, x, w, bias);
    assert_eq!(y.len(), d.batch * d.n_out);
    if let Some(wn) = &winners {
        assert_eq!(wn.len(), y.len());
    }
    let out = Out {
        y: y.as_mut_ptr(),
        winners: winners.as_deref_mut().map_or(std::ptr::null_mut(), |w| w.as_mut_ptr()),
        grad_w: std::ptr::null_mut(),
    };
    // SAFETY: y (and winners) hold batch·n_out outputs; the ISA is available.
    if y.is_empty() || unsafe { try_simd(isa, d, x, w, bias, out) } {
        return;
    }
    forward_scalar(d, x, w, bias, y, winners);
}

fn check_shapes(d: Dims, x: &[f32], w: &[f32], bias: Option<&[f32]>) {
    assert!(x.len() == d.batch * d.n_in && w.len() == d.n_out * d.n_in);
    assert!(bias.is_none_or(|b| b.len() == d.n_out));
}

/// The SIMD product into `out`, if `isa` is a SIMD one and its assumptions
/// hold; false (outputs unspecified) otherwise. x and the bias are small
/// next to W and checked here; W is checked by the kernel's tiles as they
/// read it ([`Kernel::walk`]; a separate pass over W cost a sixth of the
/// forward at batch 16, a check of each tile's rows before computing it a
/// tenth).
///
/// # Safety
/// `isa` must be available; `out.y` (and `out.winners` unless null) must be
/// valid for writes of `batch · n_out` values, with `batch · n_out > 0`, and
/// `out.grad_w` unless null for writes of `n_out · n_in` values.
unsafe fn try_simd(isa: Isa, d: Dims, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: Out) -> bool {
    let simd = isa != Isa::Scalar && d.n_in > 0 && !any_non_finite(x) && !bias.is_some_and(any_nan_or_pos_inf);
    // SAFETY: passed on from the caller.
    simd && unsafe { forward_simd(isa, d, x, w, bias, out) }
}

/// The SIMD product; false (outputs unspecified) if `W` holds a NaN or +∞.
///
/// # Safety
/// As [`try_simd`], and `isa` is not `Scalar` and `n_in > 0`.
unsafe fn forward_simd(isa: Isa, d: Dims, x: &[f32], w: &[f32], bias: Option<&[f32]>, out: Out) -> bool {
    // Lanes run along the batch. The kernels read x as panels of `lanes`
    // rows, each stored input-major `[n_in][lanes]`, so the inner loop
    // streams through contiguous memory; packing x is cheap next to the
    // O(batch·n_in·n_out) product. Every thread packs its own copy, on its
    // first task of the call: every tile reads all of a panel, and a panel
    // written by one core and read by the other cost each core a ~5 µs
    // stall per call (its cache lines taken over one by one). Packing is
    // not free either: at batch 16 the transpose and the aligned copy of x
    // (`Packed`) take ~3.5 µs of each thread's first task (2.5 µs with x
    // already in L1), which docs/performance.md ("Batch 16") breaks down.
    let lanes = isa.lanes();
    let bp = d.batch.div_ceil(lanes) * lanes;
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    // Tasks own disjoint ranges of whole register tiles of output columns.
    let cols = tile_cols(isa);
    let per_task = d.n_out.div_ceil(rayon::current_num_threads() * 4).div_ceil(cols).max(1) * cols;
    // Whether the winner search reads an aligned copy of x (see `Packed::rows`).
    let copy_x = !out.winners.is_null() && !on_a_line(x);
    // Cleared by a task that finds a NaN or +∞ in W; the others then stop.
    let finite = AtomicBool::new(true);
    crate::kernels::run_tasks(d.n_out.div_ceil(per_task), |t| {
        if !finite.load(Ordering::Relaxed) {
            return;
        }
        let (j0, j1) = (t * per_task, ((t + 1) * per_task).min(d.n_out));
        let ok = PACKED.with(|packed| {
            let mut packed = packed.borrow_mut();
            let Packed { call: packed_for, panels, rows } = &mut *packed;
            if *packed_for != call {
                // The transpose and the copy overwrite what they use; only
                // the lanes of a last, partial panel need zeros.
                if panels.len() != d.n_in * bp || !d.batch.is_multiple_of(lanes) {
                    *panels = Lined::filled(d.n_in * bp, 0.0);
                }
                for (rows, panel) in x.chunks(lanes * d.n_in).zip(panels.chunks_exact_mut(lanes * d.n_in)) {
                    crate::kernels::transpose_block_into(rows, rows.len() / d.n_in, d.n_in, d.n_in, panel, lanes);
                }
                if copy_x {
                    if rows.len() != x.len() {
                        *rows = Lined::filled(x.len(), 0.0);
                    }
                    rows.copy_from_slice(x);
                }
                *packed_for = call;
            }
            // x as the winner search reads it: on a line, copied there if need be.
            let x = if copy_x { &rows[..] } else { x };
            let k = Kernel { d, bp, x, xp: panels, w, bias, out };
            // SAFETY: `isa` is available (the caller's contract); tasks write disjoint columns.
            unsafe {
                match isa {
                    Isa::Avx512 => avx512::columns(&k, j0, j1),
                    Isa::Avx2 => avx2::columns(&k, j0, j1),
                    Isa::Scalar => unreachable!(),
                }
            }
        });
        if !ok {
            finite.store(false, Ordering::Relaxed);
        }
    });
    finite.into_inner()
}

/// Numbers the SIMD forward calls, to tell a thread's panels of the current
/// call from those of an earlier one.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// A thread's copies of x for one forward call.
struct Packed {
    /// The call they are for.
    call: u64,
    /// x packed as the kernels' panels, from a 64-byte boundary on. Every
    /// add of the inner loop reads one register of a panel; with the panels
    /// where malloc put them (16 or 32 bytes into a line, depending on the
    /// heap) each of those loads straddled two cache lines, and the forward
    /// at batch 16 took 103–106 µs instead of 78–79 µs.
    panels: Lined<f32>,
    /// x as it is, from a 64-byte boundary on (when winners are tracked and
    /// x itself does not start on a line). The winner search reads 16-input
    /// blocks of x's rows; malloc only promises 16-byte alignment, so most
    /// blocks straddled two cache lines. Aligned, each is one: the forward
    /// with winners ran 3 % faster at batch 16 and 64 (one thread: 150 →
    /// 145.6 and 578 → 561 µs). Under the [`LineAligned`](crate::kernels::LineAligned)
    /// allocator x is on a line already and is read in place.
    rows: Lined<f32>,
}

thread_local! {
    static PACKED: RefCell<Packed> = const { RefCell::new(Packed { call: u64::MAX, panels: Lined::new(), rows: Lined::new() }) };
}

/// The reference kernel over row chunks of the batch.
fn forward_scalar(d: Dims, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], winners: Option<&mut [u32]>) {
    let mut own = Vec::new();
    let winners = match winners {
        Some(wn) => wn,
        None => {
            own.resize(y.len(), 0u32);
            &mut own[..]
        }
    };
    let rows = d.batch.div_ceil(rayon::current_num_threads() * 4).max(1);
    y.par_chunks_mut(rows * d.n_out).zip(winners.par_chunks_mut(rows * d.n_out)).enumerate().for_each(
        |(c, (yc, wc))| {
            let n = yc.len() / d.n_out;
            let xs = &x[c * rows * d.n_in..(c * rows + n) * d.n_in];
            scalar::forward(Dims { batch: n, ..d }, xs, w, bias, yc, wc);
        },
    );
}

/// Output columns per register tile of a SIMD kernel.
fn tile_cols(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => avx512::TILE_J,
        Isa::Avx2 => avx2::TILE_J,
        Isa::Scalar => 1,
    }
}

/// Where the SIMD kernels write: `y [batch, n_out]` and, unless null,
/// `winners [batch, n_out]` and zeros over `grad_w [n_out, n_in]`. Shared by
/// tasks that own disjoint columns (rows of `grad_w`).
#[derive(Clone, Copy)]
pub struct Out {
    y: *mut f32,
    winners: *mut u32,
    grad_w: *mut f32,
}

// SAFETY: every task writes only the columns it owns (see `forward_with`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Everything a SIMD kernel reads, and where it writes.
pub struct Kernel<'a> {
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
    out: Out,
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

/// Gradients of a max-plus product from its winners: every upstream entry
/// `g[n, j]` goes whole to its winner — `gx[n, i*]` and `gw[j, i*]`, or `gb[j]`
/// when the bias won. Returns `[gx [batch, n_in], gw [n_out, n_in], gb [n_out]]`,
/// each only where `want` asks for it. Deterministic: a slot of `gx` sums
/// over the outputs in output order, one of `gw` or `gb` over the batch in
/// batch order, whatever the thread count.
///
/// One parallel region builds them all: each task owns whole rows of a
/// result, clears them and scatters into them while they are in its cache.
/// (A separate zero-filling pass over a 512×512 weight gradient, 1 MB, cost
/// as much as the whole scatter at batch 16; the layer goes further and has
/// the forward kernel clear it, see [`grads_with`].)
pub fn grads(d: Dims, winners: &[u32], g: &[f32], want: [bool; 3]) -> [Option<Vec<f32>>; 3] {
    grads_with(d, winners, g, want, None)
}

/// [`grads`], with the weight gradient scattered into `zeroed_gw` when one
/// is given (and wanted): a zero-filled `[n_out, n_in]` buffer, as
/// [`forward_new`] returns, which is then not cleared again.
pub fn grads_with(
    d: Dims,
    winners: &[u32],
    g: &[f32],
    want: [bool; 3],
    zeroed_gw: Option<Vec<f32>>,
) -> [Option<Vec<f32>>; 3] {
    assert!(winners.len() == d.batch * d.n_out && g.len() == winners.len());
    let Dims { batch, n_in, n_out } = d;
    let [want_x, want_w, want_b] = want;
    let mut gx = want_x.then(|| Vec::with_capacity(batch * n_in));
    let zeroed_gw = zeroed_gw.filter(|_| want_w);
    if let Some(gw) = &zeroed_gw {
        assert_eq!(gw.len(), n_out * n_in, "grads_with: a weight gradient buffer of the wrong size");
        debug_assert!(gw.iter().all(|&v| v == 0.0), "grads_with: the weight gradient buffer is not zero-filled");
    }
    let gw_zeroed = zeroed_gw.is_some();
    let mut gw = want_w.then(|| zeroed_gw.unwrap_or_else(|| Vec::with_capacity(n_out * n_in)));
    let mut gb = want_b.then(|| vec![0.0f32; n_out]);
    // Jobs of up to 8 rows of x, and 4 jobs per thread over W.
    let (per_n, per_j) = (8, n_out.div_ceil(rayon::current_num_threads() * 4).max(1));
    let (mut x_jobs, mut w_jobs) = (Vec::new(), Vec::new());
    if let Some(gx) = &mut gx {
        let rows = &mut gx.spare_capacity_mut()[..batch * n_in];
        x_jobs.extend(rows.chunks_mut(per_n * n_in.max(1)).enumerate().map(|(t, c)| Rows::X(t * per_n, c)));
    }
    if want_w || want_b {
        let chunk = per_j * n_in.max(1);
        let mut gw_rows = gw.as_mut().map(|gw| {
            let rows: Vec<GwRows> = if gw_zeroed {
                gw.chunks_mut(chunk).map(GwRows::Zero).collect()
            } else {
                gw.spare_capacity_mut()[..n_out * n_in].chunks_mut(chunk).map(GwRows::Unset).collect()
            };
            rows.into_iter()
        });
        let mut gb_rows = gb.as_mut().map(|gb| gb.chunks_mut(per_j));
        for t in 0..n_out.div_ceil(per_j) {
            let j = t * per_j..((t + 1) * per_j).min(n_out);
            w_jobs.push(Rows::W(
                j,
                gw_rows.as_mut().and_then(Iterator::next),
                gb_rows.as_mut().and_then(Iterator::next),
            ));
        }
    }
    // The W jobs at the places of the forward's tasks over the same rows
    // (`run_tasks` gives each thread a contiguous share of the list, and so
    // the rows whose cache lines it wrote), each X job after a group of
    // them. An X job reads rows of winners half of which the other core
    // wrote; after its thread's W jobs rather than before them, the fwd+bwd
    // loop at batch 16 ran ~1 µs faster (medians 93.4 → 92.5 µs).
    let (nx, nw) = (x_jobs.len(), w_jobs.len());
    let mut x_jobs = x_jobs.into_iter();
    let mut jobs = Vec::with_capacity(nx + nw);
    for (t, w_job) in w_jobs.into_iter().enumerate() {
        jobs.push(w_job);
        jobs.extend(x_jobs.by_ref().take((t + 1) * nx / nw - t * nx / nw));
    }
    jobs.extend(x_jobs);
    let n_in32 = n_in as u32;
    // Each job is taken, once, by the task that claims its index.
    let jobs: Vec<std::sync::Mutex<Option<Rows>>> = jobs.into_iter().map(|j| std::sync::Mutex::new(Some(j))).collect();
    crate::kernels::run_tasks(jobs.len(), |t| match jobs[t].lock().unwrap().take().unwrap() {
        Rows::X(n0, rows) => {
            // Row by row, each slot summing in output order. (An earlier
            // version interleaved 8 rows through a transposed copy, to
            // break the chain of updates into the few slots that win most
            // outputs; without the copy it measured no slower anywhere and
            // up to 6 % faster: docs/performance.md, item 17.)
            let rows = cleared(rows);
            for (n, row) in (n0..).zip(rows.chunks_exact_mut(n_in.max(1))) {
                let out = n * n_out..(n + 1) * n_out;
                for (&k, &gv) in winners[out.clone()].iter().zip(&g[out]) {
                    if k < n_in32 {
                        row[k as usize] += gv;
                    }
                }
            }
        }
        Rows::W(js, gw, mut gb) => {
            let mut scratch = OUTPUT_MAJOR.with(|s| s.take());
            let (kt, gt) = &mut scratch;
            output_major(winners, n_out, 0..batch, js.clone(), kt);
            output_major(g, n_out, 0..batch, js, gt);
            let mut gw_rows = gw.map(|rows| rows.zeros().chunks_mut(n_in.max(1)));
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

/// Rows `rows` × columns `cols` of the `[batch, n_out]` matrix `a`,
/// output-major (`[cols][rows]`), into `t` (resized to fit; its earlier
/// contents are overwritten). Read down a column in place, entries
/// n_out apart (2 KB for 512 outputs) crowd into a few L1 sets and evict
/// each other. Each weight-gradient job of [`grads`] copies only its own
/// block, inside the parallel region: one shared transpose of the whole
/// matrices before it measured slower at batch 64 (450–473 against
/// 423–435 µs fwd+bwd).
fn output_major<E: Copy + Default>(a: &[E], n_out: usize, rows: Range<usize>, cols: Range<usize>, t: &mut Vec<E>) {
    t.resize(rows.len() * cols.len(), E::default());
    if !t.is_empty() {
        let block = &a[rows.start * n_out + cols.start..];
        crate::kernels::transpose_block_into(block, rows.len(), cols.len(), n_out, t, rows.len());
    }
}

thread_local! {
    /// A thread's buffers for [`output_major`] copies of the winners and
    /// of the upstream gradient, kept from one weight-gradient job to the
    /// next (a fresh zero-filled pair cost each job ~0.3 µs at batch 16).
    static OUTPUT_MAJOR: Cell<(Vec<u32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// The work of one task of [`grads`]: rows of `gx` from row `n0` on, or
/// rows `js` of `gw` (if wanted) with the same entries of `gb` (if wanted).
enum Rows<'a> {
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

/// `rows` set to zero, and from then on plain floats.
fn cleared(rows: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    rows.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was just written.
    unsafe { std::slice::from_raw_parts_mut(rows.as_mut_ptr().cast(), rows.len()) }
}
