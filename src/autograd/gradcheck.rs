//! Finite-difference gradient checking.
//!
//! For a function `f` of some input arrays, gradcheck compares the analytic
//! gradient of the scalar `L = Σ f(x) ⊙ r` (with a fixed random `r`, so
//! every output element matters) against central differences
//! `(L(x + εe_j) - L(x - εe_j)) / 2ε`, evaluated in f64 from f32 outputs.

use std::fmt;

use ndarray::ArrayD;
use rand::{RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};

use super::mode::no_grad;
use crate::tensor::Tensor;

/// Worst disagreement found by [`gradcheck`].
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Largest `|analytic - numeric|` over all checked entries.
    pub max_abs_err: f64,
    /// Largest `|analytic - numeric| / max_j |numeric_j|` (per input: the
    /// error relative to that input's gradient scale).
    pub max_rel_err: f64,
    /// Where the largest relative error occurred: `(input, flat index)`.
    pub worst: (usize, usize),
    /// Number of entries compared.
    pub checked: usize,
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradcheck: {} entries, max abs err {:.3e}, max rel err {:.3e} (input {}, index {})",
            self.checked, self.max_abs_err, self.max_rel_err, self.worst.0, self.worst.1
        )
    }
}

fn projected(y: &Tensor, r: &[f32]) -> f64 {
    y.data().iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Compare analytic and numeric gradients of `f` at `inputs` with step `eps`.
///
/// `f` receives the inputs as leaf tensors and may build any graph from them
/// (it is called once with recording on and `2·Σ numel` times inside
/// `no_grad`). Choose points away from kinks (ReLU at 0, ties of a max):
/// there the two sides of the difference disagree by design.
///
/// ```
/// use morphgrad::autograd::gradcheck;
/// use ndarray::arr2;
/// let x = arr2(&[[0.3f32, -1.2], [2.0, 0.7]]).into_dyn();
/// let report = gradcheck(|t| t[0].sigmoid().mul(&t[0]), &[x], 1e-2);
/// assert!(report.max_rel_err < 1e-3, "{report}");
/// ```
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[ArrayD<f32>], eps: f32) -> GradcheckReport {
    let leaves: Vec<Tensor> = inputs.iter().map(|a| Tensor::param(a.clone())).collect();
    let y = f(&leaves);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x6772_6164);
    let r: Vec<f32> = (0..y.numel()).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    let loss = y.mul(&Tensor::from_vec(y.shape(), r.clone())).sum_all();
    let grads = loss.backward();

    let mut report = GradcheckReport { max_abs_err: 0.0, max_rel_err: 0.0, worst: (0, 0), checked: 0 };
    for (i, input) in inputs.iter().enumerate() {
        let analytic = grads.get(&leaves[i]).cloned().unwrap_or_else(|| ArrayD::zeros(input.raw_dim()));
        let mut numeric = vec![0.0f64; input.len()];
        for (j, num) in numeric.iter_mut().enumerate() {
            let at = |delta: f32| {
                let mut x = input.as_standard_layout().into_owned();
                let v = &mut x.as_slice_mut().expect("std")[j];
                *v += delta;
                let used = *v;
                let args: Vec<Tensor> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, a)| Tensor::new(if k == i { x.clone() } else { a.clone() }))
                    .collect();
                (used, no_grad(|| projected(&f(&args), &r)))
            };
            let (hi, lp) = at(eps);
            let (lo, lm) = at(-eps);
            *num = (lp - lm) / (hi as f64 - lo as f64);
        }
        let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
        let analytic = analytic.as_standard_layout();
        for (j, (&a, &n)) in analytic.as_slice().expect("std").iter().zip(&numeric).enumerate() {
            let abs = (a as f64 - n).abs();
            report.max_abs_err = report.max_abs_err.max(abs);
            if abs / scale > report.max_rel_err {
                report.max_rel_err = abs / scale;
                report.worst = (i, j);
            }
            report.checked += 1;
        }
    }
    report
}
