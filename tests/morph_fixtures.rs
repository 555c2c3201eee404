//! Morphological layers against PyTorch's broadcast formulation
//! (`x.unsqueeze(1) + W`, bias column, `torch.max`): values exactly, winners
//! exactly, gradients to 1e-6 (they are sums of routed upstream entries).

mod common;

use common::*;
use morphgrad::Tensor;
use morphgrad::autograd::Grads;
use morphgrad::nn::{Ctx, Forward, Maxout, Module, ModuleExt, SparseWeight, StateValue};
use morphgrad::ops;
use ndarray::ArrayD;
use rand::SeedableRng;

fn vjp(y: &Tensor, grad_y: &ArrayD<f32>) -> Grads {
    y.backward_with(grad_y)
}

fn check_dense(case: &str, bias: bool) {
    let Some(d) = fixture(case) else { return };
    let x = Tensor::param(f32s(&d, "x"));
    let w = Tensor::param(f32s(&d, "weight"));
    let b = bias.then(|| Tensor::param(f32s(&d, "bias")));
    let y = ops::maxplus(&x, &w, b.as_ref());
    assert_close(&format!("{case} y"), y.value(), &f32s(&d, "y"), 0.0, 1e-7);
    let g = vjp(&y, &f32s(&d, "grad_y"));
    assert_close(&format!("{case} grad.x"), g.get(&x).unwrap(), &f32s(&d, "grad.x"), 1e-6, 1e-6);
    assert_close(&format!("{case} grad.weight"), g.get(&w).unwrap(), &f32s(&d, "grad.weight"), 1e-6, 1e-6);
    if let Some(b) = &b {
        assert_close(&format!("{case} grad.bias"), g.get(b).unwrap(), &f32s(&d, "grad.bias"), 1e-6, 1e-6);
    }
}

#[test]
fn dense_maxplus_matches_torch() {
    check_dense("maxplus_dense", true);
}

#[test]
fn maxplus_ties_go_to_the_lowest_index_and_the_bias_loses_ties() {
    check_dense("maxplus_ties", true);
}

#[test]
fn maxplus_without_bias_matches_torch() {
    check_dense("maxplus_nobias", false);
}

#[test]
fn masked_maxplus_matches_torch_dense_and_sparse() {
    // Dense kernel on the reference's -1e9 masked weights...
    check_dense("maxplus_sparse", true);
    // ...and the explicitly sparse layer built from the same matrix.
    let Some(d) = fixture("maxplus_sparse") else { return };
    let sw = SparseWeight::from_dense(&f32s(&d, "weight")).unwrap();
    let mask = u8s(&d, "active_mask");
    assert_eq!(sw.pattern.nnz(), mask.iter().filter(|&&m| m != 0).count());
    assert_eq!(sw.pattern.nnz() as u64, manifest_params("maxplus_sparse")["active_entries"].as_u64().unwrap());
    let x = Tensor::param(f32s(&d, "x"));
    let b = Tensor::param(f32s(&d, "bias"));
    let y = ops::sparse_maxplus(&x, &sw.pattern, &sw.values, &b);
    assert_close("sparse y", y.value(), &f32s(&d, "y"), 0.0, 1e-7);
    let g = vjp(&y, &f32s(&d, "grad_y"));
    assert_close("sparse grad.x", g.get(&x).unwrap(), &f32s(&d, "grad.x"), 1e-6, 1e-6);
    assert_close("sparse grad.bias", g.get(&b).unwrap(), &f32s(&d, "grad.bias"), 1e-6, 1e-6);
    let gw = sw.dense_grad(g.get(&sw.values).unwrap());
    assert_close("sparse grad.weight", &gw, &f32s(&d, "grad.weight"), 1e-6, 1e-6);
}

#[test]
fn maxplus_winners_match_torch_argmax() {
    for case in ["maxplus_dense", "maxplus_ties", "maxplus_sparse"] {
        let Some(d) = fixture(case) else { return };
        let (x, w, b) = (f32s(&d, "x"), f32s(&d, "weight"), f32s(&d, "bias"));
        let dims = morphgrad::kernels::maxplus::Dims { batch: x.shape()[0], n_in: x.shape()[1], n_out: w.shape()[0] };
        let mut y = vec![0.0; dims.batch * dims.n_out];
        let mut win = vec![0u32; y.len()];
        morphgrad::kernels::maxplus::forward(
            dims,
            x.as_slice().unwrap(),
            w.as_slice().unwrap(),
            Some(b.as_slice().unwrap()),
            &mut y,
            Some(&mut win),
        );
        let expected: Vec<u32> = i64s(&d, "argmax").iter().map(|&a| a as u32).collect();
        assert_eq!(win, expected, "{case} winners");
    }
}

#[test]
fn maxout_matches_torch_in_train_and_eval_mode() {
    for case in ["maxout_train", "maxout_eval"] {
        let Some(d) = fixture(case) else { return };
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
        let mut m = Maxout::new(24, 12, 2, &mut rng);
        let sd = m.state_dict().into_iter().map(|(k, v)| {
            let file = match v {
                StateValue::F32(_) => StateValue::F32(f32s(&d, &k)),
                StateValue::I64(_) => StateValue::I64(i64s(&d, &k)),
            };
            (k, file)
        });
        m.load_state_dict(&sd.collect()).unwrap();
        let train = case.ends_with("train");
        let mut ctx = if train { Ctx::train(0) } else { Ctx::eval() };
        let x = Tensor::param(f32s(&d, "x"));
        let y = m.forward(&x, &mut ctx);
        assert_close(&format!("{case} y"), y.value(), &f32s(&d, "y"), 1e-5, 1e-5);
        let g = vjp(&y, &f32s(&d, "grad_y"));
        assert_close(&format!("{case} grad.x"), g.get(&x).unwrap(), &f32s(&d, "grad.x"), 1e-6, 1e-4);
        let mut checked = 0;
        let names = m.param_names();
        let mut params = Vec::new();
        m.visit(&mut |name, e| {
            if let morphgrad::nn::Entry::Param(t) = e {
                params.push((name.to_string(), t.clone()));
            }
        });
        for (name, t) in params {
            // Biases feeding a train-mode BN have exactly zero gradient; f32 noise in the file.
            let (atol, rtol) = if train && name.ends_with("linear.bias") { (1e-5, 0.0) } else { (1e-6, 1e-4) };
            assert_close(
                &format!("{case} grad.{name}"),
                g.get(&t).unwrap(),
                &f32s(&d, &format!("grad.{name}")),
                atol,
                rtol,
            );
            checked += 1;
        }
        assert_eq!(checked, names.len());
        if train {
            let sd = m.state_dict();
            for k in sd.keys().filter(|k| k.contains("running")) {
                let StateValue::F32(a) = &sd[k] else { panic!() };
                assert_close(&format!("after.{k}"), a, &f32s(&d, &format!("after.{k}")), 1e-6, 1e-6);
            }
        }
    }
}
