//! 2-D convolution (cross-correlation, as `torch.nn.Conv2d`), NCHW, any
//! kernel size, stride and zero padding.
//!
//! Lowered to GEMM: a group of images is unfolded by `im2col` into a matrix
//! `col[K = cin·kh·kw, cols = images·hout·wout]`, then
//! `y = W[cout, K] · col`. Backward reuses the same unfolding:
//! `dW = Σ g · colᵀ`, `dcol = Wᵀ · g` folded back by `col2im`, `db = Σ g`.
//! Work is split into fixed groups of images run in parallel; partial `dW`
//! sums are added in group order, so results do not depend on thread count.
//!
//! A 3×3 stride-1 convolution with enough channels on both sides goes
//! through Winograd's F(2×2, 3×3) instead ([`crate::kernels::winograd`]),
//! forward and both gradients: 2.25× fewer multiplies. Layers with a few
//! input channels (the first of a network) stay on the GEMM above, where
//! the unfolded matrix is small and the transforms would not pay.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::autograd::Op;
use crate::kernels::gemm::{MatRef, gemm_into};
use crate::kernels::im2col::{ConvShape, col2im, im2col};
use crate::kernels::winograd::{self, Pass, Tiling};
use crate::kernels::{fresh, moments, with_scratch};
use crate::tensor::Tensor;

/// Columns per GEMM: enough to amortise packing `W`, small enough that the
/// unfolded block stays in L2.
const TARGET_COLS: usize = 256;
/// Backward splits the batch into at most this many groups, each with its own
/// partial weight gradient.
const MAX_GROUPS: usize = 8;
/// The fewest columns (images × pixels) worth a block of their own, with
/// its own partial weight gradient.
const MIN_GROUP_COLS: usize = 64;
/// Winograd needs at least this many input and output channels: its
/// per-tile transforms cost as much as a product over ~8 channels.
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Convolution `y[n, co] = b[co] + Σ_ci W[co, ci] ⋆ x[n, ci]` with the given
/// stride and zero padding. Shapes: `x [N, cin, H, W]`, `weight [cout, cin, kh, kw]`,
/// `bias [cout]`.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: usize, padding: usize) -> Tensor {
    let geo = Geometry::new(x.shape(), weight.shape(), stride, padding);
    if let Some(b) = bias {
        assert_eq!(b.shape(), &[geo.cout], "conv2d: bias {:?} for {} output channels", b.shape(), geo.cout);
    }
    let (s, cout, p) = (geo.s, geo.cout, geo.s.pixels());
    let op = || Op::Conv2d { x: x.clone(), weight: weight.clone(), bias: bias.cloned(), stride, padding };
    let shape = [geo.n, cout, s.hout(), s.wout()];
    if let Some(t) = geo.winograd() {
        let filters = winograd::Filters::new(weight.data(), cout, s.cin, Pass::Forward);
        let y = winograd::conv3x3(x.data(), geo.n, &t, &filters, bias.map(|b| b.data()));
        return Tensor::from_op(ArrayD::from_shape_vec(IxDyn(&shape), y).expect("sizes agree"), op());
    }
    let nb = geo.images_per_block();
    let w = MatRef::new(weight.data(), cout, s.taps());
    let in_len = s.cin * s.h * s.w;
    let bias = bias.map(|b| b.data());
    // Each block's product goes to a scratch matrix `[cout, imgs·p]` that
    // stays in cache, and from there (bias added, images apart) into `y`:
    // one pass over the output, not a zero fill, a product and a bias pass.
    let fill = |blk: usize, y_blk: &mut [MaybeUninit<f32>]| {
        let imgs = y_blk.len() / (cout * p);
        let cols = imgs * p;
        let x_blk = &x.data()[blk * nb * in_len..(blk * nb + imgs) * in_len];
        with_scratch(s.taps() * cols + cout * cols, |buf| {
            let (col, tmp) = buf.split_at_mut(s.taps() * cols);
            for (i, img) in x_blk.chunks_exact(in_len).enumerate() {
                im2col(img, &s, col, cols, i * p);
            }
            gemm_into(1.0, w, MatRef::new(col, s.taps(), cols), 0.0, tmp);
            for (i, y_img) in y_blk.chunks_exact_mut(cout * p).enumerate() {
                for (co, y_plane) in y_img.chunks_exact_mut(p).enumerate() {
                    let from = &tmp[co * cols + i * p..][..p];
                    match bias {
                        Some(b) => y_plane.iter_mut().zip(from).for_each(|(o, &v)| _ = o.write(v + b[co])),
                        None => y_plane.iter_mut().zip(from).for_each(|(o, &v)| _ = o.write(v)),
                    }
                }
            }
        });
    };
    // SAFETY: the blocks of `nb` images cover `y`, and `fill` writes every
    // plane of each.
    let y = unsafe {
        fresh(geo.n * cout * p, |y| {
            y.par_chunks_mut(nb * cout * p).enumerate().for_each(|(blk, y_blk)| fill(blk, y_blk));
        })
    };
    Tensor::from_op(ArrayD::from_shape_vec(IxDyn(&shape), y).expect("sizes agree"), op())
}

/// How [`conv2d`] computes a convolution (forward and gradients alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// Unfold (`im2col`) and one matrix product per block of images.
    Gemm,
    /// Winograd's F(2×2, 3×3): 2.25× fewer multiplies, 3×3 stride 1 only.
    Winograd,
}

/// The algorithm [`conv2d`] takes for input shape `x`, weight shape `w`,
/// stride and padding: Winograd for 3×3 stride-1 convolutions (padding ≤ 2)
/// with at least 16 input and output channels, GEMM otherwise.
/// `MORPHGRAD_CONV=gemm|winograd` (read once) forces one wherever it
/// applies, to compare the two on one machine or to test either on small
/// nets.
pub fn conv2d_algorithm(x: &[usize], w: &[usize], stride: usize, padding: usize) -> ConvAlgorithm {
    Geometry::new(x, w, stride, padding).algorithm(forced_algorithm())
}

/// `MORPHGRAD_CONV`, if set to a known algorithm.
fn forced_algorithm() -> Option<ConvAlgorithm> {
    static FORCED: std::sync::OnceLock<Option<ConvAlgorithm>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("MORPHGRAD_CONV").ok()?.as_str() {
        "gemm" => Some(ConvAlgorithm::Gemm),
        "winograd" => Some(ConvAlgorithm::Winograd),
        _ => None,
    })
}

/// Shapes of one convolution call, validated.
struct Geometry {
    n: usize,
    cout: usize,
    s: ConvShape,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Geometry {
        assert!(
            x.len() == 4 && w.len() == 4 && x[1] == w[1],
            "conv2d: input {x:?} (expects [N, C, H, W]) does not fit weight {w:?} ([cout, cin, kh, kw])"
        );
        assert!(stride >= 1, "conv2d: stride must be at least 1");
        assert!(
            x[2] + 2 * pad >= w[2] && x[3] + 2 * pad >= w[3],
            "conv2d: kernel {}x{} larger than padded input {}x{}",
            w[2],
            w[3],
            x[2] + 2 * pad,
            x[3] + 2 * pad
        );
        let s = ConvShape { cin: x[1], h: x[2], w: x[3], kh: w[2], kw: w[3], stride, pad };
        Geometry { n: x[0], cout: w[0], s }
    }

    /// The Winograd tiling, when this convolution takes that path.
    fn winograd(&self) -> Option<Tiling> {
        (self.algorithm(forced_algorithm()) == ConvAlgorithm::Winograd)
            .then(|| Tiling::new(self.s.h, self.s.w, self.s.pad))
    }

    /// Winograd where it applies — 3×3, stride 1, padding ≤ 2 (so that the
    /// input gradient is a 3×3 convolution too) — and pays (enough channels
    /// on both sides), unless `forced` says otherwise; GEMM elsewhere.
    fn algorithm(&self, forced: Option<ConvAlgorithm>) -> ConvAlgorithm {
        let s = &self.s;
        let applies = s.kh == 3 && s.kw == 3 && s.stride == 1 && s.pad <= 2;
        let pays = s.cin.min(self.cout) >= WINOGRAD_MIN_CHANNELS;
        match forced {
            Some(ConvAlgorithm::Gemm) => ConvAlgorithm::Gemm,
            Some(ConvAlgorithm::Winograd) if applies => ConvAlgorithm::Winograd,
            None if applies && pays => ConvAlgorithm::Winograd,
            _ => ConvAlgorithm::Gemm,
        }
    }

    /// Images per GEMM: enough for [`TARGET_COLS`] columns, but split so
    /// that the batch makes at least as many blocks as it has columns for
    /// ([`MIN_GROUP_COLS`] each, up to [`MAX_GROUPS`]) — deep layers have a
    /// few pixels per image, and one block would leave every core but one
    /// idle, while blocks narrower than that cost more in partial weight
    /// gradients than they gain. Depends on the shapes only, not on the
    /// thread count.
    fn images_per_block(&self) -> usize {
        let (n, p) = (self.n.max(1), self.s.pixels().max(1));
        let min_blocks = (n * p / MIN_GROUP_COLS).clamp(1, MAX_GROUPS);
        (TARGET_COLS / p).clamp(1, n.div_ceil(min_blocks))
    }
}

/// Gradients of [`conv2d`] for the inputs that need them: `[dx, dW, db]`.
pub(crate) fn conv2d_backward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    g: &ArrayD<f32>,
) -> [Option<ArrayD<f32>>; 3] {
    let geo = Geometry::new(x.shape(), weight.shape(), stride, padding);
    let (s, cout, p, n) = (geo.s, geo.cout, geo.s.pixels(), geo.n);
    let (k, in_len) = (s.taps(), s.cin * s.h * s.w);
    let g = g.as_slice().expect("std");
    let need_x = x.requires_grad();
    let need_w = weight.requires_grad();
    if let Some(t) = geo.winograd() {
        return winograd_backward(&geo, &t, x, weight, bias, g);
    }
    let nb = geo.images_per_block();
    let blocks = n.div_ceil(nb);
    let per_group = blocks.div_ceil(MAX_GROUPS.min(blocks).max(1)) * nb;
    let w = MatRef::new(weight.data(), cout, k);

    let mut gx = if need_x { vec![0.0f32; n * in_len] } else { Vec::new() };
    // One dW partial per group of images, summed below in group order.
    let group = |gi: usize, gx_group: &mut [f32]| -> Vec<f32> {
        let mut gw = vec![0.0f32; if need_w { cout * k } else { 0 }];
        let first = gi * per_group;
        let last = (first + per_group).min(n);
        for b0 in (first..last).step_by(nb) {
            let imgs = nb.min(last - b0);
            let cols = imgs * p;
            let g_blk = &g[b0 * cout * p..(b0 + imgs) * cout * p];
            let gy_len = if imgs > 1 { cout * cols } else { 0 };
            with_scratch(2 * k * cols + gy_len, |buf| {
                let (col, rest) = buf.split_at_mut(k * cols);
                let (gcol, gy_tmp) = rest.split_at_mut(k * cols);
                let gy = channel_major(g_blk, imgs, cout, p, gy_tmp);
                let gym = MatRef::new(gy, cout, cols);
                if need_w {
                    let x_blk = &x.data()[b0 * in_len..(b0 + imgs) * in_len];
                    for (i, img) in x_blk.chunks_exact(in_len).enumerate() {
                        im2col(img, &s, col, cols, i * p);
                    }
                    gemm_into(1.0, gym, MatRef::new(col, k, cols).t(), 1.0, &mut gw);
                }
                if need_x {
                    gemm_into(1.0, w.t(), gym, 0.0, gcol);
                    let off = (b0 - first) * in_len;
                    for (i, gimg) in gx_group[off..off + imgs * in_len].chunks_exact_mut(in_len).enumerate() {
                        col2im(gcol, &s, cols, i * p, gimg);
                    }
                }
            });
        }
        gw
    };
    let partials: Vec<Vec<f32>> = if need_x {
        gx.par_chunks_mut(per_group * in_len).enumerate().map(|(gi, gxg)| group(gi, gxg)).collect()
    } else {
        (0..n.div_ceil(per_group)).into_par_iter().map(|gi| group(gi, &mut [])).collect()
    };

    let dx = need_x.then(|| ArrayD::from_shape_vec(IxDyn(x.shape()), gx).expect("shape of x"));
    let dw = need_w.then(|| {
        let total = sum_in_order(partials.iter().map(Vec::as_slice), cout * k);
        ArrayD::from_shape_vec(IxDyn(weight.shape()), total).expect("shape of W")
    });
    let db = bias.filter(|b| b.requires_grad()).map(|_| bias_grad(g, n, cout, p));
    [dx, dw, db]
}

/// [`conv2d_backward`] through Winograd: the input gradient is the 3×3
/// convolution of `g` with the flipped filters (padding `2 − p`), the
/// weight gradient the adjoint of the forward transform.
fn winograd_backward(
    geo: &Geometry,
    t: &Tiling,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    g: &[f32],
) -> [Option<ArrayD<f32>>; 3] {
    let (n, cin, cout) = (geo.n, geo.s.cin, geo.cout);
    let dx = x.requires_grad().then(|| {
        let back = Tiling::new(t.hout, t.wout, 2 - t.pad);
        let filters = winograd::Filters::new(weight.data(), cout, cin, Pass::InputGrad);
        let dx = winograd::conv3x3(g, n, &back, &filters, None);
        ArrayD::from_shape_vec(IxDyn(x.shape()), dx).expect("shape of x")
    });
    let dw = weight.requires_grad().then(|| {
        let dw = winograd::conv3x3_filter_grad(x.data(), g, n, cin, cout, t);
        ArrayD::from_shape_vec(IxDyn(weight.shape()), dw).expect("shape of W")
    });
    let db = bias.filter(|b| b.requires_grad()).map(|_| bias_grad(g, n, cout, t.hout * t.wout));
    [dx, dw, db]
}

/// `db[co] = Σ g[·, co, ·]` of a `[n, cout, p]` output gradient, summed in
/// f64 plane by plane ([`moments::sum`]), planes in image order (the same
/// for any thread count).
fn bias_grad(g: &[f32], n: usize, cout: usize, p: usize) -> ArrayD<f32> {
    let sums = moments::per_channel_of(g, n, cout, p, |plane| [moments::sum(plane), 0.0]);
    ArrayD::from_shape_vec(IxDyn(&[cout]), sums.iter().map(|s| s[0] as f32).collect()).expect("cout")
}

/// The upstream gradient of `imgs` images, `[imgs][cout][p]`, as the
/// `[cout][imgs · p]` matrix the GEMMs of a block take (copied into `tmp`
/// unless there is one image, when the two layouts are the same).
fn channel_major<'a>(g: &'a [f32], imgs: usize, cout: usize, p: usize, tmp: &'a mut [f32]) -> &'a [f32] {
    if imgs == 1 {
        return g;
    }
    let cols = imgs * p;
    for i in 0..imgs {
        for co in 0..cout {
            tmp[co * cols + i * p..co * cols + (i + 1) * p]
                .copy_from_slice(&g[(i * cout + co) * p..(i * cout + co + 1) * p]);
        }
    }
    tmp
}

/// The element-wise sum of `len`-long partial results, added in the order
/// given (so that the total does not depend on the thread count).
fn sum_in_order<'a>(parts: impl Iterator<Item = &'a [f32]>, len: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; len];
    for part in parts {
        total.iter_mut().zip(part).for_each(|(t, &v)| *t += v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winograd_where_it_applies_and_pays_unless_forced() {
        use ConvAlgorithm::{Gemm, Winograd};
        let algo = |cin: usize, cout: usize, k: usize, stride: usize, pad: usize, forced| {
            Geometry::new(&[2, cin, 8, 8], &[cout, cin, k, k], stride, pad).algorithm(forced)
        };
        assert_eq!(algo(128, 128, 3, 1, 1, None), Winograd);
        assert_eq!(algo(3, 128, 3, 1, 1, None), Gemm, "few input channels");
        assert_eq!(algo(128, 8, 3, 1, 1, None), Gemm, "few output channels");
        assert_eq!(algo(3, 8, 3, 1, 1, Some(Winograd)), Winograd);
        assert_eq!(algo(128, 128, 3, 2, 1, Some(Winograd)), Gemm, "stride 2");
        assert_eq!(algo(128, 128, 5, 1, 2, Some(Winograd)), Gemm, "5×5");
        assert_eq!(algo(128, 128, 3, 1, 3, None), Gemm, "padding 3");
        assert_eq!(algo(128, 128, 3, 1, 1, Some(Gemm)), Gemm);
    }

    #[test]
    fn the_unfolded_product_is_the_direct_sum_with_and_without_bias() {
        // Shapes with one image per block and with several (small outputs),
        // strides, padding and a non-square kernel; the direct sum in f64.
        for (n, cin, cout, h, w, kh, kw, stride, pad) in
            [(3, 2, 5, 7, 6, 3, 2, 1, 1), (4, 3, 4, 32, 20, 3, 3, 1, 1), (5, 1, 3, 9, 9, 3, 3, 2, 0)]
        {
            let vals = |len: usize, seed: usize| -> Vec<f32> {
                (0..len).map(|i| ((i * 7919 + seed * 104729) % 997) as f32 / 997.0 - 0.5).collect()
            };
            let x = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[n, cin, h, w]), vals(n * cin * h * w, 1)).unwrap());
            let wt = Tensor::new(
                ArrayD::from_shape_vec(IxDyn(&[cout, cin, kh, kw]), vals(cout * cin * kh * kw, 2)).unwrap(),
            );
            let b = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[cout]), vals(cout, 3)).unwrap());
            let (ho, wo) = ((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1);
            for bias in [None, Some(&b)] {
                let y = conv2d(&x, &wt, bias, stride, pad);
                assert_eq!(y.shape(), &[n, cout, ho, wo]);
                for (i, &got) in y.data().iter().enumerate() {
                    let (img, co, oy, ox) = (i / (cout * ho * wo), i / (ho * wo) % cout, i / wo % ho, i % wo);
                    let mut want = bias.map_or(0.0, |b| b.data()[co] as f64);
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (
                                    (oy * stride + ky) as isize - pad as isize,
                                    (ox * stride + kx) as isize - pad as isize,
                                );
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let xv = x.data()[((img * cin + ci) * h + iy as usize) * w + ix as usize];
                                    want += xv as f64 * wt.data()[((co * cin + ci) * kh + ky) * kw + kx] as f64;
                                }
                            }
                        }
                    }
                    assert!((got as f64 - want).abs() < 1e-5, "{:?} at {i}: {got} vs {want}", x.shape());
                }
            }
        }
    }
}
