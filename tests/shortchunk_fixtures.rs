//! The whole Short-chunk CNN against PyTorch (`shortchunk_*` fixtures,
//! C = 8): raw audio in; eval and train sigmoid outputs, BCE loss, every
//! parameter's gradient, BatchNorm statistics after one train step, one
//! Adam step. Tolerance 1e-3 × max|expected| (whole nets), absolute 1e-5
//! for structurally-zero gradients.

mod common;

use common::*;
use morphgrad::models::{HeadKind, ShortChunkCnn, ShortChunkConfig};
use morphgrad::nn::{Ctx, Entry, Forward, Module, ModuleExt, StateValue};
use morphgrad::optim::{Adam, Optimizer};
use morphgrad::{Tensor, ops};

fn check(case: &str, head: HeadKind) {
    assert_conv_setting_in_effect();
    let Some(d) = fixture(case) else { return };
    let config = ShortChunkConfig { dropout: 0.0, sparse_k: 64, ..ShortChunkConfig::paper(head, 8) };
    let mut model = ShortChunkCnn::new(config, 0);
    let sd = model
        .state_dict()
        .into_iter()
        .map(|(k, v)| {
            let file = match v {
                StateValue::F32(_) => StateValue::F32(f32s(&d, &k)),
                StateValue::I64(_) => StateValue::I64(i64s(&d, &k)),
            };
            (k, file)
        })
        .collect();
    model.load_state_dict(&sd).unwrap();
    let wav = Tensor::new(f32s(&d, "wav"));
    let target = Tensor::new(f32s(&d, "target"));

    let out_eval = model.forward(&wav, &mut Ctx::eval()).unwrap();
    assert_close(&format!("{case} output_eval"), out_eval.value(), &f32s(&d, "output_eval"), 1e-5, 1e-4);
    let loss_eval = ops::binary_cross_entropy(&out_eval, &target);
    assert_close(&format!("{case} loss_eval"), loss_eval.value(), &f32s(&d, "loss_eval"), 1e-5, 1e-4);

    let out = model.forward(&wav, &mut Ctx::train(0)).unwrap();
    assert_close(&format!("{case} output_train"), out.value(), &f32s(&d, "output_train"), 1e-5, 1e-3);
    let loss = ops::binary_cross_entropy(&out, &target);
    assert_close(&format!("{case} loss_train"), loss.value(), &f32s(&d, "loss_train"), 1e-5, 1e-3);
    let grads = loss.backward();

    let mut params = Vec::new();
    model.visit(&mut |name, e| match e {
        Entry::Param(t) => params.push((name.to_string(), t.clone(), None)),
        Entry::Sparse(w) => params.push((name.to_string(), w.values.clone(), Some(w.clone()))),
        _ => {}
    });
    for (name, t, sparse) in &params {
        let g = grads.get(t).unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
        let g = match sparse {
            Some(w) => w.dense_grad(g),
            None => g.clone(),
        };
        let zero = name.ends_with("conv.bias") || (head == HeadKind::Relu && name == "head.dense1.bias");
        let (atol, rtol) = if zero { (1e-5, 0.0) } else { (1e-6, 1e-3) };
        assert_close(&format!("{case} grad.{name}"), &g, &f32s(&d, &format!("grad.{name}")), atol, rtol);
    }
    for (name, v) in model.state_dict() {
        if let StateValue::F32(a) = &v
            && name.contains("running_")
        {
            assert_close(&format!("{case} after.{name}"), a, &f32s(&d, &format!("after.{name}")), 1e-6, 1e-4);
        }
    }
    let mut adam = Adam::new(1e-3, 0.0);
    adam.step(&mut model, &grads);
    let after = model.state_dict();
    for (name, _, _) in &params {
        let StateValue::F32(ours) = &after[name] else { unreachable!() };
        let (expected, g) = (f32s(&d, &format!("adam1.{name}")), f32s(&d, &format!("grad.{name}")));
        let worst = ours
            .iter()
            .zip(&expected)
            .zip(&g)
            .filter(|(_, g)| g.abs() > 1e-5)
            .map(|((a, e), _)| (a - e).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 2e-6, "{case} adam1.{name}: max |diff| {worst:e}");
    }
}

#[test]
fn short_chunk_cnn_with_relu_head_matches_torch() {
    check("shortchunk_relu", HeadKind::Relu);
}

#[test]
fn short_chunk_cnn_with_sparse_morph_head_matches_torch() {
    check("shortchunk_lmpl2", HeadKind::SparseMorph { bn: true });
}

/// The same comparisons with every convolution through Winograd (these
/// small nets take GEMM by default): its rounding stays within the same
/// tolerances.
#[test]
fn every_head_matches_torch_with_winograd_convolutions() {
    rerun_with_env(
        "MORPHGRAD_CONV",
        "winograd",
        &["short_chunk_cnn_with_relu_head_matches_torch", "short_chunk_cnn_with_sparse_morph_head_matches_torch"],
    );
}
