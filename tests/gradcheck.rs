//! Finite-difference checks of every differentiable op at random shapes,
//! odd sizes included. Inputs are drawn away from kinks (ReLU at 0, ties of
//! a max) so central differences are valid; the tolerance is on the error
//! relative to each input's gradient scale.

use morphgrad::Tensor;
use morphgrad::autograd::gradcheck;
use morphgrad::nn::Ctx;
use morphgrad::ops::{self, BatchNormStats};
use ndarray::{ArrayD, IxDyn};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};

const TOL: f64 = 5e-3;

struct Gen(Xoshiro256PlusPlus);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    fn size(&mut self, lo: usize, hi: usize) -> usize {
        self.0.random_range(lo..=hi)
    }
    /// Normal-ish values in [-2, 2].
    fn normal(&mut self, shape: &[usize]) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.0.random::<f32>() * 4.0 - 2.0)
    }
    /// Values with |v| in [0.2, 2]: no ReLU kink within reach of eps.
    fn away_from_zero(&mut self, shape: &[usize]) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            let v = 0.2 + self.0.random::<f32>() * 1.8;
            if self.0.random::<bool>() { v } else { -v }
        })
    }
    /// Distinct values 0.1 apart in random order: every max has a clear winner.
    fn distinct(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - n as f32 * 0.05).collect();
        v.shuffle(&mut self.0);
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }
    fn uniform(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + self.0.random::<f32>() * (hi - lo))
    }
}

fn check(what: &str, f: impl Fn(&[Tensor]) -> Tensor, inputs: &[ArrayD<f32>], eps: f32) {
    let report = gradcheck(f, inputs, eps);
    println!("{what}: {report}");
    assert!(report.max_rel_err < TOL, "{what}: {report}");
    assert!(report.checked > 0);
}

#[test]
fn broadcasting_arithmetic() {
    let mut g = Gen::new(1);
    for _ in 0..3 {
        let (a, b, c) = (g.size(1, 5), g.size(2, 4), g.size(1, 3));
        let x = g.normal(&[a, b, c]);
        let y = g.normal(&[b, 1]);
        check("add", |t| t[0].add(&t[1]), &[x.clone(), y.clone()], 1e-2);
        check("sub", |t| t[1].sub(&t[0]), &[x.clone(), y.clone()], 1e-2);
        check("mul", |t| t[0].mul(&t[1]), &[x.clone(), y.clone()], 1e-2);
        let d = g.uniform(&[c], 0.5, 2.0);
        check("div", |t| t[0].div(&t[1]), &[x.clone(), d], 1e-3);
        check("scale", |t| t[0].scale(-1.7), &[x], 1e-2);
    }
}

#[test]
fn activations() {
    let mut g = Gen::new(2);
    let shape = [g.size(1, 7), g.size(1, 9)];
    check("relu", |t| t[0].relu(), &[g.away_from_zero(&shape)], 1e-2);
    check("sigmoid", |t| t[0].sigmoid(), &[g.normal(&shape)], 1e-3);
    check("log_softmax", |t| t[0].log_softmax(), &[g.normal(&shape)], 1e-3);
}

#[test]
fn shape_ops() {
    let mut g = Gen::new(3);
    let (a, b, c) = (g.size(1, 4), g.size(1, 5), g.size(2, 3));
    let x = g.normal(&[a, b, c]);
    check("reshape", |t| t[0].reshape(&[a * b, c]).mul(&t[0].reshape(&[a * b, c])), std::slice::from_ref(&x), 1e-2);
    check("flatten", |t| t[0].flatten(1).sigmoid(), std::slice::from_ref(&x), 1e-3);
    check("transpose", |t| t[0].transpose(0, 2).sigmoid(), std::slice::from_ref(&x), 1e-3);
    check("permute", |t| t[0].permute(&[1, 2, 0]).sigmoid(), std::slice::from_ref(&x), 1e-3);
    let y = g.normal(&[a, b + 1, c]);
    check("concat", |t| Tensor::concat(&[t[0].clone(), t[1].clone()], 1).sigmoid(), &[x.clone(), y], 1e-3);
    let z = g.normal(&[a, b, c]);
    check("stack", |t| Tensor::stack(&[t[0].clone(), t[1].clone()], 3).sigmoid(), &[x, z], 1e-3);
}

#[test]
fn reductions() {
    let mut g = Gen::new(4);
    let shape = [g.size(2, 5), g.size(1, 7), g.size(2, 3)];
    let x = g.normal(&shape);
    check("sum_all", |t| t[0].sum_all(), std::slice::from_ref(&x), 1e-2);
    check("mean_all", |t| t[0].mean_all(), std::slice::from_ref(&x), 1e-2);
    for axis in 0..3 {
        check("sum_axis", |t| t[0].sum_axis(axis).sigmoid(), std::slice::from_ref(&x), 1e-3);
        check("mean_axis", |t| t[0].mean_axis(axis).sigmoid(), std::slice::from_ref(&x), 1e-3);
        check("max_axis", |t| t[0].max_axis(axis), &[g.distinct(&shape)], 1e-2);
    }
    let shape = [2, 3, g.size(1, 5), g.size(2, 5)];
    let img = g.distinct(&shape);
    check("global_max_pool", |t| t[0].global_max_pool(), &[img], 1e-2);
}

#[test]
fn matmul_and_linear() {
    let mut g = Gen::new(5);
    let (m, k, n) = (g.size(1, 6), g.size(1, 7), g.size(1, 5));
    check("matmul", |t| t[0].matmul(&t[1]), &[g.normal(&[m, k]), g.normal(&[k, n])], 1e-2);
    let (x, w, b) = (g.normal(&[m, k]), g.normal(&[n, k]), g.normal(&[n]));
    check("linear", |t| ops::linear(&t[0], &t[1], Some(&t[2])), &[x.clone(), w.clone(), b], 1e-2);
    check("linear no bias", |t| ops::linear(&t[0], &t[1], None), &[x, w], 1e-2);
}

#[test]
fn conv2d_any_stride_and_padding() {
    let mut g = Gen::new(6);
    for &(k, stride, pad) in &[(3, 1, 1), (3, 2, 1), (1, 1, 0), (2, 2, 0), (3, 1, 2), (5, 3, 2)] {
        let (n, cin, cout) = (g.size(1, 3), g.size(1, 3), g.size(1, 4));
        let (h, w) = (g.size(k, 9), g.size(k, 8));
        let inputs = [g.normal(&[n, cin, h, w]), g.normal(&[cout, cin, k, k]), g.normal(&[cout])];
        check(
            &format!("conv2d k{k} s{stride} p{pad}"),
            |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), stride, pad),
            &inputs,
            1e-2,
        );
    }
}

#[test]
fn conv2d_groups_many_small_images_like_one_large_batch() {
    // Small spatial sizes put several images into one GEMM; the split must not matter.
    let mut g = Gen::new(7);
    let inputs = [g.normal(&[37, 3, 2, 3]), g.normal(&[4, 3, 3, 3]), g.normal(&[4])];
    check("conv2d batched", |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), 1, 1), &inputs, 1e-2);
}

#[test]
fn max_pool2d_with_floor_mode() {
    let mut g = Gen::new(8);
    for &(k, s) in &[(2, 2), (3, 3), (3, 2), (2, 1)] {
        let shape = [2, g.size(1, 3), g.size(3, 7), g.size(3, 8)];
        let x = g.distinct(&shape);
        check(&format!("max_pool2d k{k} s{s}"), |t| ops::max_pool2d(&t[0], k, s), &[x], 1e-2);
    }
}

fn bn(t: &[Tensor], train: bool) -> Tensor {
    let c = t[1].numel();
    let mut rm = vec![0.1; c];
    let mut rv = vec![1.3; c];
    let stats = BatchNormStats { running_mean: &mut rm, running_var: &mut rv, momentum: 0.1, eps: 1e-5 };
    ops::batch_norm(&t[0], &t[1], &t[2], stats, train)
}

#[test]
fn batch_norm_1d_and_2d_in_both_modes() {
    let mut g = Gen::new(9);
    for shape in [vec![g.size(4, 9), g.size(1, 5)], vec![g.size(2, 3), g.size(1, 4), g.size(2, 5), g.size(2, 4)]] {
        let c = shape[1];
        let inputs = [g.normal(&shape), g.uniform(&[c], 0.5, 1.5), g.normal(&[c])];
        // The sigmoid makes the loss non-linear in x̂, so the batch-statistics terms matter.
        check("batch_norm train", |t| bn(t, true).sigmoid(), &inputs, 1e-3);
        check("batch_norm eval", |t| bn(t, false).sigmoid(), &inputs, 1e-3);
    }
}

#[test]
fn dropout_scales_kept_entries() {
    let mut g = Gen::new(10);
    let x = g.normal(&[5, 7]);
    // A fresh context per call: the same seed draws the same mask every time.
    check("dropout", |t| ops::dropout(&t[0], 0.3, &mut Ctx::train(3).rng), &[x], 1e-2);
}

#[test]
fn losses() {
    let mut g = Gen::new(11);
    let (n, k) = (g.size(1, 9), g.size(2, 7));
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % k).collect();
    check("cross_entropy", |t| ops::cross_entropy(&t[0], &labels), &[g.normal(&[n, k])], 1e-3);
    let target = g.uniform(&[n, k], 0.0, 1.0).mapv(|v| (v > 0.5) as u8 as f32);
    let probs = g.uniform(&[n, k], 0.05, 0.95);
    check("bce", |t| ops::binary_cross_entropy(&t[0], &Tensor::new(target.clone())), &[probs], 1e-4);
}

#[test]
fn a_tensor_used_twice_receives_both_gradients() {
    let mut g = Gen::new(12);
    let x = g.normal(&[3, 4]);
    check("reuse", |t| t[0].mul(&t[0]).add(&t[0].sigmoid()), &[x], 1e-3);
}
