//! The morphological layers: dense [`MaxPlus`], explicitly sparse
//! [`SparseMaxPlus`] (the paper's Sparse-Morph), and [`Maxout`].

use std::sync::Arc;

use anyhow::{Result, bail};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

use super::layers::{BatchNorm, Linear};
use super::module::{Ctx, Entry, EntryMut, Forward, Module, visit_child, visit_child_mut};
use crate::kernels::maxplus::sparse::Csr;
use crate::ops;
use crate::tensor::Tensor;

/// Weights at or below this value count as inactive when a dense matrix is
/// read (the reference PyTorch code stores inactive weights as `w - 1e9`).
pub const INACTIVE_BELOW: f32 = -1e8;

fn normal(shape: &[usize], rng: &mut impl Rng) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.sample::<f32, _>(StandardNormal))
}

/// Dense max-plus layer `y[n,j] = max(b[j], max_i x[n,i] + W[j,i])`,
/// initialised `W, b ~ N(0, 1)`. Weights may be `-∞` (inactive, e.g. pruned).
pub struct MaxPlus {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl MaxPlus {
    pub fn new(n_in: usize, n_out: usize, bias: bool, rng: &mut impl Rng) -> MaxPlus {
        let weight = Tensor::param(normal(&[n_out, n_in], rng));
        let bias = bias.then(|| Tensor::param(normal(&[n_out], rng)));
        MaxPlus { weight, bias }
    }
}

impl Forward for MaxPlus {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, _: &mut Ctx) -> Tensor {
        ops::maxplus(x, &self.weight, self.bias.as_ref())
    }
}

impl Module for MaxPlus {
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

/// A weight matrix that stores only its active entries: the pattern (CSR)
/// and one learnable value per entry. Everything else is `-∞`.
#[derive(Clone)]
pub struct SparseWeight {
    pub pattern: Arc<Csr>,
    /// `[nnz]`, in pattern order.
    pub values: Tensor,
}

impl SparseWeight {
    /// The active entries of a dense `[out, in]` matrix: finite values above
    /// [`INACTIVE_BELOW`].
    pub fn from_dense(dense: &ArrayD<f32>) -> Result<SparseWeight> {
        if dense.ndim() != 2 {
            bail!("a sparse max-plus weight must be [out, in], got {:?}", dense.shape());
        }
        let (n_out, n_in) = (dense.shape()[0], dense.shape()[1]);
        let active = |v: f32| v.is_finite() && v > INACTIVE_BELOW;
        let pattern = Csr::from_fn(n_out, n_in, |j, i| active(dense[[j, i]]));
        let values: Vec<f32> = dense.iter().copied().filter(|&v| active(v)).collect();
        Ok(SparseWeight {
            values: Tensor::param(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values)?),
            pattern: Arc::new(pattern),
        })
    }

    /// The dense `[out, in]` matrix, `fill` at inactive positions.
    pub fn to_dense(&self, fill: f32) -> ArrayD<f32> {
        let d = self.pattern.to_dense(self.values.data(), fill);
        ArrayD::from_shape_vec(IxDyn(&[self.pattern.n_out, self.pattern.n_in]), d).expect("out*in")
    }

    /// Scatter a gradient of the values into a dense `[out, in]` matrix (zeros elsewhere).
    pub fn dense_grad(&self, grad_values: &ArrayD<f32>) -> ArrayD<f32> {
        let d = self.pattern.to_dense(grad_values.as_slice().expect("std"), 0.0);
        ArrayD::from_shape_vec(IxDyn(&[self.pattern.n_out, self.pattern.n_in]), d).expect("out*in")
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.pattern.n_out, self.pattern.n_in]
    }
}

/// Max-plus layer with an explicitly sparse weight — the paper's
/// Sparse-Morph layer. Its cost per example is the number of active weights.
pub struct SparseMaxPlus {
    pub weight: SparseWeight,
    pub bias: Tensor,
}

impl SparseMaxPlus {
    /// Sparse initialisation with budget `k`: each of the `n_in·n_out`
    /// weights is active with probability `k / (n_in·n_out)` (so about `k`
    /// are); active weights and all biases are `N(0, 1)`. A neuron may end up
    /// with no active input; it then outputs its bias.
    pub fn new(n_in: usize, n_out: usize, k: usize, rng: &mut impl Rng) -> SparseMaxPlus {
        let p = k as f64 / (n_in * n_out) as f64;
        let pattern = Csr::from_fn(n_out, n_in, |_, _| rng.random::<f64>() < p);
        let values = normal(&[pattern.nnz()], rng);
        let bias = Tensor::param(normal(&[n_out], rng));
        SparseMaxPlus { weight: SparseWeight { pattern: Arc::new(pattern), values: Tensor::param(values) }, bias }
    }
}

impl Forward for SparseMaxPlus {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, _: &mut Ctx) -> Tensor {
        ops::sparse_maxplus(x, &self.weight.pattern, &self.weight.values, &self.bias)
    }
}

impl Module for SparseMaxPlus {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        f("weight", Entry::Sparse(&self.weight));
        f("bias", Entry::Param(&self.bias));
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        f("weight", EntryMut::Sparse(&mut self.weight));
        f("bias", EntryMut::Param(&mut self.bias));
    }
}

/// Maxout: `p` independent `Linear(in, out)` branches, each followed by its
/// own BatchNorm1d, and the elementwise max over branches (the first branch
/// wins exact ties). Parameter names: `branches.{k}.linear.*`, `branches.{k}.bn.*`.
pub struct Maxout {
    pub branches: Vec<(Linear, BatchNorm)>,
}

impl Maxout {
    pub fn new(d_in: usize, d_out: usize, pool: usize, rng: &mut impl Rng) -> Maxout {
        Maxout { branches: (0..pool).map(|_| (Linear::new(d_in, d_out, true, rng), BatchNorm::new(d_out))).collect() }
    }
}

impl Forward for Maxout {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        let mut outs = Vec::with_capacity(self.branches.len());
        for (lin, bn) in &mut self.branches {
            let y = lin.forward(x, ctx);
            outs.push(bn.forward(&y, ctx));
        }
        Tensor::stack(&outs, 2).max_axis(2)
    }
}

impl Module for Maxout {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        for (k, (lin, bn)) in self.branches.iter().enumerate() {
            visit_child(&format!("branches.{k}.linear"), lin, f);
            visit_child(&format!("branches.{k}.bn"), bn, f);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        for (k, (lin, bn)) in self.branches.iter_mut().enumerate() {
            visit_child_mut(&format!("branches.{k}.linear"), lin, f);
            visit_child_mut(&format!("branches.{k}.bn"), bn, f);
        }
    }
}
