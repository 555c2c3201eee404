//! Log-softmax, cross-entropy (mean, integer labels) and binary cross-entropy
//! on probabilities (mean, PyTorch's clamps).

use ndarray::{ArrayD, IxDyn};

use crate::autograd::Op;
use crate::tensor::Tensor;

/// Rows of the last axis: `(rows, width)`.
fn rows(shape: &[usize]) -> (usize, usize) {
    let k = *shape.last().expect("at least one axis");
    (shape.iter().product::<usize>() / k.max(1), k)
}

/// Numerically stable `log softmax` of one row into `out`.
fn log_softmax_row(z: &[f32], out: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64 + z.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln();
    for (o, &v) in out.iter_mut().zip(z) {
        *o = (v as f64 - lse) as f32;
    }
}

impl Tensor {
    /// `log softmax` over the last axis; backward `g - softmax · Σ g` per row.
    pub fn log_softmax(&self) -> Tensor {
        assert!(self.ndim() >= 1, "log_softmax of a 0-d tensor");
        let (_, k) = rows(self.shape());
        let mut out = vec![0.0f32; self.numel()];
        for (z, o) in self.data().chunks_exact(k).zip(out.chunks_exact_mut(k)) {
            log_softmax_row(z, o);
        }
        let v = ArrayD::from_shape_vec(IxDyn(self.shape()), out).expect("same shape");
        Tensor::from_op(v, Op::LogSoftmax(self.clone()))
    }
}

pub(crate) fn log_softmax_backward(y: &ArrayD<f32>, g: &ArrayD<f32>) -> ArrayD<f32> {
    let (_, k) = rows(y.shape());
    let mut gx = vec![0.0f32; y.len()];
    let (yd, gd) = (y.as_slice().expect("std"), g.as_slice().expect("std"));
    for ((yr, gr), o) in yd.chunks_exact(k).zip(gd.chunks_exact(k)).zip(gx.chunks_exact_mut(k)) {
        let total: f32 = gr.iter().sum();
        for ((o, &yv), &gv) in o.iter_mut().zip(yr).zip(gr) {
            *o = gv - yv.exp() * total;
        }
    }
    ArrayD::from_shape_vec(y.raw_dim(), gx).expect("same shape")
}

/// `mean_n (logsumexp(z_n) - z_n[y_n])` for `logits [N, K]` and class ids
/// `labels` (each `< K`); backward `(softmax(z) - onehot(y)) / N`.
/// Panics naming the first bad label.
pub fn cross_entropy(logits: &Tensor, labels: &[usize]) -> Tensor {
    assert!(
        logits.ndim() == 2 && logits.shape()[0] == labels.len(),
        "cross_entropy: logits {:?} for {} labels (expects [N, K] with N = labels)",
        logits.shape(),
        labels.len()
    );
    let k = logits.shape()[1];
    if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= k) {
        panic!("cross_entropy: label {l} at position {i} is not a class id below {k}");
    }
    let mut logp = vec![0.0f32; logits.numel()];
    let mut total = 0.0f64;
    for ((z, o), &l) in logits.data().chunks_exact(k).zip(logp.chunks_exact_mut(k)).zip(labels) {
        log_softmax_row(z, o);
        total -= o[l] as f64;
    }
    let loss = (total / labels.len().max(1) as f64) as f32;
    let probs = logp.into_iter().map(f32::exp).collect();
    Tensor::from_op(
        ArrayD::from_elem(IxDyn(&[]), loss),
        Op::CrossEntropy { logits: logits.clone(), labels: labels.to_vec(), probs },
    )
}

pub(crate) fn cross_entropy_backward(shape: &[usize], labels: &[usize], probs: &[f32], g: f32) -> ArrayD<f32> {
    let k = shape[1];
    let scale = g / labels.len().max(1) as f32;
    let mut gx: Vec<f32> = probs.iter().map(|&p| p * scale).collect();
    for (row, &l) in gx.chunks_exact_mut(k).zip(labels) {
        row[l] -= scale;
    }
    ArrayD::from_shape_vec(IxDyn(shape), gx).expect("shape of logits")
}

/// `-mean(t·log p + (1-t)·log(1-p))` with each log clamped at -100, as
/// `torch.nn.BCELoss`; backward `(p - t) / max(p(1-p), 1e-12) / numel`.
/// `probs` must lie in `[0, 1]` and have the shape of `target`.
pub fn binary_cross_entropy(probs: &Tensor, target: &Tensor) -> Tensor {
    assert_eq!(
        probs.shape(),
        target.shape(),
        "binary_cross_entropy: probabilities {:?} vs targets {:?}",
        probs.shape(),
        target.shape()
    );
    if let Some(p) = probs.data().iter().find(|p| !(0.0..=1.0).contains(*p)) {
        panic!("binary_cross_entropy: input {p} is not a probability in [0, 1] (apply sigmoid first)");
    }
    let total: f64 = probs
        .data()
        .iter()
        .zip(target.data())
        .map(|(&p, &t)| {
            let lp = (p as f64).ln().max(-100.0);
            let lq = (-(p as f64)).ln_1p().max(-100.0);
            -(t as f64 * lp + (1.0 - t as f64) * lq)
        })
        .sum();
    let loss = (total / probs.numel().max(1) as f64) as f32;
    Tensor::from_op(ArrayD::from_elem(IxDyn(&[]), loss), Op::Bce { probs: probs.clone(), target: target.clone() })
}

pub(crate) fn bce_backward(probs: &Tensor, target: &Tensor, g: f32) -> ArrayD<f32> {
    let scale = g / probs.numel().max(1) as f32;
    let gx =
        probs.data().iter().zip(target.data()).map(|(&p, &t)| scale * (p - t) / ((1.0 - p) * p).max(1e-12)).collect();
    ArrayD::from_shape_vec(IxDyn(probs.shape()), gx).expect("shape of probs")
}
