//! `MaxPool2d` (no padding, floor mode) with the winner of every window saved
//! in the forward pass, so backward is one scatter.
//!
//! Winner rule (PyTorch's): windows are scanned row-major and a value must be
//! strictly greater to take over, so the first maximum wins exact ties; a
//! NaN wins over numbers. Rows/columns left over by the floor get no gradient.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::autograd::{Op, is_recording};
use crate::kernels::pool2x2::{self, beats};
use crate::kernels::{PAR_MIN, fresh};
use crate::tensor::Tensor;

/// Max over `kernel × kernel` windows taken every `stride` pixels of `x [N, C, H, W]`.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Tensor {
    let sh = x.shape();
    let win = Window::new(sh, kernel, stride);
    let plane = sh[2] * sh[3];
    let src = x.data();
    // SAFETY: `pool_plane` writes every output and winner of its plane.
    let (y, arg) = unsafe {
        pool_planes(sh[0] * sh[1], &win, src.len() >= PAR_MIN, |p, dst, args| {
            win.pool_plane(&src[p * plane..(p + 1) * plane], dst, args)
        })
    };
    let out = ArrayD::from_shape_vec(IxDyn(&[sh[0], sh[1], win.ho, win.wo]), y).expect("sizes agree");
    let argmax = if is_recording(&[x]) { arg } else { Vec::new() };
    Tensor::from_op(out, Op::MaxPool2d { x: x.clone(), argmax })
}

/// The pooled values and winners of `planes` planes, `ho·wo` each, from
/// `fill(p, dst, args)` for every plane `p`; planes in parallel when
/// `parallel`.
///
/// # Safety
/// `fill` must write every element of the `dst` and `args` it is handed.
pub(crate) unsafe fn pool_planes(
    planes: usize,
    win: &Window,
    parallel: bool,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], &mut [MaybeUninit<u32>]) + Sync,
) -> (Vec<f32>, Vec<u32>) {
    let out = win.ho * win.wo; // ≥ 1: a plane holds at least one window
    let mut arg = Vec::new();
    // SAFETY: the chunks of `out` values cover both buffers, one per plane,
    // and the caller's `fill` writes all of each.
    let y = unsafe {
        fresh(planes * out, |y| {
            arg = fresh(planes * out, |arg| {
                if parallel {
                    y.par_chunks_mut(out)
                        .zip(arg.par_chunks_mut(out))
                        .enumerate()
                        .for_each(|(p, (d, a))| fill(p, d, a));
                } else {
                    y.chunks_mut(out).zip(arg.chunks_mut(out)).enumerate().for_each(|(p, (d, a))| fill(p, d, a));
                }
            })
        })
    };
    (y, arg)
}

/// The pooling windows of one `[H, W]` plane: `kernel × kernel` every
/// `stride` pixels, `ho × wo` of them (floor mode).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    kernel: usize,
    stride: usize,
    h: usize,
    w: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Window {
    /// The windows of input shape `sh = [N, C, H, W]`; panics with the shape
    /// if it is not 4-D or smaller than one window.
    pub(crate) fn new(sh: &[usize], kernel: usize, stride: usize) -> Window {
        assert!(
            sh.len() == 4 && kernel >= 1 && stride >= 1 && sh[2] >= kernel && sh[3] >= kernel,
            "max_pool2d(kernel {kernel}, stride {stride}) of input {sh:?} (expects [N, C, H, W] with H, W >= kernel)"
        );
        let (h, w) = (sh[2], sh[3]);
        Window { kernel, stride, h, w, ho: (h - kernel) / stride + 1, wo: (w - kernel) / stride + 1 }
    }

    /// Every window's maximum of `src` (one plane) into `dst`, and its flat
    /// index within the plane into `args`; writes all `ho·wo` of both.
    pub(crate) fn pool_plane(&self, src: &[f32], dst: &mut [MaybeUninit<f32>], args: &mut [MaybeUninit<u32>]) {
        let Window { kernel, stride, w, ho, wo, .. } = *self;
        if kernel == 2 && stride == 2 {
            pool2x2::pool(src, w, ho, wo, dst, args)
        } else {
            pool_any(src, w, kernel, stride, ho, wo, dst, args)
        }
    }

    /// The gradient of one plane with respect to the input of a ReLU whose
    /// output was pooled into `out` with winners `args`: each window's
    /// gradient `g` on its winner where the pooled value is positive, 0
    /// elsewhere, summed where windows overlap — what the pool's scatter into
    /// a zero-filled plane and ReLU's mask give. Writes all of `dx` (`H·W`).
    pub(crate) fn relu_grad_plane(&self, g: &[f32], out: &[f32], args: &[u32], dx: &mut [f32]) {
        let Window { kernel, stride, h, w, ho, wo } = *self;
        if kernel == 2 && stride == 2 {
            pool2x2::unpool_relu(g, out, args, w, h, ho, wo, dx)
        } else {
            dx.fill(0.0);
            for ((&gv, &ov), &a) in g.iter().zip(out).zip(args) {
                if ov > 0.0 {
                    dx[a as usize] += gv;
                }
            }
        }
    }
}

/// Any window size: windows scanned row-major.
#[allow(clippy::too_many_arguments)]
fn pool_any(
    src: &[f32],
    w: usize,
    kernel: usize,
    stride: usize,
    ho: usize,
    wo: usize,
    dst: &mut [MaybeUninit<f32>],
    args: &mut [MaybeUninit<u32>],
) {
    for oh in 0..ho {
        for ow in 0..wo {
            let first = oh * stride * w + ow * stride;
            let (mut best, mut at) = (src[first], first);
            for ki in 0..kernel {
                let row = (oh * stride + ki) * w + ow * stride;
                for (kj, &v) in src[row..row + kernel].iter().enumerate() {
                    if beats(v, best) {
                        best = v;
                        at = row + kj;
                    }
                }
            }
            dst[oh * wo + ow].write(best);
            args[oh * wo + ow].write(at as u32);
        }
    }
}

/// Scatter every output gradient onto its window's winner.
pub(crate) fn max_pool2d_backward(x_shape: &[usize], argmax: &[u32], g: &ArrayD<f32>) -> ArrayD<f32> {
    let plane_in = x_shape[2] * x_shape[3];
    let plane_out = g.shape()[2] * g.shape()[3];
    let mut gx = vec![0.0f32; x_shape.iter().product()];
    let g = g.as_slice().expect("std");
    let scatter = |(gxp, (gp, ap)): (&mut [f32], (&[f32], &[u32]))| {
        for (&gv, &a) in gp.iter().zip(ap) {
            gxp[a as usize] += gv;
        }
    };
    if gx.len() >= PAR_MIN {
        gx.par_chunks_mut(plane_in).zip(g.par_chunks(plane_out).zip(argmax.par_chunks(plane_out))).for_each(scatter);
    } else {
        gx.chunks_mut(plane_in).zip(g.chunks(plane_out).zip(argmax.chunks(plane_out))).for_each(scatter);
    }
    ArrayD::from_shape_vec(IxDyn(x_shape), gx).expect("shape of x")
}
