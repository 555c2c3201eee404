//! `MaxPool2d` (no padding, floor mode) with the winner of every window saved
//! in the forward pass, so backward is one scatter.
//!
//! Winner rule (PyTorch's): windows are scanned row-major and a value must be
//! strictly greater to take over, so the first maximum wins exact ties; a
//! NaN wins over numbers. Rows/columns left over by the floor get no gradient.

use std::mem::MaybeUninit;
use std::ops::Range;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::autograd::{Op, is_recording};
use crate::kernels::pool2x2::{self, beats};
use crate::kernels::{PAR_MIN, fresh, planes_per_run};
use crate::tensor::Tensor;

/// Max over `kernel × kernel` windows taken every `stride` pixels of `x [N, C, H, W]`.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Tensor {
    let sh = x.shape();
    let win = Window::new(sh, kernel, stride);
    let plane = sh[2] * sh[3];
    let src = x.data();
    // SAFETY: `pool_run` writes every output and winner of its planes.
    let (y, arg) = unsafe {
        pool_planes(sh[0] * sh[1], &win, src.len() >= PAR_MIN, |run, dst, args| {
            win.pool_run(&src[run.start * plane..run.end * plane], dst, args)
        })
    };
    let out = ArrayD::from_shape_vec(IxDyn(&[sh[0], sh[1], win.ho, win.wo]), y).expect("sizes agree");
    let argmax = if is_recording(&[x]) { arg } else { Vec::new() };
    Tensor::from_op(out, Op::MaxPool2d { x: x.clone(), argmax })
}

/// The pooled values and winners of `planes` planes, `ho·wo` each, from
/// `fill(run, dst, args)` for runs of [`Window::run`] consecutive planes
/// (the last may be shorter), `run` their indices; runs in parallel when
/// `parallel`.
///
/// # Safety
/// `fill` must write every element of the `dst` and `args` it is handed.
pub(crate) unsafe fn pool_planes(
    planes: usize,
    win: &Window,
    parallel: bool,
    fill: impl Fn(Range<usize>, &mut [MaybeUninit<f32>], &mut [MaybeUninit<u32>]) + Sync,
) -> (Vec<f32>, Vec<u32>) {
    let (run, out) = (win.run(), win.outputs());
    let mut arg = Vec::new();
    // SAFETY: the chunks of `run · out` values cover both buffers, and the
    // caller's `fill` writes all of each.
    let y = unsafe {
        fresh(planes * out, |y| {
            arg = fresh(planes * out, |arg| {
                if parallel {
                    y.par_chunks_mut(run * out)
                        .zip(arg.par_chunks_mut(run * out))
                        .enumerate()
                        .for_each(|(r, (d, a))| fill(r * run..r * run + d.len() / out, d, a));
                } else {
                    y.chunks_mut(run * out)
                        .zip(arg.chunks_mut(run * out))
                        .enumerate()
                        .for_each(|(r, (d, a))| fill(r * run..r * run + d.len() / out, d, a));
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

    /// Windows (outputs) per plane, at least 1.
    pub(crate) fn outputs(&self) -> usize {
        self.ho * self.wo
    }

    /// Planes per run of work ([`planes_per_run`]).
    pub(crate) fn run(&self) -> usize {
        planes_per_run(self.h * self.w)
    }

    /// Every window's maximum of `src` (a run of whole planes) into `dst`,
    /// and its flat index within its plane into `args`; writes all of both.
    pub(crate) fn pool_run(&self, src: &[f32], dst: &mut [MaybeUninit<f32>], args: &mut [MaybeUninit<u32>]) {
        let Window { kernel, stride, h, w, ho, wo } = *self;
        if kernel == 2 && stride == 2 {
            pool2x2::pool(src, h, w, dst, args)
        } else {
            let windows = dst.chunks_exact_mut(ho * wo).zip(args.chunks_exact_mut(ho * wo));
            for (src, (d, a)) in src.chunks_exact(h * w).zip(windows) {
                pool_any(src, w, kernel, stride, ho, wo, d, a);
            }
        }
    }

    /// The gradient of a run of whole planes with respect to the input of a
    /// ReLU whose output was pooled into `out` with winners `args`: each
    /// window's gradient `g` on its winner where the pooled value is
    /// positive, 0 elsewhere, summed where windows overlap — what the pool's
    /// scatter into zero-filled planes and ReLU's mask give. Writes all of
    /// `dx`.
    pub(crate) fn relu_grad_run(&self, g: &[f32], out: &[f32], args: &[u32], dx: &mut [f32]) {
        let Window { kernel, stride, h, w, .. } = *self;
        if kernel == 2 && stride == 2 {
            pool2x2::unpool_relu(g, out, args, h, w, dx)
        } else {
            dx.fill(0.0);
            let n = self.outputs();
            let windows = g.chunks_exact(n).zip(out.chunks_exact(n)).zip(args.chunks_exact(n));
            for (dxp, ((g, out), args)) in dx.chunks_exact_mut(h * w).zip(windows) {
                for ((&gv, &ov), &a) in g.iter().zip(out).zip(args) {
                    if ov > 0.0 {
                        dxp[a as usize] += gv;
                    }
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
