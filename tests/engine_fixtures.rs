//! The engine against PyTorch: every layer-level fixture of
//! `../shared/fixtures/torch/` (conv, batchnorm, maxpool, dropout, losses,
//! optimisers). Layer fixtures define `loss = Σ y ⊙ grad_y`, so the expected
//! gradients are vector-Jacobian products.
//! Tolerances: forward 1e-5 abs + 1e-5 × scale; gradients 1e-4 × scale.

mod common;

use common::*;
use morphgrad::Tensor;
use morphgrad::autograd::Grads;
use morphgrad::nn::{Entry, Forward, Module};
use morphgrad::ops::{self, BatchNormStats};
use morphgrad::optim::{Adam, Optimizer, Sgd};
use ndarray::ArrayD;

const FWD: (f32, f32) = (1e-5, 1e-5);
const GRAD: (f32, f32) = (1e-6, 1e-4);

fn vjp(y: &Tensor, grad_y: &ArrayD<f32>) -> Grads {
    y.mul(&Tensor::new(grad_y.clone())).sum_all().backward()
}

#[test]
fn conv2d_matches_torch() {
    for case in ["conv2d_0", "conv2d_1"] {
        let Some(d) = fixture(case) else { return };
        let x = Tensor::param(f32s(&d, "x"));
        let w = Tensor::param(f32s(&d, "weight"));
        let b = Tensor::param(f32s(&d, "bias"));
        let y = ops::conv2d(&x, &w, Some(&b), 1, 1);
        assert_close(&format!("{case} y"), y.value(), &f32s(&d, "y"), FWD.0, FWD.1);
        let g = vjp(&y, &f32s(&d, "grad_y"));
        for (t, name) in [(&x, "x"), (&w, "weight"), (&b, "bias")] {
            assert_close(
                &format!("{case} grad.{name}"),
                g.get(t).unwrap(),
                &f32s(&d, &format!("grad.{name}")),
                GRAD.0,
                GRAD.1,
            );
        }
    }
}

#[test]
fn batchnorm_matches_torch_in_train_and_eval_mode() {
    for case in ["batchnorm1d_train", "batchnorm1d_eval", "batchnorm2d_train", "batchnorm2d_eval"] {
        let Some(d) = fixture(case) else { return };
        let train = case.ends_with("train");
        let x = Tensor::param(f32s(&d, "x"));
        let gamma = Tensor::param(f32s(&d, "weight"));
        let beta = Tensor::param(f32s(&d, "bias"));
        let mut rm = f32s(&d, "running_mean");
        let mut rv = f32s(&d, "running_var");
        let stats = BatchNormStats {
            running_mean: rm.as_slice_mut().unwrap(),
            running_var: rv.as_slice_mut().unwrap(),
            momentum: 0.1,
            eps: 1e-5,
        };
        let y = ops::batch_norm(&x, &gamma, &beta, stats, train);
        assert_close(&format!("{case} y"), y.value(), &f32s(&d, "y"), FWD.0, FWD.1);
        let g = vjp(&y, &f32s(&d, "grad_y"));
        for (t, name) in [(&x, "x"), (&gamma, "weight"), (&beta, "bias")] {
            assert_close(
                &format!("{case} grad.{name}"),
                g.get(t).unwrap(),
                &f32s(&d, &format!("grad.{name}")),
                GRAD.0,
                GRAD.1,
            );
        }
        if train {
            assert_close(&format!("{case} running_mean"), &rm, &f32s(&d, "after.running_mean"), 1e-6, 1e-6);
            assert_close(&format!("{case} running_var"), &rv, &f32s(&d, "after.running_var"), 1e-6, 1e-6);
        } else {
            assert_eq!(rm, f32s(&d, "running_mean"), "eval mode leaves running stats alone");
        }
    }
}

#[test]
fn batchnorm_layer_counts_tracked_batches_like_torch() {
    let Some(d) = fixture("batchnorm2d_train") else { return };
    let mut bn = morphgrad::nn::BatchNorm::new(6);
    bn.num_batches_tracked = i64s(&d, "num_batches_tracked").iter().copied().next().unwrap();
    bn.forward(&Tensor::new(f32s(&d, "x")), &mut morphgrad::nn::Ctx::train(0));
    assert_eq!(bn.num_batches_tracked, *i64s(&d, "after.num_batches_tracked").iter().next().unwrap());
}

#[test]
fn maxpool_matches_torch_including_ties_and_odd_sizes() {
    for case in ["maxpool2d_0", "maxpool2d_1", "maxpool2d_ties"] {
        let Some(d) = fixture(case) else { return };
        let x = Tensor::param(f32s(&d, "x"));
        let y = ops::max_pool2d(&x, 2, 2);
        assert_eq!(y.value(), &f32s(&d, "y"), "{case} y (exact)");
        let g = vjp(&y, &f32s(&d, "grad_y"));
        assert_eq!(g.get(&x).unwrap(), &f32s(&d, "grad.x"), "{case} grad.x (exact routing)");
    }
}

#[test]
fn dropout_with_a_given_mask_matches_torch() {
    let Some(d) = fixture("dropout_mask") else { return };
    let x = Tensor::param(f32s(&d, "x"));
    let keep: Vec<bool> = u8s(&d, "mask").iter().map(|&m| m != 0).collect();
    let y = ops::dropout_with_mask(&x, &keep, 0.5);
    assert_close("dropout y", y.value(), &f32s(&d, "y"), 0.0, 0.0);
    let g = vjp(&y, &f32s(&d, "grad_y"));
    assert_close("dropout grad.x", g.get(&x).unwrap(), &f32s(&d, "grad.x"), 0.0, 0.0);
}

#[test]
fn cross_entropy_matches_torch() {
    let Some(d) = fixture("cross_entropy") else { return };
    let z = Tensor::param(f32s(&d, "logits"));
    let labels: Vec<usize> = i64s(&d, "labels").iter().map(|&l| l as usize).collect();
    let loss = ops::cross_entropy(&z, &labels);
    assert_close("ce loss", loss.value(), &f32s(&d, "loss"), FWD.0, FWD.1);
    let g = loss.backward();
    assert_close("ce grad", g.get(&z).unwrap(), &f32s(&d, "grad.logits"), GRAD.0, GRAD.1);
}

#[test]
fn log_softmax_then_pick_equals_cross_entropy() {
    let Some(d) = fixture("cross_entropy") else { return };
    let z = Tensor::param(f32s(&d, "logits"));
    let labels = i64s(&d, "labels");
    let mut onehot = ArrayD::<f32>::zeros(z.value().raw_dim());
    for (n, &l) in labels.iter().enumerate() {
        onehot[[n, l as usize]] = -1.0 / labels.len() as f32;
    }
    let loss = z.log_softmax().mul(&Tensor::new(onehot)).sum_all();
    assert_close("nll via log_softmax", loss.value(), &f32s(&d, "loss"), FWD.0, FWD.1);
    assert_close("grad via log_softmax", loss.backward().get(&z).unwrap(), &f32s(&d, "grad.logits"), GRAD.0, GRAD.1);
}

#[test]
fn bce_matches_torch_including_clamps() {
    for case in ["bce", "bce_extremes"] {
        let Some(d) = fixture(case) else { return };
        let p = Tensor::param(f32s(&d, "probs"));
        let loss = ops::binary_cross_entropy(&p, &Tensor::new(f32s(&d, "target")));
        assert_close(&format!("{case} loss"), loss.value(), &f32s(&d, "loss"), FWD.0, FWD.1);
        let g = loss.backward();
        assert_close(&format!("{case} grad"), g.get(&p).unwrap(), &f32s(&d, "grad.probs"), GRAD.0, GRAD.1);
    }
}

#[test]
fn sigmoid_then_bce_matches_torch_chain() {
    let Some(d) = fixture("bce_sigmoid_chain") else { return };
    let z = Tensor::param(f32s(&d, "logits"));
    let loss = ops::binary_cross_entropy(&z.sigmoid(), &Tensor::new(f32s(&d, "target")));
    assert_close("chain loss", loss.value(), &f32s(&d, "loss"), FWD.0, FWD.1);
    assert_close("chain grad", loss.backward().get(&z).unwrap(), &f32s(&d, "grad.logits"), GRAD.0, GRAD.1);
}

/// One parameter as a module, to drive the optimisers.
struct Single(Tensor);

impl Module for Single {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        f("param", Entry::Param(&self.0));
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, morphgrad::nn::EntryMut<'_>)) {
        f("param", morphgrad::nn::EntryMut::Param(&mut self.0));
    }
}

/// Three optimiser steps with the fixture's fixed gradients g1..g3.
fn run_steps(d: &std::path::Path, opt: &mut dyn Optimizer) -> Single {
    let mut m = Single(Tensor::param(f32s(d, "param")));
    for step in 1..=3 {
        let loss = m.0.mul(&Tensor::new(f32s(d, &format!("g{step}")))).sum_all();
        opt.step(&mut m, &loss.backward());
        assert_close(&format!("after{step}.param"), m.0.value(), &f32s(d, &format!("after{step}.param")), 1e-7, 1e-6);
    }
    m
}

#[test]
fn adam_matches_torch_with_and_without_weight_decay() {
    for (case, lr, wd) in [("adam", 1e-3, 0.0), ("adam_wd", 1e-3, 1e-4), ("adam_wd_lr1e-4", 1e-4, 1e-4)] {
        let Some(d) = fixture(case) else { return };
        let mut opt = Adam::new(lr, wd);
        run_steps(&d, &mut opt);
        let sd = opt.state_dict();
        for slot in ["exp_avg", "exp_avg_sq"] {
            let morphgrad::nn::StateValue::F32(a) = &sd[&format!("param.{slot}")] else { panic!() };
            assert_close(&format!("{case} {slot}"), a, &f32s(&d, &format!("after3.{slot}")), 1e-9, 1e-6);
        }
    }
}

#[test]
fn sgd_nesterov_matches_torch() {
    let Some(d) = fixture("sgd_nesterov") else { return };
    let mut opt = Sgd::new(1e-3, 0.9, true, 1e-4);
    run_steps(&d, &mut opt);
    let morphgrad::nn::StateValue::F32(buf) = &opt.state_dict()["param.momentum_buffer"] else { panic!() };
    assert_close("momentum_buffer", buf, &f32s(&d, "after3.momentum_buffer"), 1e-7, 1e-6);
}
