//! Max-plus ("tropical") matrix products, the heart of a morphological layer:
//!
//! ```text
//! y[n, j] = max( b[j], max_i x[n, i] + W[j, i] )      winner[n, j] = argmax
//! ```
//!
//! * [`scalar`] — the definition, one candidate at a time; the reference.
//! * `avx512.rs`, `avx2.rs` — the same results, bit for bit, 16 or 8 outputs per
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

mod avx2;
mod avx512;
mod grads;
pub mod scalar;
pub mod sparse;
mod tile;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

pub use grads::grads;
use tile::{Kernel, Out};

use crate::kernels::line_buf::{LineBuf, on_a_line};

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

/// Instruction sets with a max-plus kernel, slowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    forward_isa(Isa::detect(), d, x, w, bias, y, winners);
}

/// What [`product`] returns.
pub struct Forward {
    /// `y [batch, n_out]`.
    pub y: Vec<f32>,
    /// `winners [batch, n_out]`, empty unless asked for.
    pub winners: Vec<u32>,
    /// A zero-filled `[n_out, n_in]` buffer for the weight gradient, if
    /// asked for: see [`product`].
    pub grad_w: Option<Vec<f32>>,
}

/// [`forward`] into new buffers. The SIMD kernels write every output, so
/// the buffers are never zero-filled first.
///
/// With `zeroed_grad_w`, it also returns a zero-filled buffer shaped like
/// `W` for [`grads`] to scatter the weight gradient into. The SIMD kernels
/// clear it while they read `W`, a register of zeros stored per 16 weights
/// read: the forward is bound by its adds and maxes, so the stores mostly
/// overlap them, where a separate pass over a large weight gradient in the
/// backward would cost as much as the scatter itself.
pub fn product(
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
pub fn forward_isa(
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
/// read it ([`Kernel::walk`]), since a separate pass over a W that is
/// larger than the cache would read it from memory twice.
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
    // written by one core and read by the other would have its cache lines
    // taken over one by one.
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
    crate::runtime::run_tasks(d.n_out.div_ceil(per_task), |t| {
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
                    *panels = LineBuf::filled(d.n_in * bp, 0.0);
                }
                for (rows, panel) in x.chunks(lanes * d.n_in).zip(panels.chunks_exact_mut(lanes * d.n_in)) {
                    crate::kernels::transpose_block_into(rows, rows.len() / d.n_in, d.n_in, d.n_in, panel, lanes);
                }
                if copy_x {
                    if rows.len() != x.len() {
                        *rows = LineBuf::filled(x.len(), 0.0);
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
    /// x packed as the kernels' panels, from a 64-byte boundary on: every
    /// add of the inner loop reads one register of a panel, and a register
    /// load that straddles two cache lines costs two.
    panels: LineBuf<f32>,
    /// x as it is, from a 64-byte boundary on (when winners are tracked and
    /// x itself does not start on a line): the winner search reads 16-input
    /// blocks of x's rows, each then one cache line. Under the
    /// [`LineAligned`](crate::runtime::LineAligned) allocator x is on a line
    /// already and is read in place.
    rows: LineBuf<f32>,
}

thread_local! {
    static PACKED: RefCell<Packed> = const { RefCell::new(Packed { call: u64::MAX, panels: LineBuf::new(), rows: LineBuf::new() }) };
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
