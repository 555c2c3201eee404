//! 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3).
//!
//! Each 2×2 block of outputs ("tile") of one channel is computed from the
//! 4×4 input patch under it as `y = Aᵀ [ Σ_ci U[ci] ⊙ V[ci] ] A`, with
//! `U = G g Gᵀ` the transformed 3×3 filter and `V = Bᵀ d B` the transformed
//! patch (all 4×4). The 16 points `ξ` of the 4×4 transform domain are
//! independent, so the sum over input channels becomes 16 matrix products
//! `M[ξ] = U[ξ] · V[ξ]` (`cout × cin` times `cin × tiles`): 16 multiplies per
//! tile and channel pair instead of the 36 of the direct method, 2.25× fewer.
//!
//! ```text
//!      ⎡1  0 -1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1 1  1  0⎤
//!      ⎢0 -1  1  0⎥        ⎢1/2 -1/2  1/2⎥         ⎣0 1 -1 -1⎦
//!      ⎣0  1  0 -1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! The backward passes need no new algebra. The input gradient of a 3×3
//! stride-1 convolution with padding `p` is itself a 3×3 stride-1
//! convolution of the output gradient, with padding `2 − p` and the filters
//! swapped between input and output channels and rotated by 180°. Rotating
//! `g` reverses its rows and columns, and `G J₃ = J' G` where `J'` swaps
//! rows 0 and 3 only, so the rotated filter's transform is `U` with
//! indices 0 and 3 swapped on both axes: the input gradient multiplies by
//! `U[ξ']ᵀ` and needs no second filter transform ([`Filters::input_grad`]).
//! The weight gradient is the adjoint of the forward map:
//! `dU[ξ] = Σ_tiles (A dY Aᵀ)[ξ] · V[ξ]ᵀ`, 16 products again, then
//! `dW = Gᵀ dU G` ([`conv3x3_filter_grad`]).
//!
//! The transforms only add, subtract and halve, so the rounding error stays
//! that of a short sum (the constants are exact in binary). Tiles hanging
//! over the bottom or right edge of an odd-sized output read zeros and drop
//! their extra outputs.
//!
//! Work goes in blocks of whole tile rows (which may span images): transform
//! a block's input (parallel over channels), multiply (parallel over `ξ`),
//! transform back (parallel over output planes). Block sizes depend on the
//! shapes and the machine's cache size, never on the thread count, so a
//! result is the same for any number of threads.

use rayon::prelude::*;

use crate::kernels::gemm::{MatRef, gemm};
use crate::kernels::{transpose_into, with_scratch};

/// Points of the transform domain (4 × 4).
const XI: usize = 16;

/// Where the 2×2 output tiles of a 3×3 stride-1 convolution lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    pub h: usize,
    pub w: usize,
    pub pad: usize,
    pub hout: usize,
    pub wout: usize,
    /// Tile rows and tile columns of one image.
    pub th: usize,
    pub tw: usize,
}

impl Tiling {
    /// The tiling of an `h × w` input with zero padding `pad` (≤ 2 keeps
    /// every tile within one row of padding of the image).
    pub fn new(h: usize, w: usize, pad: usize) -> Tiling {
        assert!(pad <= 2, "winograd: padding {pad} (at most 2)");
        assert!(h + 2 * pad >= 3 && w + 2 * pad >= 3, "winograd: {h}x{w} input with padding {pad} is smaller than 3x3");
        let (hout, wout) = (h + 2 * pad - 2, w + 2 * pad - 2);
        Tiling { h, w, pad, hout, wout, th: hout.div_ceil(2), tw: wout.div_ceil(2) }
    }
}

/// The transformed filters `U` of weights `w [cout, cin, 3, 3]`, laid out
/// `[co][ξ][ci]`: `U[ξ]` is the `cout × cin` matrix at offset `ξ·cin` with
/// row stride `16·cin`.
pub struct Filters {
    u: Vec<f32>,
    cout: usize,
    cin: usize,
}

impl Filters {
    /// `U = G g Gᵀ` for every filter, parallel over output channels.
    pub fn new(w: &[f32], cout: usize, cin: usize) -> Filters {
        assert_eq!(w.len(), cout * cin * 9, "winograd: weights are not [{cout}, {cin}, 3, 3]");
        let mut u = vec![0.0f32; cout * XI * cin];
        u.par_chunks_mut(XI * cin).zip(w.par_chunks(cin * 9)).for_each(|(u_co, w_co)| {
            with_scratch(9 * cin, |taps| {
                transpose_into(w_co, cin, 9, taps); // taps[t][ci] = w[co, ci, t]
                filter_rows(taps, cin, u_co);
            });
        });
        Filters { u, cout, cin }
    }

    /// `U[ξ]`, `cout × cin`.
    fn forward(&self, xi: usize) -> MatRef<'_> {
        MatRef { data: &self.u[xi * self.cin..], rows: self.cout, cols: self.cin, rs: XI * self.cin, cs: 1 }
    }

    /// `U[ξ]` of the input-gradient convolution (`cin × cout`): the forward
    /// `U` at `ξ` with indices 0 and 3 swapped on both axes, transposed.
    fn input_grad(&self, xi: usize) -> MatRef<'_> {
        let swap = |k: usize| [3, 1, 2, 0][k];
        self.forward(swap(xi / 4) * 4 + swap(xi % 4)).t()
    }
}

/// Which filters [`conv3x3`] applies: the forward ones, or those of the
/// input-gradient convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Forward,
    InputGrad,
}

simd_dispatch!(
    /// `G g Gᵀ` for `cols` filters at once: `taps [9][cols]` in,
    /// `u [16][cols]` out.
    fn filter_rows(taps: &[f32], cols: usize, u: &mut [f32]) => filter_rows_generic
);

#[inline(always)]
fn filter_rows_generic(taps: &[f32], cols: usize, u: &mut [f32]) {
    let g: [&[f32]; 9] = std::array::from_fn(|t| &taps[t * cols..][..cols]);
    let out: [&mut [f32]; XI] = {
        let mut parts = u.chunks_mut(cols);
        std::array::from_fn(|_| parts.next().expect("16 rows"))
    };
    for i in 0..cols {
        // G g (4 × 3), column by column, then each of its rows times Gᵀ.
        let gg: [[f32; 4]; 3] = std::array::from_fn(|c| g_times([g[c][i], g[3 + c][i], g[6 + c][i]]));
        for a in 0..4 {
            let row = g_times([gg[0][a], gg[1][a], gg[2][a]]);
            for b in 0..4 {
                out[a * 4 + b][i] = row[b];
            }
        }
    }
}

simd_dispatch!(
    /// `Gᵀ dU G` for `cols` filters at once: `du[ξ·ld + i]` in,
    /// `taps [9][cols]` out.
    fn filter_grad_rows(du: &[f32], ld: usize, cols: usize, taps: &mut [f32]) => filter_grad_rows_generic
);

#[inline(always)]
fn filter_grad_rows_generic(du: &[f32], ld: usize, cols: usize, taps: &mut [f32]) {
    let d: [&[f32]; XI] = std::array::from_fn(|xi| &du[xi * ld..][..cols]);
    let out: [&mut [f32]; 9] = {
        let mut parts = taps.chunks_mut(cols);
        std::array::from_fn(|_| parts.next().expect("9 rows"))
    };
    for i in 0..cols {
        // Gᵀ dU (3 × 4), column by column, then each of its rows times G.
        let half: [[f32; 3]; 4] = std::array::from_fn(|b| gt_times([d[b][i], d[4 + b][i], d[8 + b][i], d[12 + b][i]]));
        for r in 0..3 {
            let row = gt_times([half[0][r], half[1][r], half[2][r], half[3][r]]);
            for c in 0..3 {
                out[r * 3 + c][i] = row[c];
            }
        }
    }
}

/// `G v` for a column of three.
#[inline(always)]
fn g_times([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
    [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
}

/// `Gᵀ u` for a column of four (the adjoint of [`g_times`]).
#[inline(always)]
fn gt_times([u0, u1, u2, u3]: [f32; 4]) -> [f32; 3] {
    [u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3]
}

/// Tiles per block: the block's transformed input of one `ξ` (`cin × T`)
/// and its products (`cout × T`) together fill half of the L2 cache, within
/// [64, 1024] tiles.
fn tiles_per_block(cin: usize, cout: usize) -> usize {
    (crate::runtime::cache::l2_bytes() / 2 / (4 * (cin + cout))).clamp(64, 1024)
}

/// The blocks of tile rows (flattened over images): `[r0, r1)` ranges.
fn blocks(n: usize, t: &Tiling, tiles: usize) -> impl Iterator<Item = (usize, usize)> {
    let rows = n * t.th;
    let per = (tiles / t.tw).max(1);
    (0..rows).step_by(per).map(move |r0| (r0, (r0 + per).min(rows)))
}

/// 3×3 stride-1 convolution `y [n, cout, hout, wout]` of `x [n, cin, h, w]`
/// by `filters` (with [`Pass::InputGrad`], the convolution that maps an
/// output gradient to the input gradient: channels the other way round)
/// and an optional bias.
pub fn conv3x3(x: &[f32], n: usize, t: &Tiling, filters: &Filters, pass: Pass, bias: Option<&[f32]>) -> Vec<f32> {
    let (cin, cout) = match pass {
        Pass::Forward => (filters.cin, filters.cout),
        Pass::InputGrad => (filters.cout, filters.cin),
    };
    assert_eq!(x.len(), n * cin * t.h * t.w, "winograd: input is not [{n}, {cin}, {}, {}]", t.h, t.w);
    let p = t.hout * t.wout;
    let mut y = vec![0.0f32; n * cout * p];
    let mut v = Vec::new();
    let mut m = Vec::new();
    for (r0, r1) in blocks(n, t, tiles_per_block(cin, cout)) {
        let big_t = (r1 - r0) * t.tw;
        transform_inputs(x, cin, t, r0, r1, &mut v);
        // M[ξ] = U[ξ] · V[ξ].
        m.resize(XI * cout * big_t, 0.0);
        m.par_chunks_mut(cout * big_t).enumerate().for_each(|(xi, m_xi)| {
            let u_xi = match pass {
                Pass::Forward => filters.forward(xi),
                Pass::InputGrad => filters.input_grad(xi),
            };
            gemm(1.0, u_xi, at_point(&v, xi, cin, big_t), 0.0, m_xi, big_t, 1);
        });
        // Output planes of the block's images; each takes its block rows.
        let (img0, img1) = (r0 / t.th, (r1 - 1) / t.th + 1);
        y[img0 * cout * p..img1 * cout * p].par_chunks_mut(p).enumerate().for_each(|(k, plane)| {
            let (img, co) = (img0 + k / cout, k % cout);
            let lo = r0.max(img * t.th);
            let hi = r1.min((img + 1) * t.th);
            let b = bias.map_or(0.0, |b| b[co]);
            let at = co * big_t + (lo - r0) * t.tw;
            with_scratch(4 * (hi - lo) * t.tw, |buf| {
                output_tiles(&m, cout * big_t, at, t, lo - img * t.th, hi - img * t.th, b, plane, buf);
            });
        });
    }
    y
}

/// The weight gradient `dW [cout, cin, 3, 3]` of the forward [`conv3x3`]
/// for input `x [n, cin, h, w]` and output gradient `g [n, cout, hout, wout]`.
pub fn conv3x3_filter_grad(x: &[f32], g: &[f32], n: usize, cin: usize, cout: usize, t: &Tiling) -> Vec<f32> {
    let p = t.hout * t.wout;
    assert_eq!(x.len(), n * cin * t.h * t.w, "winograd: input is not [{n}, {cin}, {}, {}]", t.h, t.w);
    assert_eq!(g.len(), n * cout * p, "winograd: output gradient is not [{n}, {cout}, {}, {}]", t.hout, t.wout);
    let mut du = vec![0.0f32; XI * cout * cin];
    let mut v = Vec::new();
    let mut dm = Vec::new();
    for (r0, r1) in blocks(n, t, tiles_per_block(cin, cout)) {
        let big_t = (r1 - r0) * t.tw;
        transform_inputs(x, cin, t, r0, r1, &mut v);
        // dM[co][ξ][T] = A dY Aᵀ per tile.
        dm.resize(cout * XI * big_t, 0.0);
        dm.par_chunks_mut(XI * big_t).enumerate().for_each(|(co, dm_co)| {
            with_scratch(4 * big_t, |buf| grad_tiles(g, cout, co, t, r0, r1, dm_co, buf));
        });
        // dU[ξ] += dM[ξ] · V[ξ]ᵀ, in block order for every ξ.
        du.par_chunks_mut(cout * cin).enumerate().for_each(|(xi, du_xi)| {
            gemm(1.0, at_point(&dm, xi, cout, big_t), at_point(&v, xi, cin, big_t).t(), 1.0, du_xi, cin, 1);
        });
    }
    // dW = Gᵀ dU G per (co, ci), parallel over co.
    let mut dw = vec![0.0f32; cout * cin * 9];
    dw.par_chunks_mut(cin * 9).enumerate().for_each(|(co, dw_co)| {
        with_scratch(9 * cin, |taps| {
            filter_grad_rows(&du[co * cin..], cout * cin, cin, taps);
            transpose_into(taps, 9, cin, dw_co);
        });
    });
    dw
}

/// Point `ξ` of a block's transformed tiles laid out `[channel][16][T]`:
/// the `channels × T` matrix at offset `ξ·T` with row stride `16·T`.
fn at_point(tiles: &[f32], xi: usize, channels: usize, big_t: usize) -> MatRef<'_> {
    MatRef { data: &tiles[xi * big_t..], rows: channels, cols: big_t, rs: XI * big_t, cs: 1 }
}

/// `v [cin][16][T]`: the transformed 4×4 input patches of tile rows
/// `[r0, r1)` of every channel (parallel over channels).
fn transform_inputs(x: &[f32], cin: usize, t: &Tiling, r0: usize, r1: usize, v: &mut Vec<f32>) {
    let big_t = (r1 - r0) * t.tw;
    v.resize(cin * XI * big_t, 0.0);
    v.par_chunks_mut(XI * big_t).enumerate().for_each(|(ci, v_ci)| {
        with_scratch(XI * big_t, |buf| input_tiles(x, cin, ci, t, r0, r1, v_ci, buf));
    });
}

// Each transform gathers what its tiles read into rows indexed by tile
// (`rows[k][t]`: element k of tile t), then maps columns to columns over
// the whole block, eight tiles per step in fixed-size lane arrays that the
// compiler turns into vector instructions.

simd_dispatch!(
    /// `Bᵀ d B` for the tiles of tile rows `[r0, r1)` of channel `ci` of
    /// `x [n, cin, h, w]`: `v [16][T]`.
    fn input_tiles(x: &[f32], cin: usize, ci: usize, t: &Tiling, r0: usize, r1: usize, v: &mut [f32], buf: &mut [f32]) => input_tiles_generic
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_tiles_generic(
    x: &[f32],
    cin: usize,
    ci: usize,
    t: &Tiling,
    r0: usize,
    r1: usize,
    v: &mut [f32],
    buf: &mut [f32],
) {
    let (tw, hw) = (t.tw, t.h * t.w);
    let big_t = (r1 - r0) * tw;
    let patch = &mut buf[..XI * big_t];
    // patch[m·4 + c][tile]: row m, column c of the tile's 4×4 patch; the
    // patch of tile j covers input columns 2j - pad .. 2j - pad + 3. Rows
    // are short (a few tiles), so the gather is written element by element:
    // a library copy per row would cost more than the row.
    for r in r0..r1 {
        let (img, i) = (r / t.th, r % t.th);
        let plane = &x[(img * cin + ci) * hw..][..hw];
        let at = (r - r0) * tw;
        for m in 0..4 {
            let y = (2 * i + m) as isize - t.pad as isize;
            let rows = |c: usize| (m * 4 + c) * big_t + at;
            if y < 0 || y as usize >= t.h {
                for c in 0..4 {
                    for v in &mut patch[rows(c)..][..tw] {
                        *v = 0.0;
                    }
                }
                continue;
            }
            let line = &plane[y as usize * t.w..][..t.w];
            for j in 0..tw {
                for c in 0..4 {
                    let col = (2 * j + c) as isize - t.pad as isize;
                    patch[rows(c) + j] = if col >= 0 && (col as usize) < t.w { line[col as usize] } else { 0.0 };
                }
            }
        }
    }
    map_columns::<16, 16, BtDB>(patch, big_t, v, big_t, big_t);
}

simd_dispatch!(
    /// `Aᵀ M A + bias` for tile rows `[i0, i1)` of one output plane, from
    /// `m[ξ·ld + at + tile]`; outputs past the plane's edge are dropped.
    fn output_tiles(m: &[f32], ld: usize, at: usize, t: &Tiling, i0: usize, i1: usize, bias: f32, plane: &mut [f32], buf: &mut [f32]) => output_tiles_generic
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_tiles_generic(
    m: &[f32],
    ld: usize,
    at: usize,
    t: &Tiling,
    i0: usize,
    i1: usize,
    bias: f32,
    plane: &mut [f32],
    buf: &mut [f32],
) {
    let tw = t.tw;
    let len = (i1 - i0) * tw;
    // ys[r·2 + c][tile]: output (r, c) of each tile.
    let ys = &mut buf[..4 * len];
    map_columns::<16, 4, AtMA>(&m[at..], ld, ys, len, len);
    for i in i0..i1 {
        for r in 0..2 {
            let oy = 2 * i + r;
            if oy >= t.hout {
                continue;
            }
            let out = &mut plane[oy * t.wout..(oy + 1) * t.wout];
            let (y0, y1) = (&ys[(2 * r) * len + (i - i0) * tw..][..tw], &ys[(2 * r + 1) * len + (i - i0) * tw..][..tw]);
            for (j, pair) in out.chunks_mut(2).enumerate() {
                pair[0] = y0[j] + bias;
                if let Some(second) = pair.get_mut(1) {
                    *second = y1[j] + bias;
                }
            }
        }
    }
}

simd_dispatch!(
    /// `A dY Aᵀ` for the tiles of tile rows `[r0, r1)` of output channel
    /// `co` of `g [n, cout, hout, wout]`: `dm [16][T]` (outputs past the
    /// edge count as zero).
    fn grad_tiles(g: &[f32], cout: usize, co: usize, t: &Tiling, r0: usize, r1: usize, dm: &mut [f32], buf: &mut [f32]) => grad_tiles_generic
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tiles_generic(
    g: &[f32],
    cout: usize,
    co: usize,
    t: &Tiling,
    r0: usize,
    r1: usize,
    dm: &mut [f32],
    buf: &mut [f32],
) {
    let (tw, p) = (t.tw, t.hout * t.wout);
    let big_t = (r1 - r0) * tw;
    // dys[r·2 + c][tile]: output gradient (r, c) of each tile.
    let dys = &mut buf[..4 * big_t];
    for r in r0..r1 {
        let (img, i) = (r / t.th, r % t.th);
        let plane = &g[(img * cout + co) * p..][..p];
        let at = (r - r0) * tw;
        for rr in 0..2 {
            let oy = 2 * i + rr;
            let (even, odd) = dys[2 * rr * big_t..(2 * rr + 2) * big_t].split_at_mut(big_t);
            let (even, odd) = (&mut even[at..at + tw], &mut odd[at..at + tw]);
            if oy >= t.hout {
                even.fill(0.0);
                odd.fill(0.0);
                continue;
            }
            for (j, pair) in plane[oy * t.wout..(oy + 1) * t.wout].chunks(2).enumerate() {
                even[j] = pair[0];
                odd[j] = pair.get(1).copied().unwrap_or(0.0);
            }
        }
    }
    map_columns::<4, 16, ADyAt>(dys, big_t, dm, big_t, big_t);
}

/// `dst[k·dst_ld + t] = M(src[··src_ld + t])[k]` for `t < len`: `M` maps
/// the `I` values of a column to `O`, eight columns at a time, the last few
/// one by one.
#[inline(always)]
fn map_columns<const I: usize, const O: usize, M: ColumnMap<I, O>>(
    src: &[f32],
    src_ld: usize,
    dst: &mut [f32],
    dst_ld: usize,
    len: usize,
) {
    assert!(I > 0 && O > 0 && (I - 1) * src_ld + len <= src.len() && (O - 1) * dst_ld + len <= dst.len());
    let mut t = 0;
    while t + 8 <= len {
        let mut column = [Lanes([0.0; 8]); I];
        for (k, lanes) in column.iter_mut().enumerate() {
            lanes.0.copy_from_slice(&src[k * src_ld + t..][..8]);
        }
        let out = M::apply(column);
        for (k, lanes) in out.iter().enumerate() {
            dst[k * dst_ld + t..][..8].copy_from_slice(&lanes.0);
        }
        t += 8;
    }
    for t in t..len {
        let mut column = [Lanes([0.0; 1]); I];
        for (k, lanes) in column.iter_mut().enumerate() {
            lanes.0[0] = src[k * src_ld + t];
        }
        let out = M::apply(column);
        for (k, lanes) in out.iter().enumerate() {
            dst[k * dst_ld + t] = lanes.0[0];
        }
    }
}

/// A transform of one column of `I` values into `O`, written once for any
/// lane count. A trait rather than a function argument: its `apply` is
/// always inlined into the SIMD-compiled caller, where a function passed as
/// a value may be called out of line, compiled for the baseline ISA.
trait ColumnMap<const I: usize, const O: usize> {
    fn apply<const N: usize>(column: [Lanes<N>; I]) -> [Lanes<N>; O];
}

/// The input transform [`bt_d_b`].
struct BtDB;
/// The output transform [`at_m_a`].
struct AtMA;
/// The output-gradient transform [`a_dy_at`].
struct ADyAt;

impl ColumnMap<16, 16> for BtDB {
    #[inline(always)]
    fn apply<const N: usize>(column: [Lanes<N>; 16]) -> [Lanes<N>; 16] {
        bt_d_b(column)
    }
}

impl ColumnMap<16, 4> for AtMA {
    #[inline(always)]
    fn apply<const N: usize>(column: [Lanes<N>; 16]) -> [Lanes<N>; 4] {
        at_m_a(column)
    }
}

impl ColumnMap<4, 16> for ADyAt {
    #[inline(always)]
    fn apply<const N: usize>(column: [Lanes<N>; 4]) -> [Lanes<N>; 16] {
        a_dy_at(column)
    }
}

/// `N` values that one arithmetic operation applies to lane by lane.
#[derive(Clone, Copy)]
struct Lanes<const N: usize>([f32; N]);

impl<const N: usize> std::ops::Add for Lanes<N> {
    type Output = Self;
    #[inline(always)]
    fn add(mut self, b: Self) -> Self {
        for (x, y) in self.0.iter_mut().zip(b.0) {
            *x += y;
        }
        self
    }
}

impl<const N: usize> std::ops::Sub for Lanes<N> {
    type Output = Self;
    #[inline(always)]
    fn sub(mut self, b: Self) -> Self {
        for (x, y) in self.0.iter_mut().zip(b.0) {
            *x -= y;
        }
        self
    }
}

impl<const N: usize> std::ops::Neg for Lanes<N> {
    type Output = Self;
    #[inline(always)]
    fn neg(mut self) -> Self {
        for x in &mut self.0 {
            *x = -*x;
        }
        self
    }
}

/// `Bᵀ v` for a column of four.
#[inline(always)]
fn bt<const N: usize>([v0, v1, v2, v3]: [Lanes<N>; 4]) -> [Lanes<N>; 4] {
    [v0 - v2, v1 + v2, v2 - v1, v1 - v3]
}

/// `Aᵀ v` for a column of four.
#[inline(always)]
fn at<const N: usize>([v0, v1, v2, v3]: [Lanes<N>; 4]) -> [Lanes<N>; 2] {
    [v0 + v1 + v2, v1 - v2 - v3]
}

/// `A v` for a column of two (the adjoint of [`at`]).
#[inline(always)]
fn a<const N: usize>([v0, v1]: [Lanes<N>; 2]) -> [Lanes<N>; 4] {
    [v0, v0 + v1, v0 - v1, -v1]
}

/// `Bᵀ d B` of a 4×4 patch `d[m·4 + c]`, as `V[ξ = a·4 + b]`.
#[inline(always)]
fn bt_d_b<const N: usize>(d: [Lanes<N>; 16]) -> [Lanes<N>; 16] {
    // (The transforms index arrays in loops instead of `array::from_fn`,
    // which the compiler may leave out of line, outside the SIMD code.)
    let mut rows = [[Lanes([0.0; N]); 4]; 4];
    for (m, row) in rows.iter_mut().enumerate() {
        *row = bt([d[4 * m], d[4 * m + 1], d[4 * m + 2], d[4 * m + 3]]);
    }
    let mut v = d;
    for b in 0..4 {
        let col = bt([rows[0][b], rows[1][b], rows[2][b], rows[3][b]]);
        for (a, value) in col.into_iter().enumerate() {
            v[a * 4 + b] = value;
        }
    }
    v
}

/// `Aᵀ M A` of a 4×4 `M[ξ]`, as the 2×2 outputs `y[r·2 + c]`.
#[inline(always)]
fn at_m_a<const N: usize>(m: [Lanes<N>; 16]) -> [Lanes<N>; 4] {
    let mut down = [[Lanes([0.0; N]); 2]; 4];
    for (b, col) in down.iter_mut().enumerate() {
        *col = at([m[b], m[4 + b], m[8 + b], m[12 + b]]);
    }
    let [y00, y01] = at([down[0][0], down[1][0], down[2][0], down[3][0]]);
    let [y10, y11] = at([down[0][1], down[1][1], down[2][1], down[3][1]]);
    [y00, y01, y10, y11]
}

/// `A dY Aᵀ` of a 2×2 `dY[r·2 + c]`, as `dM[ξ]` (the adjoint of [`at_m_a`]).
#[inline(always)]
fn a_dy_at<const N: usize>(dy: [Lanes<N>; 4]) -> [Lanes<N>; 16] {
    let across = [a([dy[0], dy[1]]), a([dy[2], dy[3]])];
    let mut dm = [Lanes([0.0; N]); 16];
    for b in 0..4 {
        for (r, value) in a([across[0][b], across[1][b]]).into_iter().enumerate() {
            dm[r * 4 + b] = value;
        }
    }
    dm
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: `y[co, oy, ox] = b + Σ w[co, ci, r, c] x[ci, oy + r - p, ox + c - p]`.
    fn direct(x: &[f32], n: usize, cin: usize, t: &Tiling, w: &[f32], cout: usize) -> Vec<f64> {
        let mut y = vec![0.0f64; n * cout * t.hout * t.wout];
        for img in 0..n {
            for co in 0..cout {
                for oy in 0..t.hout {
                    for ox in 0..t.wout {
                        let mut s = 0.0f64;
                        for ci in 0..cin {
                            for r in 0..3 {
                                for c in 0..3 {
                                    let (iy, ix) =
                                        ((oy + r) as isize - t.pad as isize, (ox + c) as isize - t.pad as isize);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < t.h && (ix as usize) < t.w {
                                        let xv = x[((img * cin + ci) * t.h + iy as usize) * t.w + ix as usize];
                                        s += (w[((co * cin + ci) * 3 + r) * 3 + c] * xv) as f64;
                                    }
                                }
                            }
                        }
                        y[((img * cout + co) * t.hout + oy) * t.wout + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 2654435761 + seed * 40503) % 1000) as f32) * 2e-3 - 1.0).collect()
    }

    /// Shapes with odd sizes, a 1-pixel image, paddings 0–2 and several
    /// blocks per image and images per block.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 6] = [
        (2, 3, 4, 5, 7, 1),
        (1, 2, 3, 8, 8, 0),
        (3, 4, 2, 1, 1, 1),
        (2, 5, 3, 2, 3, 2),
        (1, 1, 1, 9, 130, 1),
        (70, 2, 3, 2, 2, 1),
    ];

    #[test]
    fn forward_matches_the_definition() {
        for (n, cin, cout, h, w, pad) in SHAPES {
            let t = Tiling::new(h, w, pad);
            let (x, wt) = (values(n * cin * h * w, 1), values(cout * cin * 9, 2));
            let bias = values(cout, 3);
            let y = conv3x3(&x, n, &t, &Filters::new(&wt, cout, cin), Pass::Forward, Some(&bias));
            let want = direct(&x, n, cin, &t, &wt, cout);
            for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                let b = b + bias[(k / (t.hout * t.wout)) % cout] as f64;
                assert!(
                    (*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "{n} {cin} {cout} {h}x{w} p{pad} at {k}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn input_and_weight_gradients_are_the_adjoints_of_the_forward() {
        // <conv(x, w), g> = <x, dx(g, w)> = <w, dW(x, g)> for any x, w, g.
        for (n, cin, cout, h, w, pad) in SHAPES {
            let t = Tiling::new(h, w, pad);
            let (x, wt) = (values(n * cin * h * w, 4), values(cout * cin * 9, 5));
            let g = values(n * cout * t.hout * t.wout, 6);
            let filters = Filters::new(&wt, cout, cin);
            let y = conv3x3(&x, n, &t, &filters, Pass::Forward, None);
            let lhs: f64 = y.iter().zip(&g).map(|(a, b)| (a * b) as f64).sum();
            let back = Tiling::new(t.hout, t.wout, 2 - pad);
            assert_eq!((back.hout, back.wout), (h, w));
            let dx = conv3x3(&g, n, &back, &filters, Pass::InputGrad, None);
            let via_x: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
            let dw = conv3x3_filter_grad(&x, &g, n, cin, cout, &t);
            let via_w: f64 = wt.iter().zip(&dw).map(|(a, b)| (a * b) as f64).sum();
            let tol = 1e-4 * (1.0 + lhs.abs());
            assert!(
                (lhs - via_x).abs() < tol && (lhs - via_w).abs() < tol,
                "{n} {cin} {cout} {h}x{w} p{pad}: {lhs} {via_x} {via_w}"
            );
        }
    }
}
