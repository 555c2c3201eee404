//! `MaxPool2d` (no padding, floor mode) with the winner of every window saved
//! in the forward pass, so backward is one scatter.
//!
//! Winner rule (PyTorch's): windows are scanned row-major and a value must be
//! strictly greater to take over, so the first maximum wins exact ties; a
//! NaN wins over numbers. Rows/columns left over by the floor get no gradient.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::autograd::{Op, is_recording};
use crate::kernels::PAR_MIN;
use crate::tensor::Tensor;

/// Max over `kernel × kernel` windows taken every `stride` pixels of `x [N, C, H, W]`.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Tensor {
    let sh = x.shape();
    assert!(
        sh.len() == 4 && kernel >= 1 && stride >= 1 && sh[2] >= kernel && sh[3] >= kernel,
        "max_pool2d(kernel {kernel}, stride {stride}) of input {sh:?} (expects [N, C, H, W] with H, W >= kernel)"
    );
    let (h, w) = (sh[2], sh[3]);
    let (ho, wo) = ((h - kernel) / stride + 1, (w - kernel) / stride + 1);
    let planes = sh[0] * sh[1];
    let mut y = vec![0.0f32; planes * ho * wo];
    let mut arg = vec![0u32; planes * ho * wo];
    let pool_plane = |(src, (dst, args)): (&[f32], (&mut [f32], &mut [u32]))| {
        for oh in 0..ho {
            for ow in 0..wo {
                let (mut best, mut at) = (f32::NEG_INFINITY, usize::MAX);
                for ki in 0..kernel {
                    let row = (oh * stride + ki) * w + ow * stride;
                    for (kj, &v) in src[row..row + kernel].iter().enumerate() {
                        if at == usize::MAX || v > best || (v.is_nan() && !best.is_nan()) {
                            best = v;
                            at = row + kj;
                        }
                    }
                }
                dst[oh * wo + ow] = best;
                args[oh * wo + ow] = at as u32;
            }
        }
    };
    let src = x.data();
    if src.len() >= PAR_MIN {
        src.par_chunks(h * w).zip(y.par_chunks_mut(ho * wo).zip(arg.par_chunks_mut(ho * wo))).for_each(pool_plane);
    } else {
        src.chunks(h * w).zip(y.chunks_mut(ho * wo).zip(arg.chunks_mut(ho * wo))).for_each(pool_plane);
    }
    let out = ArrayD::from_shape_vec(IxDyn(&[sh[0], sh[1], ho, wo]), y).expect("sizes agree");
    let argmax = if is_recording(&[x]) { arg } else { Vec::new() };
    Tensor::from_op(out, Op::MaxPool2d { x: x.clone(), argmax })
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
