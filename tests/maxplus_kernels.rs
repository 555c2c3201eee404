//! Properties of the max-plus kernels on random shapes (odd sizes, `-∞`
//! weights, all-`-∞` rows, integer ties, with and without bias):
//! every SIMD kernel equals the scalar reference bit for bit, values and
//! winners; the sparse kernel equals the dense one on the `-∞`-masked
//! matrix, gradients included; NaN propagates as documented.

use morphgrad::Tensor;
use morphgrad::autograd::gradcheck;
use morphgrad::kernels::maxplus::{self, Dims, Isa, sparse::Csr};
use morphgrad::nn::SparseWeight;
use morphgrad::ops;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// A random max-plus problem. `ties` draws small integers so exact ties are common.
#[derive(Debug, Clone)]
struct Problem {
    d: Dims,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
}

fn problem() -> impl Strategy<Value = Problem> {
    (1usize..40, 1usize..70, 1usize..40, any::<bool>(), any::<bool>(), 0u32..4, any::<u64>()).prop_map(
        |(batch, n_in, n_out, ties, with_bias, mask_mode, seed)| {
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let val = |next: &mut dyn FnMut() -> u64| {
                if ties { (next() % 7) as f32 - 3.0 } else { (next() % 1_000_000) as f32 * 1e-5 - 5.0 }
            };
            let x: Vec<f32> = (0..batch * n_in).map(|_| val(&mut next)).collect();
            let mut w: Vec<f32> = (0..n_out * n_in).map(|_| val(&mut next)).collect();
            match mask_mode {
                // Some weights inactive.
                1 => w.iter_mut().for_each(|v| {
                    if next() % 3 == 0 {
                        *v = f32::NEG_INFINITY
                    }
                }),
                // Mostly inactive, and whole rows of -inf.
                2 => {
                    for (j, row) in w.chunks_mut(n_in).enumerate() {
                        for v in row.iter_mut() {
                            if j % 3 == 0 || next() % 10 != 0 {
                                *v = f32::NEG_INFINITY
                            }
                        }
                    }
                }
                _ => {}
            }
            let bias = with_bias.then(|| (0..n_out).map(|_| val(&mut next)).collect());
            Problem { d: Dims { batch, n_in, n_out }, x, w, bias }
        },
    )
}

fn run(isa: Isa, p: &Problem, winners: bool) -> (Vec<f32>, Vec<u32>) {
    run_at(isa, p, winners, &p.x)
}

/// [`run`] on a copy of x placed `shift` floats after the start of a cache
/// line: the kernels read x in place when it starts on one and copy it to
/// one when it does not.
fn run_shifted(isa: Isa, p: &Problem, winners: bool, shift: usize) -> (Vec<f32>, Vec<u32>) {
    let mut buf = vec![0.0f32; p.x.len() + 16 + shift];
    let at = buf.as_ptr().align_offset(64) + shift;
    buf[at..at + p.x.len()].copy_from_slice(&p.x);
    run_at(isa, p, winners, &buf[at..at + p.x.len()])
}

fn run_at(isa: Isa, p: &Problem, winners: bool, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let mut y = vec![0.0; p.d.batch * p.d.n_out];
    let mut win = vec![0u32; if winners { y.len() } else { 0 }];
    maxplus::forward_isa(isa, p.d, x, &p.w, p.bias.as_deref(), &mut y, winners.then_some(&mut win[..]));
    (y, win)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_simd_kernel_equals_the_scalar_reference(p in problem()) {
        let (y_ref, w_ref) = run(Isa::Scalar, &p, true);
        for isa in Isa::available() {
            for shift in [0, 1] {
                let (y, w) = run_shifted(isa, &p, true, shift);
                prop_assert_eq!(bits(&y), bits(&y_ref), "{:?} values, x {} floats into a line", isa, shift);
                prop_assert_eq!(&w, &w_ref, "{:?} winners, x {} floats into a line", isa, shift);
            }
            let (y_fast, _) = run(isa, &p, false);
            prop_assert_eq!(bits(&y_fast), bits(&y_ref), "{:?} values without winners", isa);
        }
        // Into new buffers (what the layer calls): the same results, and a
        // zero-filled weight gradient buffer when asked for.
        for (winners, zeroed_gw) in [(true, true), (true, false), (false, false)] {
            let out = maxplus::product(p.d, &p.x, &p.w, p.bias.as_deref(), winners, zeroed_gw);
            prop_assert_eq!(bits(&out.y), bits(&y_ref));
            prop_assert_eq!(&out.winners, if winners { &w_ref } else { &Vec::new() });
            prop_assert_eq!(out.grad_w.map(|g| bits(&g)), zeroed_gw.then(|| vec![0; p.w.len()]));
        }
    }

    #[test]
    fn sparse_kernel_equals_dense_kernel_on_the_masked_matrix(p in problem()) {
        sparse_equals_dense(&p)?;
    }

    #[test]
    fn gradients_route_every_upstream_entry_to_its_winner_in_order(p in problem(), want in any::<[bool; 3]>()) {
        let (_, win) = run(Isa::Scalar, &p, true);
        let Dims { batch, n_out, .. } = p.d;
        let g: Vec<f32> = (0..batch * n_out).map(|k| ((k * 7919) % 1013) as f32 * 0.013 - 6.5).collect();
        // The rule as the reference states it, one entry at a time.
        let (gx, gw, gb) = maxplus::scalar::grads(p.d, &win, &g);
        // Also into the forward's zero-filled buffer (which is not cleared again).
        let zeroed = maxplus::product(p.d, &p.x, &p.w, p.bias.as_deref(), true, true).grad_w;
        for got in [maxplus::grads(p.d, &win, &g, want, None), maxplus::grads(p.d, &win, &g, want, zeroed)] {
            for ((got, expected), wanted) in got.iter().zip([&gx, &gw, &gb]).zip(want) {
                prop_assert_eq!(got.is_some(), wanted);
                if let Some(got) = got {
                    prop_assert_eq!(bits(got), bits(expected));
                }
            }
        }
    }
}

/// The sparse layer built from `p`'s `-∞` pattern gives the dense layer's
/// outputs and gradients, bit for bit.
fn sparse_equals_dense(p: &Problem) -> Result<(), TestCaseError> {
    sparse_equals_dense_with(p, false)
}

/// [`sparse_equals_dense`], optionally with the first stored weight set to
/// `-∞` in both layers (stored, so still an entry of the sparse pattern).
fn sparse_equals_dense_with(p: &Problem, first_stored_minus_inf: bool) -> Result<(), TestCaseError> {
    let bias: Vec<f32> = p.bias.clone().unwrap_or_else(|| vec![0.5; p.d.n_out]);
    let mut dense = ArrayD::from_shape_vec(IxDyn(&[p.d.n_out, p.d.n_in]), p.w.clone()).unwrap();
    let mut sw = SparseWeight::from_dense(&dense).unwrap();
    if first_stored_minus_inf {
        *dense.iter_mut().find(|v| v.is_finite()).expect("an active weight") = f32::NEG_INFINITY;
        let mut v = sw.values.value().clone();
        v.as_slice_mut().unwrap()[0] = f32::NEG_INFINITY;
        sw.values = Tensor::param(v);
    }
    let x = Tensor::param(ArrayD::from_shape_vec(IxDyn(&[p.d.batch, p.d.n_in]), p.x.clone()).unwrap());
    let (wd, bd) =
        (Tensor::param(dense), Tensor::param(ArrayD::from_shape_vec(IxDyn(&[p.d.n_out]), bias.clone()).unwrap()));
    let bs = Tensor::param(bd.value().clone());
    let y_dense = ops::maxplus(&x, &wd, Some(&bd));
    let y_sparse = ops::sparse_maxplus(&x, &sw.pattern, &sw.values, &bs);
    prop_assert_eq!(bits(y_sparse.data()), bits(y_dense.data()));
    // Values with full mantissas, so sums taken in another order than the
    // dense kernel's would round differently and fail the bit comparison.
    let g: ArrayD<f32> = ArrayD::from_shape_fn(IxDyn(&[p.d.batch, p.d.n_out]), |i| {
        ((i[0] * 7919 + i[1] * 104_729) % 1000) as f32 * 1.37e-3 - 0.6137
    });
    let gd = y_dense.backward_with(&g);
    let gs = y_sparse.backward_with(&g);
    prop_assert_eq!(bits(gs.get(&x).unwrap().as_slice().unwrap()), bits(gd.get(&x).unwrap().as_slice().unwrap()));
    prop_assert_eq!(gs.get(&bs).unwrap(), gd.get(&bd).unwrap());
    prop_assert_eq!(&sw.dense_grad(gs.get(&sw.values).unwrap()), gd.get(&wd).unwrap());
    Ok(())
}

/// A layer big enough for the sparse kernels to split the batch into
/// chunks run in parallel (batch not a multiple of the chunk or the vector
/// width, outputs not a multiple of the row blocks), ~1 % dense.
fn big_sparse_problem(seed: u64) -> Problem {
    let d = Dims { batch: 301, n_in: 700, n_out: 531 };
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 1_000_000) as f32 * 1e-5 - 5.0
    };
    let x = (0..d.batch * d.n_in).map(|_| next()).collect();
    let w = (0..d.n_out * d.n_in)
        .map(|_| {
            let v = next();
            if v < -4.9 { v } else { f32::NEG_INFINITY }
        })
        .collect();
    let bias = Some((0..d.n_out).map(|_| next()).collect());
    Problem { d, x, w, bias }
}

#[test]
fn sparse_kernel_equals_dense_kernel_on_a_layer_split_across_threads() {
    let p = big_sparse_problem(7);
    let active = p.w.iter().filter(|v| v.is_finite()).count();
    assert!((active + p.d.n_out) * p.d.batch > 1 << 20, "{active} entries: too few to run in parallel");
    sparse_equals_dense(&p).unwrap();
}

#[test]
fn sparse_kernel_equals_dense_kernel_on_a_long_batch_of_a_small_layer() {
    // Little work but more batch rows than one chunk holds (256): several
    // chunks of the largest size, the last one ragged.
    let p = Problem {
        d: Dims { batch: 600, n_in: 30, n_out: 20 },
        x: (0..600 * 30).map(|k| ((k * 7919) % 1000) as f32 * 1e-3 - 0.5).collect(),
        w: (0..20 * 30).map(|k| if k % 5 == 0 { (k % 7) as f32 * 0.1 } else { f32::NEG_INFINITY }).collect(),
        bias: Some((0..20).map(|j| j as f32 * 0.05 - 0.6).collect()),
    };
    sparse_equals_dense(&p).unwrap();
}

#[test]
fn sparse_kernel_equals_dense_kernel_on_its_exact_path() {
    // A stored weight of -inf is not finite: the sparse kernel takes its
    // one-output-at-a-time path, which must agree with the dense layer too.
    let mut p = big_sparse_problem(11);
    p.d = Dims { batch: 37, ..p.d };
    p.x.truncate(37 * p.d.n_in);
    sparse_equals_dense_with(&p, true).unwrap();
}

#[test]
fn all_inactive_rows_without_bias_output_minus_infinity_from_index_zero() {
    let p = Problem {
        d: Dims { batch: 3, n_in: 37, n_out: 2 },
        x: vec![1.0; 111],
        w: vec![f32::NEG_INFINITY; 74],
        bias: None,
    };
    for isa in Isa::available() {
        let (y, w) = run(isa, &p, true);
        assert!(y.iter().all(|v| *v == f32::NEG_INFINITY), "{isa:?}");
        assert!(w.iter().all(|&i| i == 0), "{isa:?}");
    }
}

#[test]
fn empty_batches_and_layers_give_empty_outputs() {
    for (batch, n_in, n_out) in [(0, 5, 3), (4, 5, 0), (0, 0, 0), (3, 0, 2)] {
        let d = Dims { batch, n_in, n_out };
        let (x, w) = (vec![0.25f32; batch * n_in], vec![0.5f32; n_out * n_in]);
        let maxplus::Forward { y, winners: win, grad_w } = maxplus::product(d, &x, &w, None, true, true);
        assert_eq!((y.len(), win.len()), (batch * n_out, batch * n_out), "{d:?}");
        assert_eq!(grad_w, Some(vec![0.0; n_out * n_in]), "{d:?}");
        // No inputs and no bias: every output is -inf with no winner.
        assert!(y.iter().all(|&v| v == f32::NEG_INFINITY) && win.iter().all(|&k| k == maxplus::NONE), "{d:?}");
        let grads = maxplus::grads(d, &win, &vec![1.0; batch * n_out], [true, true, true], None);
        let sizes: Vec<usize> = grads.iter().map(|g| g.as_ref().map_or(usize::MAX, Vec::len)).collect();
        assert_eq!(sizes, [batch * n_in, n_out * n_in, n_out], "{d:?}");
        assert!(grads.iter().flatten().flatten().all(|&v| v == 0.0), "{d:?}");
    }
}

#[test]
fn nan_inputs_propagate_like_torch_max() {
    let mut x = vec![0.5f32; 2 * 20];
    x[7] = f32::NAN; // row 0, input 7
    let w = vec![0.0f32; 3 * 20];
    let d = Dims { batch: 2, n_in: 20, n_out: 3 };
    let mut y = vec![0.0; 6];
    let mut win = vec![0u32; 6];
    maxplus::forward(d, &x, &w, Some(&[9.0, 9.0, 9.0]), &mut y, Some(&mut win));
    assert!(y[..3].iter().all(|v| v.is_nan()), "{y:?}");
    assert_eq!(&win[..3], &[7, 7, 7]);
    assert_eq!(&y[3..], &[9.0, 9.0, 9.0], "other rows unaffected");
}

#[test]
fn sparse_rows_without_entries_output_their_bias() {
    let csr = Csr::from_fn(3, 4, |j, i| j == 1 && i == 2);
    let x = [1.0, 2.0, 3.0, 4.0];
    let mut y = [0.0; 3];
    let winners = maxplus::sparse::forward(&csr, 1, &x, &[10.0], &[-1.0, -2.0, -3.0], &mut y, true);
    assert_eq!(y, [-1.0, 13.0, -3.0]);
    assert_eq!(winners.by_row(), &[maxplus::NONE, 0, maxplus::NONE]);
}

#[test]
fn gradcheck_away_from_ties() {
    // Each row of x holds distinct integers and every weight lies in [0, 0.27],
    // so candidates of one output differ by at least 0.73; biases sit halfway
    // between integers. Nothing is within reach of eps = 1e-2.
    let (b, n_in, n_out) = (5, 23, 7);
    let x = ArrayD::from_shape_fn(IxDyn(&[b, n_in]), |i| ((i[1] * 13 + i[0] * 5) % n_in) as f32);
    let w = ArrayD::from_shape_fn(IxDyn(&[n_out, n_in]), |i| ((i[1] * 7 + i[0] * 3) % 10) as f32 * 0.03);
    let bias = ArrayD::from_shape_fn(IxDyn(&[n_out]), |i| ((i[0] * 3) % n_in) as f32 + 19.5 - i[0] as f32);
    let report = gradcheck(|t| ops::maxplus(&t[0], &t[1], Some(&t[2])), &[x, w, bias], 1e-2);
    assert!(report.max_rel_err < 1e-3, "{report}");
}

#[test]
fn signed_zero_maxima_keep_the_first_candidates_sign_in_every_kernel() {
    // Sums of ±0 give +0 or -0, equal as numbers but not as bits: the value
    // must be that of the first candidate attaining the maximum, as in the
    // scalar reference, whichever SIMD kernel runs.
    let (batch, n_in, n_out) = (19, 37, 11);
    let zero = |k: usize| {
        if k.is_multiple_of(3) {
            -0.0f32
        } else if k % 3 == 1 {
            0.0
        } else {
            -1.0
        }
    };
    let p = Problem {
        d: Dims { batch, n_in, n_out },
        x: (0..batch * n_in).map(|k| zero(k * 7 + k / 5)).collect(),
        w: (0..n_out * n_in).map(|k| zero(k * 5 + k / 3)).collect(),
        bias: Some(vec![-2.0; n_out]),
    };
    let (y_ref, w_ref) = run(Isa::Scalar, &p, true);
    assert!(y_ref.iter().any(|v| v.to_bits() == (-0.0f32).to_bits()), "the case needs -0 maxima");
    assert!(y_ref.iter().any(|v| v.to_bits() == 0), "the case needs +0 maxima");
    for isa in Isa::available() {
        let (y, w) = run(isa, &p, true);
        assert_eq!(bits(&y), bits(&y_ref), "{isa:?}");
        assert_eq!(w, w_ref, "{isa:?}");
        let (y, _) = run(isa, &p, false);
        assert_eq!(bits(&y), bits(&y_ref), "{isa:?} without winners");
    }
}

#[test]
fn nan_or_plus_infinity_weights_anywhere_give_the_scalar_results_in_every_kernel() {
    // Each SIMD tile checks the rows of W it reads as it computes: a bad
    // value in any of them — the first or last row, a row of the
    // single-column tiles at the ragged end, the last partial block of
    // inputs, a NaN with its sign bit set — must send the whole product to
    // the exact path. Every ninth weight is -∞ (inactive), so tiles also
    // add -∞ to +∞; huge finite weights that overflow the check's sum must
    // still give the scalar results.
    let d = Dims { batch: 20, n_in: 100, n_out: 515 }; // 100 = 6 blocks of 16 + 4; 515 = 64 tiles of 8 + 3
    let x: Vec<f32> = (0..d.batch * d.n_in).map(|k| (k % 13) as f32 * 0.25 - 1.0).collect();
    for (row, input, bad) in [
        (511, 7, f32::NAN),
        (300, 50, f32::INFINITY),
        (0, 0, f32::NAN),
        (514, 98, f32::NAN),
        (513, 99, f32::INFINITY),
        (200, 33, -f32::NAN),
        (100, 64, f32::MAX),
    ] {
        let mut w: Vec<f32> = (0..d.n_out * d.n_in)
            .map(|k| if k % 9 == 4 { f32::NEG_INFINITY } else { (k % 17) as f32 * 0.125 - 1.0 })
            .collect();
        w[row * d.n_in + input] = bad;
        if bad == f32::MAX {
            w[row * d.n_in..(row + 1) * d.n_in].iter_mut().for_each(|v| *v = f32::MAX);
        }
        let p = Problem { d, x: x.clone(), w, bias: Some(vec![0.5; d.n_out]) };
        let y_ref = every_kernel_gives_the_scalar_results(&p, &format!("bad weight at ({row}, {input})"));
        assert!(
            bad == f32::MAX || y_ref[row].is_nan() || y_ref[row] == f32::INFINITY,
            "row {row} sees its bad weight: {}",
            y_ref[row]
        );
    }
}

/// Every kernel, with and without winners, and `product` into new
/// buffers give the scalar results bit for bit (the SIMD attempt may stop
/// part-way; the exact path then fills every buffer, and zero-fills the
/// weight gradient's). Returns the scalar outputs.
fn every_kernel_gives_the_scalar_results(p: &Problem, case: &str) -> Vec<f32> {
    let (y_ref, w_ref) = run(Isa::Scalar, p, true);
    for isa in Isa::available() {
        for winners in [true, false] {
            let (y, win) = run(isa, p, winners);
            assert_eq!(bits(&y), bits(&y_ref), "{isa:?}: {case}");
            if winners {
                assert_eq!(win, w_ref, "{isa:?}: {case}");
            }
        }
    }
    let out = maxplus::product(p.d, &p.x, &p.w, p.bias.as_deref(), true, true);
    assert_eq!((bits(&out.y), out.winners), (bits(&y_ref), w_ref), "product: {case}");
    assert_eq!(out.grad_w, Some(vec![0.0; p.w.len()]), "product: {case}");
    y_ref
}

#[test]
fn non_finite_inputs_anywhere_give_the_scalar_results_in_every_kernel() {
    // Every thread checks x as it packs its copies of it: a NaN or ±∞ in
    // any row — the first, the first and last of a last, partial panel —
    // must send the whole product to the exact path, with and without
    // winners, and into new buffers with a zero-filled weight gradient.
    let d = Dims { batch: 20, n_in: 100, n_out: 515 }; // 20 rows = 16 + 4 = 8 + 8 + 4
    let w: Vec<f32> = (0..d.n_out * d.n_in)
        .map(|k| if k % 9 == 4 { f32::NEG_INFINITY } else { (k % 17) as f32 * 0.125 - 1.0 })
        .collect();
    for (row, input, bad) in [
        (0, 0, f32::NAN),
        (19, 99, f32::INFINITY),
        (16, 50, f32::NEG_INFINITY),
        (7, 64, -f32::NAN),
        (8, 3, f32::INFINITY),
    ] {
        let mut x: Vec<f32> = (0..d.batch * d.n_in).map(|k| (k % 13) as f32 * 0.25 - 1.0).collect();
        x[row * d.n_in + input] = bad;
        let p = Problem { d, x, w: w.clone(), bias: Some(vec![0.5; d.n_out]) };
        let y_ref = every_kernel_gives_the_scalar_results(&p, &format!("bad input at ({row}, {input})"));
        let y_row = &y_ref[row * d.n_out..(row + 1) * d.n_out];
        // (-∞ only takes its input out of the running.)
        assert!(bad == f32::NEG_INFINITY || y_row.iter().any(|v| !v.is_finite()), "row {row} sees its bad input");
    }
}

#[test]
fn a_second_backward_pass_through_the_same_layer_gives_the_same_gradients() {
    // The first backward pass takes the weight gradient buffer that the
    // forward kernel zero-filled; a second one through the same graph
    // builds its own. Both must scatter into zeros.
    let (batch, n_in, n_out) = (21, 45, 19);
    let ramp = |n: usize, step: f32| ArrayD::from_shape_fn(IxDyn(&[n]), |i| ((i[0] * 37) % 101) as f32 * step - 1.0);
    let x = Tensor::param(ramp(batch * n_in, 0.031).into_shape_with_order(IxDyn(&[batch, n_in])).unwrap());
    let w = Tensor::param(ramp(n_out * n_in, 0.017).into_shape_with_order(IxDyn(&[n_out, n_in])).unwrap());
    let b = Tensor::param(ramp(n_out, 0.02));
    let y = ops::maxplus(&x, &w, Some(&b));
    let g = ramp(batch * n_out, 0.05).into_shape_with_order(IxDyn(&[batch, n_out])).unwrap();
    let (first, second) = (y.backward_with(&g), y.backward_with(&g));
    for t in [&x, &w, &b] {
        assert_eq!(first.get(t), second.get(t));
    }
    let gw = first.get(&w).unwrap();
    assert!(gw.iter().any(|&v| v != 0.0) && gw.iter().filter(|&&v| v != 0.0).count() <= batch * n_out);
}
