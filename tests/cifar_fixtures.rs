//! The whole CIFAR net, every head, against PyTorch (`cifar_net_*`
//! fixtures, C = 8, h = 512, dropout 0): eval and train logits and losses,
//! the gradient of every parameter, BatchNorm running statistics after one
//! train step, and the parameters after one Adam step.
//! Tolerance (the fixtures' advice for whole nets): 1e-3 × max|expected|,
//! absolute 1e-5 for gradients that are structurally zero (biases feeding a
//! train-mode BatchNorm).

mod common;

use common::*;
use morphgrad::models::{CifarConfig, CifarNet, HeadKind};
use morphgrad::nn::{Ctx, Entry, Forward, Module, ModuleExt, StateDict, StateValue};
use morphgrad::optim::{Adam, Optimizer};
use morphgrad::{Tensor, ops};
use ndarray::ArrayD;

/// Load every entry of the model's state dict from `<name>.npy` in `dir`.
fn fixture_state(dir: &std::path::Path, model: &mut CifarNet) -> StateDict {
    model
        .state_dict()
        .into_iter()
        .map(|(k, v)| {
            let file = match v {
                StateValue::F32(_) => StateValue::F32(f32s(dir, &k)),
                StateValue::I64(_) => StateValue::I64(i64s(dir, &k)),
            };
            (k, file)
        })
        .collect()
}

/// Each learnable tensor under its name (the values of sparse weights).
fn params(model: &mut CifarNet) -> Vec<(String, Tensor, bool)> {
    let mut v = Vec::new();
    model.visit(&mut |name, e| match e {
        Entry::Param(t) => v.push((name.to_string(), t.clone(), false)),
        Entry::Sparse(w) => v.push((name.to_string(), w.values.clone(), true)),
        _ => {}
    });
    v
}

fn structural_zero(head: HeadKind, name: &str) -> bool {
    (name.starts_with("blocks.") && name.ends_with("conv.bias"))
        || (head == HeadKind::Relu && name == "head.dense1.bias")
        || name.ends_with("linear.bias")
}

fn check(case: &str, head: HeadKind) {
    assert_conv_setting_in_effect();
    let Some(d) = fixture(case) else { return };
    let config = CifarConfig { dropout: 0.0, ..CifarConfig::paper(head, 8) };
    let mut model = CifarNet::new(config, 0);
    let sd = fixture_state(&d, &mut model);
    model.load_state_dict(&sd).unwrap();
    let x = Tensor::new(f32s(&d, "x"));
    let labels: Vec<usize> = i64s(&d, "labels").iter().map(|&l| l as usize).collect();

    // The normalised input is what the fixture fed the net.
    let imgs = u8s(&d, "images_uint8");
    let ours = morphgrad::data::cifar::normalize(&imgs);
    assert_close(&format!("{case} x"), &ours, &f32s(&d, "x"), 1e-6, 0.0);

    let out_eval = model.forward(&x, &mut Ctx::eval()).unwrap();
    assert_close(&format!("{case} output_eval"), out_eval.value(), &f32s(&d, "output_eval"), 1e-5, 1e-4);
    let loss_eval = ops::cross_entropy(&out_eval, &labels);
    assert_close(&format!("{case} loss_eval"), loss_eval.value(), &f32s(&d, "loss_eval"), 1e-5, 1e-4);

    let out = model.forward(&x, &mut Ctx::train(0)).unwrap();
    assert_close(&format!("{case} output_train"), out.value(), &f32s(&d, "output_train"), 1e-5, 1e-3);
    let loss = ops::cross_entropy(&out, &labels);
    assert_close(&format!("{case} loss_train"), loss.value(), &f32s(&d, "loss_train"), 1e-5, 1e-3);
    let grads = loss.backward();

    let mut checked = 0;
    for (name, t, sparse) in params(&mut model) {
        let expected = f32s(&d, &format!("grad.{name}"));
        let g = grads.get(&t).unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        let g: ArrayD<f32> = if sparse {
            let mut w = None;
            model.visit(&mut |n, e| {
                if let (true, Entry::Sparse(sw)) = (n == name, e) {
                    w = Some(sw.dense_grad(g));
                }
            });
            w.unwrap()
        } else {
            g.clone()
        };
        let (atol, rtol) = if structural_zero(head, &name) { (1e-5, 0.0) } else { (1e-6, 1e-3) };
        assert_close(&format!("{case} grad.{name}"), &g, &expected, atol, rtol);
        checked += 1;
    }
    assert!(checked >= 10, "{case}: only {checked} parameters");

    for (name, v) in model.state_dict() {
        if name.contains("running_") {
            let StateValue::F32(a) = &v else { unreachable!() };
            assert_close(&format!("{case} after.{name}"), a, &f32s(&d, &format!("after.{name}")), 1e-6, 1e-4);
        }
        if name.ends_with("num_batches_tracked") {
            let StateValue::I64(a) = &v else { unreachable!() };
            assert_eq!(a, &i64s(&d, &format!("after.{name}")), "{case} after.{name}");
        }
    }

    // One Adam step from those gradients; compared where the gradient is not rounding noise.
    let mut adam = Adam::new(1e-3, 0.0);
    adam.step(&mut model, &grads);
    let after = model.state_dict();
    for (name, _, _) in params(&mut model) {
        let StateValue::F32(ours) = &after[&name] else { unreachable!() };
        let (expected, g) = (f32s(&d, &format!("adam1.{name}")), f32s(&d, &format!("grad.{name}")));
        let mut worst = 0.0f32;
        for ((a, e), g) in ours.iter().zip(&expected).zip(&g) {
            if g.abs() > 1e-5 {
                worst = worst.max((a - e).abs());
            }
        }
        assert!(worst <= 2e-6, "{case} adam1.{name}: max |diff| {worst:e}");
    }
}

#[test]
fn relu_head_matches_torch() {
    check("cifar_net_relu", HeadKind::Relu);
}

#[test]
fn maxout_head_matches_torch() {
    check("cifar_net_maxout", HeadKind::Maxout);
}

#[test]
fn zhang_head_matches_torch() {
    check("cifar_net_zhang", HeadKind::Zhang);
}

#[test]
fn dense_morph_head_matches_torch() {
    check("cifar_net_lmpl", HeadKind::DenseMorph { bn: true });
}

#[test]
fn sparse_morph_head_matches_torch() {
    check("cifar_net_lmpl2", HeadKind::SparseMorph { bn: true });
}

/// The same comparisons with every convolution through Winograd (these
/// small nets take GEMM by default): its rounding stays within the same
/// tolerances.
#[test]
fn every_head_matches_torch_with_winograd_convolutions() {
    rerun_with_env(
        "MORPHGRAD_CONV",
        "winograd",
        &[
            "relu_head_matches_torch",
            "maxout_head_matches_torch",
            "zhang_head_matches_torch",
            "dense_morph_head_matches_torch",
            "sparse_morph_head_matches_torch",
        ],
    );
}
