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

use crate::autograd::{Op, is_recording};
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
    let out = maxplus::forward_new(d, x.data(), weight.data(), bias.map(|b| b.data()), record, zero_gw);
    let v = ArrayD::from_shape_vec(IxDyn(&[d.batch, d.n_out]), out.y).expect("N*out");
    Tensor::from_op(
        v,
        Op::MaxPlus {
            x: x.clone(),
            weight: weight.clone(),
            bias: bias.cloned(),
            winners: out.winners,
            grad_w: Mutex::new(out.grad_w),
        },
    )
}

/// `[dx, dW, db]` of [`maxplus`] by routing `g` to the saved winners.
pub(crate) fn maxplus_backward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    winners: &[u32],
    grad_w: &Mutex<Option<Vec<f32>>>,
    g: &ArrayD<f32>,
) -> [Option<ArrayD<f32>>; 3] {
    let d = Dims { batch: x.shape()[0], n_in: x.shape()[1], n_out: weight.shape()[0] };
    let want = [x.requires_grad(), weight.requires_grad(), bias.is_some_and(Tensor::requires_grad)];
    // The forward's zero-filled buffer, unless an earlier backward pass
    // through this op took it.
    let zeroed = grad_w.lock().unwrap_or_else(|e| e.into_inner()).take();
    let [gx, gw, gb] = maxplus::grads_with(d, winners, g.as_slice().expect("std"), want, zeroed);
    [shaped(gx, x), shaped(gw, weight), bias.and_then(|b| shaped(gb, b))]
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
    Tensor::from_op(
        v,
        Op::SparseMaxPlus {
            x: x.clone(),
            pattern: pattern.clone(),
            values: values.clone(),
            bias: bias.clone(),
            winners,
        },
    )
}

/// `[dx, dvalues, db]` of [`sparse_maxplus`].
pub(crate) fn sparse_maxplus_backward(
    x: &Tensor,
    pattern: &Csr,
    values: &Tensor,
    bias: &Tensor,
    winners: &Winners,
    g: &ArrayD<f32>,
) -> [Option<ArrayD<f32>>; 3] {
    let (mut gx, mut gv, mut gb) = (zeros_if_needed(x), zeros_if_needed(values), zeros_if_needed(bias));
    maxplus::sparse::scatter_grads(
        pattern,
        winners,
        g.as_slice().expect("std"),
        slot(&mut gx),
        slot(&mut gv),
        slot(&mut gb),
    );
    [shaped(gx, x), shaped(gv, values), shaped(gb, bias)]
}
