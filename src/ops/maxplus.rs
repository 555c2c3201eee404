//! The max-plus (tropical) layer ops, dense and explicitly sparse:
//!
//! `y[n, j] = max(b[j], max_i x[n, i] + W[j, i])`.
//!
//! Forward computes the value *and* the winner of every output in one pass
//! of the kernel (`kernels::maxplus`). Backward is the subgradient of `max`:
//! `g[n, j]` flows whole to the winning candidate — to `x[n, i*]` and
//! `W[j, i*]`, or to `b[j]` when the bias won — and nothing flows anywhere
//! else. A weight that never wins never learns; a `-∞` (inactive) weight
//! can never win. See `docs/subgradients.md` for the full story.

use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, IxDyn};

use crate::autograd::{CustomOp, Grad, Op, is_recording};
use crate::kernels::maxplus::{
    self, Dims,
    sparse::{Csr, Winners},
};
use crate::tensor::Tensor;

/// Dense max-plus product: `x [N, in]`, `weight [out, in]` (entries may be
/// `-∞`: inactive), optional `bias [out]` (the last candidate of each max).
pub fn maxplus(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    assert!(
        x.ndim() == 2 && weight.ndim() == 2 && x.shape()[1] == weight.shape()[1],
        "maxplus: input {:?} does not fit weight {:?} (expects [N, in] and [out, in])",
        x.shape(),
        weight.shape()
    );
    let d = Dims { batch: x.shape()[0], n_in: x.shape()[1], n_out: weight.shape()[0] };
    if let Some(b) = bias {
        assert_eq!(b.shape(), &[d.n_out], "maxplus: bias {:?} for {} outputs", b.shape(), d.n_out);
    }
    let record = is_recording(&[x, weight]) || bias.is_some_and(|b| is_recording(&[b]));
    // The kernel clears the weight gradient's buffer while it reads W (at
    // half the cost of clearing it in the backward); the backward pass
    // takes it from the op.
    let zero_gw = record && weight.requires_grad();
    let out = maxplus::product(d, x.data(), weight.data(), bias.map(|b| b.data()), record, zero_gw);
    let v = ArrayD::from_shape_vec(IxDyn(&[d.batch, d.n_out]), out.y).expect("N*out");
    let op = MaxPlusOp {
        x: x.clone(),
        weight: weight.clone(),
        bias: bias.cloned(),
        winners: out.winners,
        grad_w: Mutex::new(out.grad_w),
    };
    Tensor::from_op(v, Op::Custom(Box::new(op)))
}

/// What a dense max-plus product keeps for its backward: its inputs, the
/// winner of every output (`winners[n*out + j]`: the winning input, or `in`
/// when the bias won), and a zero-filled buffer for the weight gradient that
/// the forward kernel cleared while it read `W` (when the weight wants a
/// gradient), for the first backward pass to take.
struct MaxPlusOp {
    x: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
    winners: Vec<u32>,
    grad_w: Mutex<Option<Vec<f32>>>,
}

impl CustomOp for MaxPlusOp {
    fn name(&self) -> &'static str {
        "maxplus"
    }

    fn inputs(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.x, &self.weight];
        v.extend(&self.bias);
        v
    }

    /// `[dx, dW, db]`: `g` routed to the saved winners (the rule:
    /// [`maxplus::scalar::grads`]).
    fn backward(&self, _out: &Tensor, g: &Grad) -> Vec<Option<Grad>> {
        let (x, weight, bias) = (&self.x, &self.weight, self.bias.as_ref());
        let d = Dims { batch: x.shape()[0], n_in: x.shape()[1], n_out: weight.shape()[0] };
        let want = [x.requires_grad(), weight.requires_grad(), bias.is_some_and(Tensor::requires_grad)];
        // The forward's zero-filled buffer, unless an earlier backward pass
        // through this op took it.
        let zeroed = self.grad_w.lock().unwrap_or_else(|e| e.into_inner()).take();
        let [gx, gw, gb] = maxplus::grads(d, &self.winners, g.as_slice().expect("std"), want, zeroed);
        let mut grads = vec![shaped(gx, x), shaped(gw, weight)];
        grads.extend(bias.map(|b| shaped(gb, b)));
        grads
    }
}

/// A zeroed gradient buffer for `t`, if `t` wants a gradient.
fn zeros_if_needed(t: &Tensor) -> Option<Vec<f32>> {
    t.requires_grad().then(|| vec![0.0; t.numel()])
}

/// The buffer to scatter into; an empty slice tells the kernel to skip it.
fn slot(buf: &mut Option<Vec<f32>>) -> &mut [f32] {
    buf.as_deref_mut().unwrap_or(&mut [])
}

fn shaped(buf: Option<Vec<f32>>, like: &Tensor) -> Option<ArrayD<f32>> {
    buf.map(|v| ArrayD::from_shape_vec(IxDyn(like.shape()), v).expect("shape of the input"))
}

/// Sparse max-plus product: only the entries of `pattern` are weights,
/// `values [nnz]` holds them in pattern order; every other weight is `-∞`.
/// `bias [out]` is mandatory (a row without entries outputs its bias).
pub fn sparse_maxplus(x: &Tensor, pattern: &Arc<Csr>, values: &Tensor, bias: &Tensor) -> Tensor {
    assert!(
        x.ndim() == 2 && x.shape()[1] == pattern.n_in,
        "sparse_maxplus: input {:?} does not fit a [{}, {}] weight",
        x.shape(),
        pattern.n_out,
        pattern.n_in
    );
    assert_eq!(values.shape(), &[pattern.nnz()], "sparse_maxplus: values for {} entries", pattern.nnz());
    assert_eq!(bias.shape(), &[pattern.n_out], "sparse_maxplus: bias {:?} for {} outputs", bias.shape(), pattern.n_out);
    let batch = x.shape()[0];
    let record = is_recording(&[x, values, bias]);
    let mut y = vec![0.0f32; batch * pattern.n_out];
    let winners = maxplus::sparse::forward(pattern, batch, x.data(), values.data(), bias.data(), &mut y, record);
    let v = ArrayD::from_shape_vec(IxDyn(&[batch, pattern.n_out]), y).expect("N*out");
    let op =
        SparseMaxPlusOp { x: x.clone(), pattern: pattern.clone(), values: values.clone(), bias: bias.clone(), winners };
    Tensor::from_op(v, Op::Custom(Box::new(op)))
}

/// What a sparse max-plus product keeps for its backward: its inputs, the
/// pattern of active weights, and the winner of every output (an entry of
/// `values`, or `kernels::maxplus::NONE` for the bias).
struct SparseMaxPlusOp {
    x: Tensor,
    pattern: Arc<Csr>,
    values: Tensor,
    bias: Tensor,
    winners: Winners,
}

impl CustomOp for SparseMaxPlusOp {
    fn name(&self) -> &'static str {
        "sparse_maxplus"
    }

    fn inputs(&self) -> Vec<&Tensor> {
        vec![&self.x, &self.values, &self.bias]
    }

    /// `[dx, dvalues, db]`: the dense rule with weights that are entries of
    /// the pattern.
    fn backward(&self, _out: &Tensor, g: &Grad) -> Vec<Option<Grad>> {
        let (x, values, bias) = (&self.x, &self.values, &self.bias);
        let (mut gx, mut gv, mut gb) = (zeros_if_needed(x), zeros_if_needed(values), zeros_if_needed(bias));
        maxplus::sparse::scatter_grads(
            &self.pattern,
            &self.winners,
            g.as_slice().expect("std"),
            slot(&mut gx),
            slot(&mut gv),
            slot(&mut gb),
        );
        vec![shaped(gx, x), shaped(gv, values), shaped(gb, bias)]
    }
}
