//! The tail of a convolution block, `max_pool2d(relu(batch_norm(x)))`, as
//! one op with the results of the three, bit for bit.
//!
//! Run one after the other, the three ops stream the full-size tensor
//! through memory again and again: BatchNorm reads `x` for its statistics,
//! reads it again and writes its output; ReLU reads that and writes its own;
//! the pool reads that. Backward is worse: the pool scatters into a
//! zero-filled full-size gradient, ReLU reads it and its output and writes
//! another, BatchNorm reads that twice with `x`. Fused, the full-size
//! tensors are only `x` (read twice forward, twice backward) and `dx`
//! (written once); every other full-size plane lives one at a time in a
//! per-thread buffer that stays in cache:
//!
//! - **forward**: per channel statistics as [`batch_norm`](super::batch_norm)
//!   takes them, then per plane `relu(x·α + β')` into the buffer and the
//!   pool's kernel on the buffer. Same values, same winners.
//! - **backward**: each plane's full-size gradient of the ReLU's input — the
//!   pooled gradient at each window's winner where the pooled value is
//!   positive, 0 elsewhere, exactly what the pool's scatter and ReLU's mask
//!   give — rebuilt in the buffer, once for BatchNorm's two sums and once for
//!   `dx`, both with BatchNorm's own kernels.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::norm::{Affine, BatchNormStats, GradCoefs};
use super::pool::{Window, pool_planes};
use crate::autograd::{Op, is_recording};
use crate::kernels::{PAR_MIN, fresh, moments, planes_per_run, with_scratch};
use crate::ops::elementwise::relu_value;
use crate::tensor::Tensor;

/// `max_pool2d(batch_norm(x, ..).relu(), kernel, stride)` for `x [N, C, H, W]`,
/// with the statistics, running-statistics update and gradients of the three
/// ops in sequence.
pub fn bn_relu_pool(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: BatchNormStats<'_>,
    train: bool,
    kernel: usize,
    stride: usize,
) -> Tensor {
    let sh = x.shape();
    let win = Window::new(sh, kernel, stride);
    let Affine { mean, inv_std, alpha, shift } = Affine::of(x, gamma, beta, stats, train);
    let (c, plane) = (sh[1], sh[2] * sh[3]);
    let src = x.data();
    // SAFETY: `pool_run` writes every output and winner of its planes.
    let (y, arg) = unsafe {
        pool_planes(sh[0] * c, &win, src.len() >= PAR_MIN, |run, dst, args| {
            with_scratch(run.len() * plane, |buf| {
                let planes = buf.chunks_exact_mut(plane).zip(src[run.start * plane..].chunks_exact(plane));
                for (p, (o, x)) in run.zip(planes) {
                    let (a, b) = (alpha[p % c], shift[p % c]);
                    for (o, &v) in o.iter_mut().zip(x) {
                        *o = relu_value(v * a + b);
                    }
                }
                win.pool_run(buf, dst, args);
            })
        })
    };
    let out = ArrayD::from_shape_vec(IxDyn(&[sh[0], c, win.ho, win.wo]), y).expect("sizes agree");
    let keep = is_recording(&[x, gamma, beta]);
    let (mean, inv_std, argmax) = if keep { (mean, inv_std, arg) } else { Default::default() };
    Tensor::from_op(
        out,
        Op::BnReluPool {
            x: x.clone(),
            gamma: gamma.clone(),
            beta: beta.clone(),
            mean,
            inv_std,
            argmax,
            window: win,
            train,
        },
    )
}

/// `[dx, dγ, dβ]` of [`bn_relu_pool`] given the gradient `g` of its output
/// `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_relu_pool_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &[f32],
    inv_std: &[f32],
    train: bool,
    argmax: &[u32],
    win: &Window,
    out: &ArrayD<f32>,
    g: &ArrayD<f32>,
) -> [ArrayD<f32>; 3] {
    let sh = x.shape();
    let (n, c, plane) = (sh[0], sh[1], sh[2] * sh[3]);
    let pooled = out.shape()[2] * out.shape()[3];
    let (xd, gd, od) = (x.data(), g.as_slice().expect("std"), out.as_slice().expect("std"));
    let parallel = xd.len() >= PAR_MIN;
    // The gradient with respect to the ReLU's input of the `buf.len() / plane`
    // planes from plane `first` on, into `buf`.
    let dense = |first: usize, buf: &mut [f32]| {
        let r = first * pooled..first * pooled + buf.len() / plane * pooled;
        win.relu_grad_run(&gd[r.clone()], &od[r.clone()], &argmax[r], buf);
    };
    let sums = moments::per_channel(n, c, plane, parallel, |first, out| {
        with_scratch(out.len() * plane, |buf| {
            dense(first, buf);
            for (j, (o, g)) in out.iter_mut().zip(buf.chunks_exact(plane)).enumerate() {
                let p = first + j;
                *o = moments::grad_sums(g, &xd[p * plane..(p + 1) * plane], mean[p % c]);
            }
        })
    });
    let k = GradCoefs::new(&sums, gamma.data(), mean, inv_std, train, n * plane);
    let run = planes_per_run(plane);
    let body = |r: usize, dxr: &mut [MaybeUninit<f32>]| {
        let first = r * run;
        with_scratch(dxr.len(), |buf| {
            dense(first, buf);
            for (j, (d, g)) in dxr.chunks_exact_mut(plane).zip(buf.chunks_exact(plane)).enumerate() {
                let p = first + j;
                k.dx_plane(p % c, d, g, &xd[p * plane..(p + 1) * plane]);
            }
        })
    };
    // SAFETY: the chunks of `run` planes cover `dx` (as long as `x`), and
    // `dx_plane` writes every value of each plane.
    let dx = unsafe {
        fresh(xd.len(), |dx| {
            if plane > 0 {
                if parallel {
                    dx.par_chunks_mut(run * plane).enumerate().for_each(|(r, d)| body(r, d));
                } else {
                    dx.chunks_mut(run * plane).enumerate().for_each(|(r, d)| body(r, d));
                }
            }
        })
    };
    [
        ArrayD::from_shape_vec(IxDyn(sh), dx).expect("shape of x"),
        ArrayD::from_shape_vec(IxDyn(&[c]), k.dgamma).expect("c"),
        ArrayD::from_shape_vec(IxDyn(&[c]), k.dbeta).expect("c"),
    ]
}
