//! `C = alpha · A B + beta · C` on strided `f32` matrices: a small GEMM in
//! the Goto/BLIS style, single-threaded (callers parallelise over
//! independent blocks, which keeps results bit-identical for any thread
//! count).
//!
//! ```text
//!            j0 ─ NC ─┐                 one micro-kernel call:
//!      ┌──────────────┐  ─┐             MR rows of A (broadcast, one value
//!   B  │ panel│panel│…│   KC              at a time, read in place)
//!      └──────────────┘  ─┘           × one KC × NR panel of packed B
//!   A ┌──┐ MR rows      C ┌──────┐        (vector loads)
//!     │  │──────────▶   │ tile │      = an MR × NR tile of C, kept in
//!     └──┘              └──────┘        registers over the KC values of k
//! ```
//!
//! * **B is packed** into panels of `NR` columns, `[panel][k][NR]`, zero
//!   past the last column, so the kernel reads each row of a panel with one
//!   or two whole-register loads. A matrix used by many products (a
//!   convolution's transformed filters) is packed once: [`PackedB`].
//! * **A is read in place**: the kernel broadcasts `a[r, k]` for `MR` rows
//!   from the strided view, so a transposed A costs nothing extra.
//! * **Blocking from the cache sizes**: `KC` so that MR rows × KC of A (used
//!   against every panel of a block) fill half the L1; `NC` so that a
//!   `KC × NC` block of packed B fills half the L2.
//! * Each entry of C sums its products in `k` order, `KC` at a time, so a
//!   result does not depend on how callers split the work over threads.
//!
//! Three micro-kernels: `avx512.rs` (8 × 32), `avx2.rs` (6 × 16, with FMA) and
//! the portable `tile_portable` (4 × 8), chosen at run time like the
//! max-plus kernels (`MORPHGRAD_ISA` caps it).

mod avx2;
mod avx512;

use std::cell::RefCell;

use crate::kernels::maxplus::Isa;
use crate::kernels::{front, transpose_block_into};
use crate::runtime::cache;

/// A read-only strided view of a row-major buffer: element `(i, j)` lives at
/// `data[i * rs + j * cs]`. `t()` transposes by swapping strides, for free.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transposed view.
    pub fn t(self) -> MatRef<'a> {
        MatRef { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// The micro-kernel contract: with `t[r][j] = Σ_{k < kc} a[r·rs_a + k·cs_a] · b[k·NR + j]`,
/// set `c[r·rsc + j] = alpha · t[r][j] + beta · c[r·rsc + j]` for every
/// `r < MR`, `j < NR` (with `beta == 0`, `c` is not read). Rows
/// `r ≥ rows` (`1 ≤ rows ≤ MR`) are not read from `a`; what they write is
/// unspecified.
///
/// # Safety
/// `a + r·rs_a + k·cs_a` is readable for `r < rows`, `k < kc`; `b` holds
/// `kc · NR` floats; `c + r·rsc + j` is writable (and readable) for
/// `r < MR`, `j < NR`; the CPU runs the kernel's instruction set.
type Tile = unsafe fn(
    kc: usize,
    a: *const f32,
    rs_a: usize,
    cs_a: usize,
    rows: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
);

/// One micro-kernel with its register tile (`mr × nr`).
#[derive(Clone, Copy)]
pub struct Kernel {
    pub isa: Isa,
    pub mr: usize,
    pub nr: usize,
    tile: Tile,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}×{}", self.isa, self.mr, self.nr)
    }
}

/// Room for the largest register tile.
const MAX_TILE: usize = avx512::MR * avx512::NR;

impl Kernel {
    /// The kernel this CPU runs best (capped by `MORPHGRAD_ISA`).
    pub fn detect() -> Kernel {
        static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let isa = Isa::detect();
            Kernel::available().into_iter().rev().find(|k| k.isa <= isa).expect("the portable kernel always runs")
        })
    }

    /// Every kernel this CPU runs, slowest first.
    pub fn available() -> Vec<Kernel> {
        let portable = Kernel { isa: Isa::Scalar, mr: 4, nr: 8, tile: tile_portable };
        let mut all = vec![portable];
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::Avx2.is_available() && std::is_x86_feature_detected!("fma") {
                all.push(Kernel { isa: Isa::Avx2, mr: avx2::MR, nr: avx2::NR, tile: avx2::tile });
            }
            if Isa::Avx512.is_available() {
                all.push(Kernel { isa: Isa::Avx512, mr: avx512::MR, nr: avx512::NR, tile: avx512::tile });
            }
        }
        all
    }

    /// `(KC, NC)`: MR rows × KC of A in half the L1, a KC × NC block of
    /// packed B in half the L2 (NC a whole number of panels).
    fn blocking(&self) -> (usize, usize) {
        let kc = (cache::l1_bytes() / 2 / (4 * self.mr)).clamp(64, 512);
        let nc = (cache::l2_bytes() / 2 / (4 * kc)).clamp(self.nr, 4096);
        (kc, nc / self.nr * self.nr)
    }
}

/// The portable micro-kernel (4 × 8): the contract of [`Tile`] written out.
///
/// # Safety
/// See [`Tile`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile_portable(
    kc: usize,
    a: *const f32,
    rs_a: usize,
    cs_a: usize,
    rows: usize,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    alpha: f32,
    beta: f32,
) {
    const MR: usize = 4;
    const NR: usize = 8;
    let ar: [*const f32; MR] = std::array::from_fn(|r| a.wrapping_add(r.min(rows - 1) * rs_a));
    let mut acc = [[0.0f32; NR]; MR];
    for k in 0..kc {
        // SAFETY: k < kc keeps every read inside the contract's bounds.
        let bk = unsafe { std::ptr::read_unaligned(b.add(k * NR).cast::<[f32; NR]>()) };
        for (acc, row) in acc.iter_mut().zip(&ar) {
            let av = unsafe { *row.add(k * cs_a) };
            for (t, bv) in acc.iter_mut().zip(bk) {
                *t += av * bv;
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: the contract makes row r of the tile of c writable.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * rsc), NR) };
        for (o, t) in out.iter_mut().zip(acc) {
            *o = if beta == 0.0 { alpha * t } else { alpha * t + beta * *o };
        }
    }
}

/// B (`k × n`) packed for one kernel: panels of `nr` columns, `[panel][k][nr]`,
/// zero past column `n`. Pack a matrix once when many products use it.
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
    kernel: Kernel,
}

impl PackedB {
    /// `b` packed for the kernel [`gemm`] runs.
    pub fn new(b: MatRef<'_>) -> PackedB {
        PackedB::for_kernel(Kernel::detect(), b)
    }

    /// `b` packed for `kernel`.
    pub fn for_kernel(kernel: Kernel, b: MatRef<'_>) -> PackedB {
        assert!(b.fits(), "gemm: B view exceeds its buffer");
        let mut data = vec![0.0; b.cols.div_ceil(kernel.nr) * b.rows * kernel.nr];
        pack(b, 0, b.rows, 0, b.cols, kernel.nr, &mut data);
        PackedB { data, k: b.rows, n: b.cols, kernel }
    }
}

/// Rows `[p0, p1)`, columns `[j0, j1)` of `b` into `out` as panels of `nr`
/// columns, `[panel][p1 − p0][nr]`, zero past `j1`.
fn pack(b: MatRef<'_>, p0: usize, p1: usize, j0: usize, j1: usize, nr: usize, out: &mut [f32]) {
    let kc = p1 - p0;
    for (panel, dst) in (j0..j1).step_by(nr).zip(out.chunks_exact_mut(kc * nr)) {
        let cols = (j1 - panel).min(nr);
        if b.cs == 1 {
            for (p, row) in (p0..p1).zip(dst.chunks_exact_mut(nr)) {
                row[..cols].copy_from_slice(&b.data[p * b.rs + panel..][..cols]);
                row[cols..].fill(0.0);
            }
        } else if b.rs == 1 {
            // A transposed B: the panel is the transpose of a block of
            // `cols` rows of the stored matrix, done in register tiles.
            if cols < nr {
                dst.fill(0.0);
            }
            transpose_block_into(&b.data[panel * b.cs + p0..], cols, kc, b.cs, dst, nr);
        } else {
            // Neither stride 1: element by element, each column along memory.
            dst.fill(0.0);
            for j in 0..cols {
                let col = &b.data[(panel + j) * b.cs..];
                for (p, v) in (p0..p1).zip(dst[j..].iter_mut().step_by(nr)) {
                    *v = col[p * b.rs];
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's buffer for the blocks of B that [`gemm`] packs.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `c[i·rsc + j] = alpha · (a b)[i, j] + beta · c[i·rsc + j]` for the
/// `a.rows × b.cols` product (B packed block by block as it goes). With
/// `beta == 0` the old contents of `c` are ignored (NaNs included).
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], rsc: usize) {
    gemm_with(Kernel::detect(), alpha, a, b, beta, c, rsc);
}

/// [`gemm`] with a given kernel (to compare kernels with each other).
pub fn gemm_with(kernel: Kernel, alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], rsc: usize) {
    assert!(b.fits(), "gemm: B view exceeds its buffer");
    drive(kernel, alpha, a, B::ToPack(b), beta, c, rsc);
}

/// [`gemm`] with B packed beforehand.
pub fn gemm_packed(alpha: f32, a: MatRef<'_>, b: &PackedB, beta: f32, c: &mut [f32], rsc: usize) {
    drive(b.kernel, alpha, a, B::Packed(b), beta, c, rsc);
}

/// The B operand: packed already, or to pack one block at a time.
enum B<'a> {
    ToPack(MatRef<'a>),
    Packed(&'a PackedB),
}

impl B<'_> {
    fn dims(&self) -> (usize, usize) {
        match self {
            B::ToPack(b) => (b.rows, b.cols),
            B::Packed(b) => (b.k, b.n),
        }
    }
}

/// The loops around the micro-kernel: blocks of `NC` columns, then of `KC`
/// values of `k` (a block of packed B), then `MR` rows of A, then panels.
fn drive(kernel: Kernel, alpha: f32, a: MatRef<'_>, b: B<'_>, beta: f32, c: &mut [f32], rsc: usize) {
    let (k, n) = b.dims();
    assert_eq!(a.cols, k, "gemm: inner dimensions {}×{} · {k}×{n}", a.rows, a.cols);
    assert!(a.fits(), "gemm: A view exceeds its buffer");
    let m = a.rows;
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * rsc + n <= c.len(), "gemm: output view exceeds its buffer");
    if k == 0 {
        for i in 0..m {
            c[i * rsc..][..n].iter_mut().for_each(|v| *v = if beta == 0.0 { 0.0 } else { beta * *v });
        }
        return;
    }
    let (kc, nc) = kernel.blocking();
    let (mr, nr) = (kernel.mr, kernel.nr);
    let mut tile = [0.0f32; MAX_TILE];
    PACKED.with_borrow_mut(|buf| {
        for j0 in (0..n).step_by(nc) {
            let j1 = (j0 + nc).min(n);
            for p0 in (0..k).step_by(kc) {
                let p1 = (p0 + kc).min(k);
                // The panels of this block: the one of column j starts at panels[(j − j0) / nr · panel_len].
                let (panels, panel_len) = match &b {
                    B::Packed(b) => (&b.data[(j0 / nr) * b.k * nr + p0 * nr..], b.k * nr),
                    B::ToPack(b) => {
                        let panels = front(buf, (j1 - j0).div_ceil(nr) * (p1 - p0) * nr);
                        pack(*b, p0, p1, j0, j1, nr, panels);
                        (&*panels, (p1 - p0) * nr)
                    }
                };
                // The first block of k applies beta; later ones add to it.
                let beta = if p0 == 0 { beta } else { 1.0 };
                for i0 in (0..m).step_by(mr) {
                    let rows = (m - i0).min(mr);
                    let a_at = &a.data[i0 * a.rs + p0 * a.cs..];
                    for jp in (j0..j1).step_by(nr) {
                        let panel = &panels[(jp - j0) / nr * panel_len..][..(p1 - p0) * nr];
                        let cols = (j1 - jp).min(nr);
                        let tile_of = |c: &mut [f32], rsc: usize, alpha: f32, beta: f32| {
                            assert!(c.len() >= (mr - 1) * rsc + nr, "gemm: a tile of C exceeds its buffer");
                            // SAFETY: `a.fits()` keeps rows i0..i0 + rows, columns
                            // p0..p1 of A inside `a_at`; the panel holds (p1 − p0)·nr
                            // floats; `c` holds a whole mr × nr tile (asserted);
                            // `kernel` is one of `Kernel::available()`.
                            unsafe {
                                let (a_at, b_at) = (a_at.as_ptr(), panel.as_ptr());
                                (kernel.tile)(p1 - p0, a_at, a.rs, a.cs, rows, b_at, c.as_mut_ptr(), rsc, alpha, beta)
                            }
                        };
                        if rows == mr && cols == nr {
                            // A whole tile: the kernel updates C itself.
                            tile_of(&mut c[i0 * rsc + jp..], rsc, alpha, beta);
                            continue;
                        }
                        // At an edge: the product into `tile`, then the part inside C.
                        tile_of(&mut tile, nr, 1.0, 0.0);
                        for r in 0..rows {
                            let out = &mut c[(i0 + r) * rsc + jp..][..cols];
                            let t = &tile[r * nr..][..cols];
                            if beta == 0.0 {
                                out.iter_mut().zip(t).for_each(|(o, t)| *o = alpha * t);
                            } else {
                                out.iter_mut().zip(t).for_each(|(o, t)| *o = alpha * t + beta * *o);
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Dense row-major output: `c (m×n) = alpha · a b + beta · c`.
pub fn gemm_into(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let n = b.cols;
    gemm(alpha, a, b, beta, c, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f64> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    c[i * b.cols + j] += (a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs]) as f64;
                }
            }
        }
        c
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 2654435761 + seed * 40503) % 1000) as f32) * 2e-3 - 1.0).collect()
    }

    #[test]
    fn every_kernel_multiplies_like_the_naive_loop() {
        // Edges of every tile and block: sizes below, at and above MR, NR,
        // KC (up to 512) and NC; transposed and strided views (B either
        // way round: its packing differs); alpha, beta.
        let shapes = [(1, 1, 1), (3, 5, 4), (7, 9, 33), (13, 600, 70), (65, 130, 17), (9, 1030, 40), (17, 70, 1100)];
        for (kernel, b_transposed) in Kernel::available().into_iter().flat_map(|k| [(k, false), (k, true)]) {
            for (m, k, n) in shapes {
                let (a, b) = (values(m * k, 1), values(k * n, 2));
                let am = MatRef::new(&a, k, m).t(); // m × k, column-major
                let bm = if b_transposed { MatRef::new(&b, n, k).t() } else { MatRef::new(&b, k, n) };
                let want = naive(am, bm);
                let old = values(m * n, 3);
                let mut c = old.clone();
                gemm_with(kernel, 0.5, am, bm, 2.0, &mut c, n);
                let mut packed = old.clone();
                gemm_packed(0.5, am, &PackedB::for_kernel(kernel, bm), 2.0, &mut packed, n);
                for i in 0..m * n {
                    let expect = 0.5 * want[i] + 2.0 * old[i] as f64;
                    let tol = 1e-5 * (1.0 + k as f64);
                    assert!((c[i] as f64 - expect).abs() < tol, "{kernel:?} {m}×{k}×{n} at {i}: {} vs {expect}", c[i]);
                    assert_eq!(c[i].to_bits(), packed[i].to_bits(), "{kernel:?}: packed once or per block differ");
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_what_c_held() {
        for kernel in Kernel::available() {
            let (a, b) = (values(6, 4), values(12, 5));
            let mut c = vec![f32::NAN; 8];
            gemm_with(kernel, 1.0, MatRef::new(&a, 2, 3), MatRef::new(&b, 3, 4), 0.0, &mut c, 4);
            assert!(c.iter().all(|v| v.is_finite()), "{kernel:?}: {c:?}");
        }
    }

    #[test]
    fn output_rows_may_be_strided() {
        let (a, b) = (values(6, 6), values(12, 7));
        let mut c = vec![7.0; 2 * 10];
        gemm(1.0, MatRef::new(&a, 2, 3), MatRef::new(&b, 3, 4), 0.0, &mut c, 10);
        let want = naive(MatRef::new(&a, 2, 3), MatRef::new(&b, 3, 4));
        for i in 0..2 {
            for j in 0..10 {
                let v = c[i * 10 + j];
                if j < 4 {
                    assert!((v as f64 - want[i * 4 + j]).abs() < 1e-5);
                } else {
                    assert_eq!(v, 7.0, "a column past the product was written");
                }
            }
        }
    }

    #[test]
    fn empty_inner_dimension_scales_c_by_beta() {
        let mut c = vec![2.0; 4];
        gemm_into(1.0, MatRef::new(&[], 2, 0), MatRef::new(&[], 0, 2), 0.5, &mut c);
        assert_eq!(c, vec![1.0; 4]);
    }
}
