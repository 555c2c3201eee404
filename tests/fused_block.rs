//! `ops::bn_relu_pool` against the three ops it fuses, `max_pool2d(relu(batch_norm(x)))`:
//! outputs, running statistics and every gradient must be equal bit for bit,
//! in train and eval mode, on inputs full of exact ties and all-negative
//! windows (small integers), with negative and zero γ, odd plane sizes the
//! pool's floor leaves a row or column of, overlapping windows, and inputs
//! large enough for the parallel paths.

use morphgrad::Tensor;
use morphgrad::ops::{self, BatchNormStats};
use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};

struct Case {
    shape: [usize; 4],
    kernel: usize,
    stride: usize,
    train: bool,
}

/// Output, running mean and variance, and the gradients of x, γ and β of
/// `loss = Σ out · w` (a fixed random `w`), by the fused op or the three ops.
fn run(
    fused: bool,
    x: &ArrayD<f32>,
    gamma: &ArrayD<f32>,
    beta: &ArrayD<f32>,
    w_seed: u64,
    case: &Case,
) -> Vec<Vec<f32>> {
    let c = case.shape[1];
    let (xt, gt, bt) = (Tensor::param(x.clone()), Tensor::param(gamma.clone()), Tensor::param(beta.clone()));
    let (mut rm, mut rv): (Vec<f32>, Vec<f32>) = ((0..c).map(|i| i as f32 * 0.1).collect(), vec![1.5; c]);
    let stats = BatchNormStats { running_mean: &mut rm, running_var: &mut rv, momentum: 0.1, eps: 1e-5 };
    let out = if fused {
        ops::bn_relu_pool(&xt, &gt, &bt, stats, case.train, case.kernel, case.stride)
    } else {
        ops::max_pool2d(&ops::batch_norm(&xt, &gt, &bt, stats, case.train).relu(), case.kernel, case.stride)
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(w_seed);
    let w = Tensor::new(ArrayD::from_shape_simple_fn(IxDyn(out.shape()), || (rng.random_range(-3..=3)) as f32));
    let grads = out.mul(&w).sum_all().backward();
    let g = |t: &Tensor| grads.get(t).expect("a gradient").iter().copied().collect::<Vec<f32>>();
    vec![out.data().to_vec(), rm, rv, g(&xt), g(&gt), g(&bt)]
}

#[test]
fn fused_block_tail_equals_the_three_ops_bit_for_bit() {
    let cases = [
        Case { shape: [2, 3, 4, 4], kernel: 2, stride: 2, train: true },
        Case { shape: [3, 2, 5, 7], kernel: 2, stride: 2, train: true },
        Case { shape: [2, 2, 7, 5], kernel: 3, stride: 2, train: true },
        Case { shape: [2, 3, 6, 6], kernel: 3, stride: 3, train: true },
        Case { shape: [2, 3, 5, 5], kernel: 2, stride: 2, train: false },
        // Large enough (≥ 2^15 values) for the parallel paths.
        Case { shape: [8, 16, 17, 33], kernel: 2, stride: 2, train: true },
        Case { shape: [8, 16, 16, 16], kernel: 2, stride: 2, train: false },
    ];
    let names = ["output", "running mean", "running var", "dx", "dγ", "dβ"];
    for (k, case) in cases.iter().enumerate() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(k as u64);
        // Small integers: many exact ties within a window, and windows with
        // no positive value after normalisation.
        let x = ArrayD::from_shape_simple_fn(IxDyn(&case.shape), || rng.random_range(-4..=3) as f32);
        let c = case.shape[1];
        let gamma = ArrayD::from_shape_fn(IxDyn(&[c]), |i| [1.5f32, -0.75, 0.0][i[0] % 3]);
        let beta = ArrayD::from_shape_fn(IxDyn(&[c]), |i| [0.25f32, -0.5, 0.0][(i[0] + 1) % 3]);
        let fused = run(true, &x, &gamma, &beta, 100 + k as u64, case);
        let plain = run(false, &x, &gamma, &beta, 100 + k as u64, case);
        for ((f, p), name) in fused.iter().zip(&plain).zip(names) {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(f),
                bits(p),
                "{name} differs for {:?} kernel {} stride {} train {}",
                case.shape,
                case.kernel,
                case.stride,
                case.train
            );
        }
        assert!(fused[3].iter().any(|&v| v != 0.0), "case {k}: dx is all zero, the test would not see a wrong winner");
    }
}

#[test]
fn fused_block_tail_names_a_bad_input_shape() {
    let x = Tensor::param(ArrayD::zeros(IxDyn(&[2, 3, 1, 4])));
    let (g, b) = (Tensor::param(ArrayD::ones(IxDyn(&[3]))), Tensor::param(ArrayD::zeros(IxDyn(&[3]))));
    let (mut rm, mut rv) = (vec![0.0; 3], vec![1.0; 3]);
    let stats = BatchNormStats { running_mean: &mut rm, running_var: &mut rv, momentum: 0.1, eps: 1e-5 };
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ops::bn_relu_pool(&x, &g, &b, stats, true, 2, 2)))
            .expect_err("a 1-pixel-high input cannot be pooled 2×2");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("[2, 3, 1, 4]") && msg.contains("kernel 2"), "message: {msg}");
}
