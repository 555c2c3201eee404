//! 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3).
//!
//! Each 2×2 block of outputs ("tile") of one channel is computed from the
//! 4×4 input patch under it as `y = Aᵀ [ Σ_ci U[ci] ⊙ V[ci] ] A`, with
//! `U = G g Gᵀ` the transformed 3×3 filter and `V = Bᵀ d B` the transformed
//! patch (all 4×4). The 16 points `ξ` of the 4×4 transform domain are
//! independent, so the sum over input channels becomes 16 matrix products
//! `M[ξ] = V[ξ] · U[ξ]ᵀ` (`tiles × cin` times `cin × cout`): 16 multiplies per
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
//! `U[ξ']ᵀ` and needs no second filter transform (see [`Filters::new`]).
//! The weight gradient is the adjoint of the forward map:
//! `dU[ξ] = Σ_tiles (A dY Aᵀ)[ξ]ᵀ · V[ξ]`, 16 products again, then
//! `dW = Gᵀ dU G` ([`conv3x3_filter_grad`]).
//!
//! The transforms only add, subtract and halve, so the rounding error stays
//! that of a short sum (the constants are exact in binary). Tiles hanging
//! over the bottom or right edge of an odd-sized output read zeros and drop
//! their extra outputs.
//!
//! Data moves channels last. The input (or output gradient) is first
//! transposed to `[n, h, w, c]`, so that a pixel's channels are one
//! contiguous run and every transform works on one tile at a time with
//! whole vectors of channels, whatever the image size (a 2×2 image has one
//! tile per image; channels are always plenty). Products and transforms
//! keep that layout: `V` is `[T][ξ][cin]`, `M` is `[ξ][T][cout]`, and the
//! output is transposed back to `[n, cout, hout, wout]` at the end.
//!
//! Work goes in blocks of whole tile rows (which may span images): transform
//! a block's input (parallel over tile rows), multiply (parallel over `ξ`),
//! transform back (parallel over tile rows). Block sizes depend on the
//! shapes and the machine's cache size, never on the thread count, so a
//! result is the same for any number of threads.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::gemm::{MatRef, PackedB, gemm, gemm_packed};
use crate::kernels::{fresh, front, transpose_into, with_scratch};

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

/// The transformed filters `U = G g Gᵀ` of weights `w [cout, cin, 3, 3]`,
/// packed for the 16 products of one [`Pass`]: `U[ξ]ᵀ` (`cin × cout`) for
/// the forward convolution, or for the input-gradient one `U` at `ξ` with
/// indices 0 and 3 swapped on both axes (`cout × cin`).
pub struct Filters {
    packed: Vec<PackedB>,
    pass: Pass,
    cout: usize,
    cin: usize,
}

impl Filters {
    /// The filters of `pass`, transformed (parallel over output channels)
    /// and packed (parallel over `ξ`).
    pub fn new(w: &[f32], cout: usize, cin: usize, pass: Pass) -> Filters {
        assert_eq!(w.len(), cout * cin * 9, "winograd: weights are not [{cout}, {cin}, 3, 3]");
        // u [co][ξ][ci]: U[ξ] is the cout × cin matrix at ξ·cin, row stride 16·cin.
        let mut u = vec![0.0f32; cout * XI * cin];
        u.par_chunks_mut(XI * cin).zip(w.par_chunks(cin * 9)).for_each(|(u_co, w_co)| {
            with_scratch(9 * cin, |taps| {
                transpose_into(w_co, cin, 9, taps); // taps[t][ci] = w[co, ci, t]
                filter_rows(taps, cin, u_co);
            });
        });
        let at = |xi: usize| MatRef { data: &u[xi * cin..], rows: cout, cols: cin, rs: XI * cin, cs: 1 };
        let swap = |k: usize| [3, 1, 2, 0][k];
        let packed = (0..XI)
            .into_par_iter()
            .map(|xi| match pass {
                Pass::Forward => PackedB::new(at(xi).t()),
                Pass::InputGrad => PackedB::new(at(swap(xi / 4) * 4 + swap(xi % 4))),
            })
            .collect();
        Filters { packed, pass, cout, cin }
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

/// Tiles per block: one point's share of the block — its transformed
/// input (`T × cin`) and products (`T × cout`), what one matrix product
/// works on — fills half of the L2 cache, within [64, 1024] tiles. Fewer
/// tiles would shrink every product while each still packs its whole
/// `cin × cout` filter matrix, which then costs more than the cache misses
/// it saves.
fn tiles_per_block(cin: usize, cout: usize) -> usize {
    (crate::runtime::cache::l2_bytes() / 2 / (4 * (cin + cout))).clamp(64, 1024)
}

/// The blocks of tile rows (flattened over images): `[r0, r1)` ranges.
fn blocks(n: usize, t: &Tiling, tiles: usize) -> impl Iterator<Item = (usize, usize)> {
    let rows = n * t.th;
    let per = (tiles / t.tw).max(1);
    (0..rows).step_by(per).map(move |r0| (r0, (r0 + per).min(rows)))
}

/// Every image of `x` (`rows × cols` floats each) transposed: `[n, c, plane]`
/// to channels last `[n, plane, c]` on the way in, so that a pixel's channels
/// are one contiguous run the transforms load as vectors, and back on the
/// way out.
fn transpose_images<E: Copy + Send + Sync>(x: &[E], rows: usize, cols: usize, out: &mut [E]) {
    out.par_chunks_mut(rows * cols)
        .zip(x.par_chunks(rows * cols))
        .for_each(|(o, img)| transpose_into(img, rows, cols, o));
}

/// The buffers of a Winograd pass — the channels-last input and output (or
/// output gradient), a block's transformed tiles and products, the
/// transformed weight gradient — kept by each thread from one pass to the
/// next. A pass writes every part of them it reads, so they never need
/// clearing; fresh buffers would be zero-filled first, one more pass over
/// memory each.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    y: Vec<f32>,
    v: Vec<f32>,
    m: Vec<f32>,
    du: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Run `f` with this thread's [`Buffers`] (fresh ones if a pass on this
/// thread is already using them).
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => f(&mut buffers),
        Err(_) => f(&mut Buffers::default()),
    })
}

/// The chunks of `data` (images of `per_image` floats, each cut into tile
/// rows of `per_row` floats, the last perhaps shorter) that belong to tile
/// rows `[r0, r1)`, each with its tile-row index.
fn tile_row_chunks<'a>(
    data: &'a mut [f32],
    per_image: usize,
    per_row: usize,
    t: &Tiling,
    (r0, r1): (usize, usize),
) -> Vec<(usize, &'a mut [f32])> {
    let (img0, img1) = (r0 / t.th, (r1 - 1) / t.th + 1);
    data[img0 * per_image..img1 * per_image]
        .chunks_mut(per_image)
        .enumerate()
        .flat_map(|(k, img)| img.chunks_mut(per_row).enumerate().map(move |(i, c)| ((img0 + k) * t.th + i, c)))
        .filter(|(r, _)| (r0..r1).contains(r))
        .collect()
}

/// 3×3 stride-1 convolution `y [n, cout, hout, wout]` of `x [n, cin, h, w]`
/// by `filters` (with [`Pass::InputGrad`], the convolution that maps an
/// output gradient to the input gradient: channels the other way round)
/// and an optional bias.
pub fn conv3x3(x: &[f32], n: usize, t: &Tiling, filters: &Filters, bias: Option<&[f32]>) -> Vec<f32> {
    let (cin, cout) = match filters.pass {
        Pass::Forward => (filters.cin, filters.cout),
        Pass::InputGrad => (filters.cout, filters.cin),
    };
    assert_eq!(x.len(), n * cin * t.h * t.w, "winograd: input is not [{n}, {cin}, {}, {}]", t.h, t.w);
    let p = t.hout * t.wout;
    let mut out = Vec::new();
    with_buffers(|b| {
        let x_last = front(&mut b.x, x.len());
        transpose_images(x, cin, t.h * t.w, x_last);
        let y = front(&mut b.y, n * p * cout); // [n, hout, wout, cout]
        for block in blocks(n, t, tiles_per_block(cin, cout)) {
            let big_t = (block.1 - block.0) * t.tw;
            let v = transform_inputs(x_last, cin, t, block, &mut b.v);
            // M[ξ] = V[ξ] · U[ξ]ᵀ, `T × cout`, laid out [ξ][T][cout].
            let m = front(&mut b.m, XI * big_t * cout);
            m.par_chunks_mut(big_t * cout).enumerate().for_each(|(xi, m_xi)| {
                gemm_packed(1.0, at_point(v, xi, cin, big_t), &filters.packed[xi], 0.0, m_xi, cout);
            });
            tile_row_chunks(y, p * cout, 2 * t.wout * cout, t, block).into_par_iter().for_each(|(r, rows)| {
                let at = (r - block.0) * t.tw * cout;
                output_row(&m[at..], big_t * cout, t, cout, bias, rows);
            });
        }
        // SAFETY: a view of initialised floats as possibly uninitialised
        // ones (same layout), only read.
        let y: &[MaybeUninit<f32>] = unsafe { &*(y as *const [f32] as *const [MaybeUninit<f32>]) };
        // SAFETY: the transpose writes every element of `out` (as long as `y`).
        out = unsafe { fresh(n * cout * p, |out| transpose_images(y, p, cout, out)) };
    });
    out
}

/// The weight gradient `dW [cout, cin, 3, 3]` of the forward [`conv3x3`]
/// for input `x [n, cin, h, w]` and output gradient `g [n, cout, hout, wout]`.
pub fn conv3x3_filter_grad(x: &[f32], g: &[f32], n: usize, cin: usize, cout: usize, t: &Tiling) -> Vec<f32> {
    let p = t.hout * t.wout;
    assert_eq!(x.len(), n * cin * t.h * t.w, "winograd: input is not [{n}, {cin}, {}, {}]", t.h, t.w);
    assert_eq!(g.len(), n * cout * p, "winograd: output gradient is not [{n}, {cout}, {}, {}]", t.hout, t.wout);
    let mut dw = vec![0.0f32; cout * cin * 9];
    with_buffers(|b| {
        let x_last = front(&mut b.x, x.len());
        transpose_images(x, cin, t.h * t.w, x_last);
        let g_last = front(&mut b.y, g.len());
        transpose_images(g, cout, p, g_last);
        let du = front(&mut b.du, XI * cout * cin);
        for block in blocks(n, t, tiles_per_block(cin, cout)) {
            let big_t = (block.1 - block.0) * t.tw;
            let v = transform_inputs(x_last, cin, t, block, &mut b.v);
            // dM = A dY Aᵀ per tile, laid out [T][ξ][cout].
            let dm = front(&mut b.m, big_t * tile_len(cout));
            dm.par_chunks_mut(t.tw * tile_len(cout)).enumerate().for_each(|(k, dm_row)| {
                let r = block.0 + k;
                grad_row(&g_last[(r / t.th) * p * cout..][..p * cout], t, cout, r % t.th, dm_row);
            });
            // dU[ξ] = Σ_blocks dM[ξ]ᵀ · V[ξ], in block order for every ξ
            // (the first block overwrites what the buffer held).
            let beta = if block.0 == 0 { 0.0 } else { 1.0 };
            du.par_chunks_mut(cout * cin).enumerate().for_each(|(xi, du_xi)| {
                gemm(1.0, at_point(dm, xi, cout, big_t).t(), at_point(v, xi, cin, big_t), beta, du_xi, cin);
            });
        }
        // dW = Gᵀ dU G per (co, ci), parallel over co.
        dw.par_chunks_mut(cin * 9).enumerate().for_each(|(co, dw_co)| {
            with_scratch(9 * cin, |taps| {
                filter_grad_rows(&du[co * cin..], cout * cin, cin, taps);
                transpose_into(taps, 9, cin, dw_co);
            });
        });
    });
    dw
}

/// Floats per transformed tile of `channels` channels: its `16 × channels`
/// values and one cache line of padding. The products read a point of many
/// tiles at once, `16·channels` floats apart without the padding: with
/// channels a power of two, a multiple of 4 KiB, so those reads would all
/// fall into the same few sets of the L1 cache and evict one another.
fn tile_len(channels: usize) -> usize {
    XI * channels + 16
}

/// Point `ξ` of a block's transformed tiles laid out `[T][16][channels]`
/// (each tile [`tile_len`] floats): the `T × channels` matrix at offset
/// `ξ·channels`.
fn at_point(tiles: &[f32], xi: usize, channels: usize, big_t: usize) -> MatRef<'_> {
    MatRef { data: &tiles[xi * channels..], rows: big_t, cols: channels, rs: tile_len(channels), cs: 1 }
}

/// `v [T][16][cin]`, in the front of `buf`: the transformed 4×4 input
/// patches of tile rows `[r0, r1)` of the channels-last input (parallel
/// over tile rows).
fn transform_inputs<'a>(
    x: &[f32],
    cin: usize,
    t: &Tiling,
    (r0, r1): (usize, usize),
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    let hw = t.h * t.w;
    let v = front(buf, (r1 - r0) * t.tw * tile_len(cin));
    v.par_chunks_mut(t.tw * tile_len(cin)).enumerate().for_each(|(k, v_row)| {
        let r = r0 + k;
        input_row(&x[(r / t.th) * hw * cin..][..hw * cin], t, cin, r % t.th, v_row);
    });
    v
}

// The transforms work on one tile at a time, eight channels per step in
// fixed-size lane arrays that the compiler turns into vector instructions
// (channels last: a pixel's channels are contiguous), the last few
// channels one by one. Each is written out in the SIMD-compiled function
// itself: a transform passed in as a function value may be called out of
// line, compiled for the baseline ISA.

/// Run `$body` for the channel runs `[$c, $c + $n)` covering
/// `0..$channels`: `$n` = 8, then 1 for the remainder.
macro_rules! by_lanes {
    ($channels:expr, |$c:ident, $n:ident| $body:block) => {{
        let channels = $channels;
        let mut $c = 0;
        while $c + 8 <= channels {
            {
                const $n: usize = 8;
                $body
            }
            $c += 8;
        }
        while $c < channels {
            {
                const $n: usize = 1;
                $body
            }
            $c += 1;
        }
    }};
}

/// The `I` vectors of `N` channels from `c` at offsets `at` of `src`;
/// zeros where `at` is `None` (padding).
#[inline(always)]
fn gather<const N: usize, const I: usize>(src: &[f32], at: &[Option<usize>; I], c: usize) -> [Lanes<N>; I] {
    let mut column = [Lanes([0.0; N]); I];
    for (lanes, at) in column.iter_mut().zip(at) {
        if let Some(at) = at {
            lanes.0.copy_from_slice(&src[at + c..][..N]);
        }
    }
    column
}

/// Store vector `k` of `column` at `dst[k·ld + c]`.
#[inline(always)]
fn scatter<const N: usize, const O: usize>(dst: &mut [f32], ld: usize, c: usize, column: [Lanes<N>; O]) {
    for (k, lanes) in column.into_iter().enumerate() {
        dst[k * ld + c..][..N].copy_from_slice(&lanes.0);
    }
}

/// Offsets `(y · w + x) · channels` of the pixels `(y0 + k / cols, x0 + k % cols)`
/// of a `rows × cols` window of an `h × w` channels-last image, `None` outside it.
#[inline(always)]
fn window<const K: usize>(
    y0: isize,
    x0: isize,
    cols: usize,
    h: usize,
    w: usize,
    channels: usize,
) -> [Option<usize>; K] {
    let mut at = [None; K];
    for (k, slot) in at.iter_mut().enumerate() {
        let (y, x) = (y0 + (k / cols) as isize, x0 + (k % cols) as isize);
        if (0..h as isize).contains(&y) && (0..w as isize).contains(&x) {
            *slot = Some((y as usize * w + x as usize) * channels);
        }
    }
    at
}

simd_dispatch!(
    /// `Bᵀ d B` for the tiles of tile row `i` of one channels-last image
    /// `x [h, w, cin]`: `v [tw][16][cin]`, each tile [`tile_len`] floats.
    fn input_row(x: &[f32], t: &Tiling, cin: usize, i: usize, v: &mut [f32]) => input_row_generic
);

#[inline(always)]
fn input_row_generic(x: &[f32], t: &Tiling, cin: usize, i: usize, v: &mut [f32]) {
    let pad = t.pad as isize;
    for (j, out) in v.chunks_exact_mut(tile_len(cin)).take(t.tw).enumerate() {
        // The patch of tile (i, j): input rows and columns from 2i − pad
        // and 2j − pad, four of each.
        let at = window::<16>(2 * i as isize - pad, 2 * j as isize - pad, 4, t.h, t.w, cin);
        by_lanes!(cin, |c, N| {
            scatter(out, cin, c, bt_d_b(gather::<N, 16>(x, &at, c)));
        });
    }
}

simd_dispatch!(
    /// `Aᵀ M A + bias` for the tiles of tile row `i` of one image, from
    /// `m[ξ·ld + j·cout + co]`, into its output rows `2i` (and `2i + 1`
    /// unless past the edge) `y [rows, wout, cout]`, channels last.
    fn output_row(m: &[f32], ld: usize, t: &Tiling, cout: usize, bias: Option<&[f32]>, y: &mut [f32]) => output_row_generic
);

#[inline(always)]
fn output_row_generic(m: &[f32], ld: usize, t: &Tiling, cout: usize, bias: Option<&[f32]>, y: &mut [f32]) {
    let rows = y.len() / (t.wout * cout);
    let points: [Option<usize>; 16] = std::array::from_fn(|xi| Some(xi * ld));
    for j in 0..t.tw {
        // Output (r, c) of the tile is pixel (r, 2j + c) of these rows.
        let at = window::<4>(0, 2 * j as isize, 2, rows, t.wout, cout);
        by_lanes!(cout, |co, N| {
            let mut b = Lanes([0.0; N]);
            if let Some(bias) = bias {
                b.0.copy_from_slice(&bias[co..co + N]);
            }
            let ys = at_m_a(gather::<N, 16>(&m[j * cout..], &points, co));
            for (y_rc, at) in ys.into_iter().zip(at) {
                if let Some(at) = at {
                    y[at + co..][..N].copy_from_slice(&(y_rc + b).0);
                }
            }
        });
    }
}

simd_dispatch!(
    /// `A dY Aᵀ` for the tiles of tile row `i` of one channels-last output
    /// gradient `g [hout, wout, cout]`: `dm [tw][16][cout]` (outputs past
    /// the edge count as zero).
    fn grad_row(g: &[f32], t: &Tiling, cout: usize, i: usize, dm: &mut [f32]) => grad_row_generic
);

#[inline(always)]
fn grad_row_generic(g: &[f32], t: &Tiling, cout: usize, i: usize, dm: &mut [f32]) {
    for (j, out) in dm.chunks_exact_mut(tile_len(cout)).take(t.tw).enumerate() {
        let at = window::<4>(2 * i as isize, 2 * j as isize, 2, t.hout, t.wout, cout);
        by_lanes!(cout, |co, N| {
            scatter(out, cout, co, a_dy_at(gather::<N, 4>(g, &at, co)));
        });
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
            let y = conv3x3(&x, n, &t, &Filters::new(&wt, cout, cin, Pass::Forward), Some(&bias));
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
            let y = conv3x3(&x, n, &t, &Filters::new(&wt, cout, cin, Pass::Forward), None);
            let lhs: f64 = y.iter().zip(&g).map(|(a, b)| (a * b) as f64).sum();
            let back = Tiling::new(t.hout, t.wout, 2 - pad);
            assert_eq!((back.hout, back.wout), (h, w));
            let dx = conv3x3(&g, n, &back, &Filters::new(&wt, cout, cin, Pass::InputGrad), None);
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
