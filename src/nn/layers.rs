//! The linear-algebra layers: `Linear`, `Conv2d`, `BatchNorm`, `Dropout` and
//! the backbone's `ConvBlock` (conv → BN → ReLU → 2×2 max pool).
//! Initialisation follows PyTorch's defaults: weights and biases
//! `U(-1/√fan_in, 1/√fan_in)`, BatchNorm `γ = 1, β = 0`, running stats `0, 1`.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, RngExt};

use super::module::{Ctx, Entry, EntryMut, Forward, Module, visit_child, visit_child_mut};
use crate::ops::{self, BatchNormStats};
use crate::tensor::Tensor;

/// `U(-bound, bound)` samples in a new parameter of the given shape.
pub fn uniform_param(shape: &[usize], bound: f32, rng: &mut impl Rng) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound).collect();
    Tensor::param(ArrayD::from_shape_vec(IxDyn(shape), v).expect("n values"))
}

/// Fully connected layer `y = x Wᵀ + b`, `W: [out, in]`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(d_in: usize, d_out: usize, bias: bool, rng: &mut impl Rng) -> Linear {
        let bound = 1.0 / (d_in as f32).sqrt();
        let weight = uniform_param(&[d_out, d_in], bound, rng);
        let bias = bias.then(|| uniform_param(&[d_out], bound, rng));
        Linear { weight, bias }
    }

    pub fn d_in(&self) -> usize {
        self.weight.shape()[1]
    }

    pub fn d_out(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Forward for Linear {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, _: &mut Ctx) -> Tensor {
        ops::linear(x, &self.weight, self.bias.as_ref())
    }
}

impl Module for Linear {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        f("weight", Entry::Param(&self.weight));
        if let Some(b) = &self.bias {
            f("bias", Entry::Param(b));
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        f("weight", EntryMut::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", EntryMut::Param(b));
        }
    }
}

/// 2-D convolution layer, weight `[cout, cin, k, k]`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn new(cin: usize, cout: usize, kernel: usize, stride: usize, padding: usize, rng: &mut impl Rng) -> Conv2d {
        let bound = 1.0 / ((cin * kernel * kernel) as f32).sqrt();
        let weight = uniform_param(&[cout, cin, kernel, kernel], bound, rng);
        let bias = Some(uniform_param(&[cout], bound, rng));
        Conv2d { weight, bias, stride, padding }
    }
}

impl Forward for Conv2d {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, _: &mut Ctx) -> Tensor {
        ops::conv2d(x, &self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
}

impl Module for Conv2d {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        f("weight", Entry::Param(&self.weight));
        if let Some(b) = &self.bias {
            f("bias", Entry::Param(b));
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        f("weight", EntryMut::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", EntryMut::Param(b));
        }
    }
}

/// BatchNorm over channel axis 1 of `[N, C]` or `[N, C, H, W]`
/// (momentum 0.1, eps 1e-5, affine, tracking running stats).
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: ArrayD<f32>,
    pub running_var: ArrayD<f32>,
    pub num_batches_tracked: i64,
    pub momentum: f32,
    pub eps: f32,
}

impl BatchNorm {
    pub fn new(channels: usize) -> BatchNorm {
        BatchNorm {
            weight: Tensor::param(ArrayD::ones(IxDyn(&[channels]))),
            bias: Tensor::param(ArrayD::zeros(IxDyn(&[channels]))),
            running_mean: ArrayD::zeros(IxDyn(&[channels])),
            running_var: ArrayD::ones(IxDyn(&[channels])),
            num_batches_tracked: 0,
            momentum: 0.1,
            eps: 1e-5,
        }
    }

    /// `γ`, `β` and the running statistics a forward pass reads (eval) or
    /// updates (train; counted in `num_batches_tracked`).
    fn parts(&mut self, train: bool) -> (&Tensor, &Tensor, BatchNormStats<'_>) {
        let BatchNorm { weight, bias, running_mean, running_var, num_batches_tracked, momentum, eps } = self;
        if train {
            *num_batches_tracked += 1;
        }
        let stats = BatchNormStats {
            running_mean: running_mean.as_slice_mut().expect("contiguous"),
            running_var: running_var.as_slice_mut().expect("contiguous"),
            momentum: *momentum,
            eps: *eps,
        };
        (weight, bias, stats)
    }

    /// `max_pool2d(relu(self(x)), pool, pool)` as one op
    /// ([`ops::bn_relu_pool()`]): the same numbers, a fraction of the memory traffic.
    pub fn forward_relu_pool(&mut self, x: &Tensor, ctx: &mut Ctx, pool: usize) -> Tensor {
        let (gamma, beta, stats) = self.parts(ctx.train);
        ops::bn_relu_pool(x, gamma, beta, stats, ctx.train, pool, pool)
    }
}

impl Forward for BatchNorm {
    type Output = Tensor;
    /// Normalise with batch statistics (and update the running ones) in train
    /// mode, with the running statistics in eval mode.
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let (gamma, beta, stats) = self.parts(ctx.train);
        ops::batch_norm(x, gamma, beta, stats, ctx.train)
    }
}

impl Module for BatchNorm {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        f("weight", Entry::Param(&self.weight));
        f("bias", Entry::Param(&self.bias));
        f("running_mean", Entry::Buffer(&self.running_mean));
        f("running_var", Entry::Buffer(&self.running_var));
        f("num_batches_tracked", Entry::Counter(&self.num_batches_tracked));
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        f("weight", EntryMut::Param(&mut self.weight));
        f("bias", EntryMut::Param(&mut self.bias));
        f("running_mean", EntryMut::Buffer(&mut self.running_mean));
        f("running_var", EntryMut::Buffer(&mut self.running_var));
        f("num_batches_tracked", EntryMut::Counter(&mut self.num_batches_tracked));
    }
}

/// Dropout with probability `p` in train mode, identity in eval mode.
pub struct Dropout {
    pub p: f32,
}

impl Forward for Dropout {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        if ctx.train && self.p > 0.0 { ops::dropout(x, self.p, &mut ctx.rng) } else { x.clone() }
    }
}

/// `Conv2d 3×3 pad 1 → BatchNorm2d → ReLU → MaxPool2d(2)`: one block of the
/// paper's backbones.
pub struct ConvBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBlock {
    pub fn new(cin: usize, cout: usize, rng: &mut impl Rng) -> ConvBlock {
        ConvBlock { conv: Conv2d::new(cin, cout, 3, 1, 1, rng), bn: BatchNorm::new(cout) }
    }
}

impl Forward for ConvBlock {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let y = self.conv.forward(x, ctx);
        self.bn.forward_relu_pool(&y, ctx, 2)
    }
}

impl Module for ConvBlock {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        visit_child("conv", &self.conv, f);
        visit_child("bn", &self.bn, f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        visit_child_mut("conv", &mut self.conv, f);
        visit_child_mut("bn", &mut self.bn, f);
    }
}
