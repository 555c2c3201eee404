//! Batch normalisation over `[N, C]` or `[N, C, *]` (PyTorch's BatchNorm1d/2d).
//!
//! Train mode normalises with the batch statistics of each channel — mean
//! and *biased* variance over the `M` values of that channel — and updates
//! the running estimates with momentum `m`:
//! `rm ← (1-m) rm + m·mean`, `rv ← (1-m) rv + m·var·M/(M-1)` (unbiased).
//! Eval mode uses the running estimates. Either way
//! `y = x·α + β'` with `α = γ/√(var+ε)`, `β' = β - mean·α`.
//! Sums run in f64 ([`crate::kernels::moments`]), in a fixed order.

use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use crate::autograd::{Op, is_recording};
use crate::kernels::{PAR_MIN, fresh, moments};
use crate::tensor::Tensor;

/// Running statistics and hyper-parameters of one BatchNorm layer.
pub struct BatchNormStats<'a> {
    pub running_mean: &'a mut [f32],
    pub running_var: &'a mut [f32],
    pub momentum: f32,
    pub eps: f32,
}

/// Batch-normalise `x` per channel (axis 1); see the module docs.
pub fn batch_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, stats: BatchNormStats<'_>, train: bool) -> Tensor {
    let sh = x.shape();
    let Affine { mean, inv_std, alpha, shift } = Affine::of(x, gamma, beta, stats, train);
    let (c, s) = (sh[1], sh[2..].iter().product::<usize>());
    // SAFETY: `per_sample` hands out every sample of `y` and the closure
    // writes each of its `c` planes in full.
    let y = unsafe {
        fresh(x.numel(), |y| {
            per_sample(y, x.data(), c * s, |ys, xs| {
                for ch in 0..c {
                    let (a, b) = (alpha[ch], shift[ch]);
                    for (o, &v) in ys[ch * s..(ch + 1) * s].iter_mut().zip(&xs[ch * s..(ch + 1) * s]) {
                        o.write(v * a + b);
                    }
                }
            })
        })
    };
    let out = ArrayD::from_shape_vec(IxDyn(sh), y).expect("same shape");
    let keep = is_recording(&[x, gamma, beta]);
    Tensor::from_op(
        out,
        Op::BatchNorm {
            x: x.clone(),
            gamma: gamma.clone(),
            beta: beta.clone(),
            mean: if keep { mean } else { Vec::new() },
            inv_std: if keep { inv_std } else { Vec::new() },
            train,
        },
    )
}

/// What one call normalises with, per channel: `y = x·alpha + shift`, from
/// the batch's `mean` and `inv_std = 1/√(var+ε)` (train) or the running ones (eval).
pub(crate) struct Affine {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    pub alpha: Vec<f32>,
    pub shift: Vec<f32>,
}

impl Affine {
    /// Check the shapes, take the statistics and, in train mode, update the
    /// running ones.
    pub(crate) fn of(x: &Tensor, gamma: &Tensor, beta: &Tensor, stats: BatchNormStats<'_>, train: bool) -> Affine {
        let sh = x.shape();
        assert!(sh.len() >= 2, "batch_norm expects [N, C, ...], got {sh:?}");
        let (n, c) = (sh[0], sh[1]);
        let s: usize = sh[2..].iter().product();
        assert!(
            gamma.shape() == [c]
                && beta.shape() == [c]
                && stats.running_mean.len() == c
                && stats.running_var.len() == c,
            "batch_norm: {c} channels in input {sh:?} but weight {:?}, bias {:?}, running stats [{}], [{}]",
            gamma.shape(),
            beta.shape(),
            stats.running_mean.len(),
            stats.running_var.len()
        );
        let m = n * s;
        let (mean, inv_std) = if train {
            assert!(m > 1, "batch_norm in train mode needs more than 1 value per channel, got input {sh:?}");
            let sums = moments::per_channel_of(x.data(), n, c, s, moments::sum_and_squares);
            let mut mean = vec![0.0f32; c];
            let mut inv_std = vec![0.0f32; c];
            for ch in 0..c {
                let mu = sums[ch][0] / m as f64;
                let var = (sums[ch][1] / m as f64 - mu * mu).max(0.0);
                mean[ch] = mu as f32;
                inv_std[ch] = (1.0 / (var + stats.eps as f64).sqrt()) as f32;
                let mom = stats.momentum;
                stats.running_mean[ch] = (1.0 - mom) * stats.running_mean[ch] + mom * mu as f32;
                let unbiased = var * m as f64 / (m - 1) as f64;
                stats.running_var[ch] = (1.0 - mom) * stats.running_var[ch] + mom * unbiased as f32;
            }
            (mean, inv_std)
        } else {
            let inv_std = stats.running_var.iter().map(|&v| 1.0 / (v + stats.eps).sqrt()).collect();
            (stats.running_mean.to_vec(), inv_std)
        };
        let alpha: Vec<f32> = (0..c).map(|ch| gamma.data()[ch] * inv_std[ch]).collect();
        let shift = (0..c).map(|ch| beta.data()[ch] - mean[ch] * alpha[ch]).collect();
        Affine { mean, inv_std, alpha, shift }
    }
}

/// `f(out_sample, in_sample)` for every batch sample of `len` floats.
fn per_sample<O: Send>(out: &mut [O], input: &[f32], len: usize, f: impl Fn(&mut [O], &[f32]) + Sync) {
    if len == 0 {
        return;
    }
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(len).zip(input.par_chunks(len)).for_each(|(o, i)| f(o, i));
    } else {
        out.chunks_mut(len).zip(input.chunks(len)).for_each(|(o, i)| f(o, i));
    }
}

/// `[dx, dγ, dβ]`. With `x̂ = (x - mean)·inv_std`: `dβ = Σ g`, `dγ = Σ g·x̂`;
/// in train mode `dx = γ·inv_std·(g - dβ/M - x̂·dγ/M)` (the batch statistics
/// depend on x), in eval mode `dx = γ·inv_std·g`.
pub(crate) fn batch_norm_backward(
    x: &Tensor,
    gamma: &Tensor,
    mean: &[f32],
    inv_std: &[f32],
    train: bool,
    g: &ArrayD<f32>,
) -> [ArrayD<f32>; 3] {
    let sh = x.shape();
    let (n, c) = (sh[0], sh[1]);
    let s: usize = sh[2..].iter().product();
    let (xd, gd) = (x.data(), g.as_slice().expect("std"));
    let sums = moments::per_channel(n, c, s, xd.len() >= PAR_MIN, |first, out| {
        for (j, o) in out.iter_mut().enumerate() {
            let r = (first + j) * s..(first + j + 1) * s;
            *o = moments::grad_sums(&gd[r.clone()], &xd[r], mean[(first + j) % c]);
        }
    });
    let k = GradCoefs::new(&sums, gamma.data(), mean, inv_std, train, n * s);
    let len = c * s;
    let body = |dxs: &mut [MaybeUninit<f32>], gs: &[f32], xs: &[f32]| {
        for ch in 0..c {
            let r = ch * s..(ch + 1) * s;
            k.dx_plane(ch, &mut dxs[r.clone()], &gs[r.clone()], &xs[r]);
        }
    };
    // SAFETY: the chunks of `len = c·s` values cover `dx` (as long as `x`),
    // and `body` writes each of a chunk's `c` planes in full.
    let dx = unsafe {
        fresh(xd.len(), |dx| {
            if len > 0 {
                if xd.len() >= PAR_MIN {
                    dx.par_chunks_mut(len)
                        .zip(gd.par_chunks(len).zip(xd.par_chunks(len)))
                        .for_each(|(d, (g, x))| body(d, g, x));
                } else {
                    dx.chunks_mut(len).zip(gd.chunks(len).zip(xd.chunks(len))).for_each(|(d, (g, x))| body(d, g, x));
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

/// BatchNorm's gradient, per channel, from the sums `[Σ g, Σ g·(x - mean)]`
/// over the channel's `M` values.
pub(crate) struct GradCoefs {
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
    mean: Vec<f32>,
    /// `dβ/M` in train mode, 0 in eval mode.
    mean_g: Vec<f32>,
    /// `dγ·inv_std/M` in train mode, 0 in eval mode.
    proj: Vec<f32>,
    /// `γ·inv_std`.
    scale: Vec<f32>,
}

impl GradCoefs {
    pub(crate) fn new(
        sums: &[[f64; 2]],
        gamma: &[f32],
        mean: &[f32],
        inv_std: &[f32],
        train: bool,
        m: usize,
    ) -> GradCoefs {
        let c = sums.len();
        let m = m as f64;
        let dbeta = sums.iter().map(|s| s[0] as f32).collect();
        let dgamma = sums.iter().zip(inv_std).map(|(s, &is)| (s[1] * is as f64) as f32).collect();
        let scale = (0..c).map(|ch| gamma[ch] * inv_std[ch]).collect();
        let (mean_g, proj) = if train {
            (0..c)
                .map(|ch| {
                    let is = inv_std[ch] as f64;
                    ((sums[ch][0] / m) as f32, (sums[ch][1] * is * is / m) as f32)
                })
                .unzip()
        } else {
            (vec![0.0; c], vec![0.0; c])
        };
        GradCoefs { dgamma, dbeta, mean: mean.to_vec(), mean_g, proj, scale }
    }

    /// `dx` of one plane of channel `ch` from its gradient `g` and input `x`.
    #[inline]
    pub(crate) fn dx_plane(&self, ch: usize, dx: &mut [MaybeUninit<f32>], g: &[f32], x: &[f32]) {
        let (mu, mg, pj, sc) = (self.mean[ch], self.mean_g[ch], self.proj[ch], self.scale[ch]);
        for ((o, &gv), &xv) in dx.iter_mut().zip(g).zip(x) {
            o.write((gv - mg - (xv - mu) * pj) * sc);
        }
    }
}
