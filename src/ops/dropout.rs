//! Inverted dropout: in training each element is kept with probability
//! `1 - p` and scaled by `1/(1-p)`, so evaluation is the identity.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, RngExt};

use crate::autograd::Op;
use crate::tensor::Tensor;

/// Drop elements of `x` with probability `p`, drawing the mask from `rng`
/// (one uniform draw per element, in row-major order: seeded runs repeat).
pub fn dropout(x: &Tensor, p: f32, rng: &mut impl Rng) -> Tensor {
    assert!((0.0..=1.0).contains(&p), "dropout probability {p} is not in [0, 1]");
    if p == 0.0 {
        return x.clone();
    }
    let keep: Vec<bool> = (0..x.numel()).map(|_| rng.random::<f32>() >= p).collect();
    dropout_with_mask(x, &keep, p)
}

/// Dropout with a given keep-mask: `y = x · mask / (1 - p)` (all zeros when `p = 1`).
pub fn dropout_with_mask(x: &Tensor, keep: &[bool], p: f32) -> Tensor {
    assert_eq!(keep.len(), x.numel(), "dropout mask of {} entries for input {:?}", keep.len(), x.shape());
    let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    let mask: Vec<f32> = keep.iter().map(|&k| if k { scale } else { 0.0 }).collect();
    let y = x.data().iter().zip(&mask).map(|(&v, &m)| v * m).collect();
    let v = ArrayD::from_shape_vec(IxDyn(x.shape()), y).expect("same shape");
    Tensor::from_op(v, Op::Dropout { x: x.clone(), mask })
}

/// `dx = g · mask`: the kept elements pass the gradient on, scaled as they were.
pub(crate) fn dropout_backward(mask: &[f32], g: &ArrayD<f32>) -> ArrayD<f32> {
    let gx = g.iter().zip(mask).map(|(&g, &m)| g * m).collect();
    ArrayD::from_shape_vec(IxDyn(g.shape()), gx).expect("same shape")
}
