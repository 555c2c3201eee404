//! Elementwise arithmetic with NumPy broadcasting, scaling, ReLU and sigmoid.
//!
//! Backward of a broadcast op: the upstream gradient has the output's shape;
//! every axis an input was stretched along is summed back out ([`unbroadcast`]).

use ndarray::{ArrayD, Axis, IxDyn};

use crate::autograd::Op;
use crate::kernels;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
        }
    }
}

/// The broadcast shape of `a` and `b` (NumPy rules), or a panic naming both.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => panic!("shapes {a:?} and {b:?} do not broadcast"),
            }
        })
        .collect()
}

fn arith(a: &Tensor, b: &Tensor, kind: Arith) -> Tensor {
    let value = if a.shape() == b.shape() {
        let v = kernels::zip_map(a.data(), b.data(), |x, y| kind.apply(x, y));
        ArrayD::from_shape_vec(IxDyn(a.shape()), v).expect("same shape")
    } else {
        let shape = broadcast_shape(a.shape(), b.shape());
        let av = a.value().broadcast(IxDyn(&shape)).expect("checked");
        let bv = b.value().broadcast(IxDyn(&shape)).expect("checked");
        ndarray::Zip::from(&av).and(&bv).map_collect(|&x, &y| kind.apply(x, y))
    };
    Tensor::from_op(value, Op::Arith(kind, a.clone(), b.clone()))
}

/// Sum `g` (shaped like a broadcast result) back down to `shape`.
pub fn unbroadcast(g: &ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    let mut g = g.clone();
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (axis, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[axis] != 1 {
            g = g.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        }
    }
    g
}

/// Gradients of `a ∘ b` for ∘ in {+, −, ×, ÷}, for the inputs that need one:
/// `d(a+b) = g, g`; `d(a−b) = g, −g`; `d(ab) = g·b, g·a`; `d(a/b) = g/b, −g·a/b²`.
pub(crate) fn arith_backward(kind: Arith, a: &Tensor, b: &Tensor, g: &ArrayD<f32>) -> [Option<ArrayD<f32>>; 2] {
    let shape = g.shape().to_vec();
    // Both operands at the output's shape, as contiguous slices (copied only when broadcast).
    let (av, bv) = (at_shape(a, &shape), at_shape(b, &shape));
    let (gs, avs, bvs) = (g.as_slice().expect("std"), &av[..], &bv[..]);
    let back = |v: Vec<f32>, t: &Tensor| {
        unbroadcast(&ArrayD::from_shape_vec(IxDyn(&shape), v).expect("output shape"), t.shape())
    };
    let ga = a.requires_grad().then(|| match kind {
        Arith::Add | Arith::Sub => unbroadcast(g, a.shape()),
        Arith::Mul => back(kernels::zip_map(gs, bvs, |g, b| g * b), a),
        Arith::Div => back(kernels::zip_map(gs, bvs, |g, b| g / b), a),
    });
    let gb = b.requires_grad().then(|| match kind {
        Arith::Add => unbroadcast(g, b.shape()),
        Arith::Sub => back(kernels::map(gs, |g| -g), b),
        Arith::Mul => back(kernels::zip_map(gs, avs, |g, a| g * a), b),
        Arith::Div => {
            let q = kernels::zip_map(avs, bvs, |a, b| a / (b * b));
            back(kernels::zip_map(gs, &q, |g, q| -g * q), b)
        }
    });
    [ga, gb]
}

/// The values of `t` broadcast to `shape`, borrowed when no broadcast is needed.
fn at_shape<'a>(t: &'a Tensor, shape: &[usize]) -> std::borrow::Cow<'a, [f32]> {
    if t.shape() == shape {
        t.data().into()
    } else {
        let v = t.value().broadcast(IxDyn(shape)).expect("forward broadcast");
        v.iter().copied().collect::<Vec<f32>>().into()
    }
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Tensor {
        arith(self, other, Arith::Add)
    }
    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        arith(self, other, Arith::Sub)
    }
    /// `self * other` elementwise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        arith(self, other, Arith::Mul)
    }
    /// `self / other` elementwise, broadcasting.
    pub fn div(&self, other: &Tensor) -> Tensor {
        arith(self, other, Arith::Div)
    }

    /// `c · self`; backward `c · g`.
    pub fn scale(&self, c: f32) -> Tensor {
        let v = kernels::map(self.data(), |x| c * x);
        Tensor::from_op(shaped(self, v), Op::Scale(self.clone(), c))
    }

    /// `max(x, 0)` (NaN stays NaN); backward passes `g` where `y > 0`
    /// (PyTorch's rule: the gradient at exactly 0 is 0).
    pub fn relu(&self) -> Tensor {
        let v = kernels::map(self.data(), relu_value);
        Tensor::from_op(shaped(self, v), Op::Relu(self.clone()))
    }

    /// `1 / (1 + e^-x)`; backward `g · y (1 - y)`.
    pub fn sigmoid(&self) -> Tensor {
        let v = kernels::map(self.data(), sigmoid);
        Tensor::from_op(shaped(self, v), Op::Sigmoid(self.clone()))
    }
}

/// `max(x, 0)`, NaN kept.
#[inline(always)]
pub(crate) fn relu_value(x: f32) -> f32 {
    if x > 0.0 || x.is_nan() { x } else { 0.0 }
}

/// The logistic function, written so that neither tail overflows.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `dx = c · g`.
pub(crate) fn scale_backward(c: f32, g: &ArrayD<f32>) -> ArrayD<f32> {
    g.mapv(|v| v * c)
}

/// `dx = g` where `y > 0`, else 0.
pub(crate) fn relu_backward(y: &ArrayD<f32>, g: &ArrayD<f32>) -> ArrayD<f32> {
    let v =
        kernels::zip_map(y.as_slice().expect("std"), g.as_slice().expect("std"), |y, g| if y > 0.0 { g } else { 0.0 });
    ArrayD::from_shape_vec(y.raw_dim(), v).expect("same shape")
}

pub(crate) fn sigmoid_backward(y: &ArrayD<f32>, g: &ArrayD<f32>) -> ArrayD<f32> {
    let v = kernels::zip_map(y.as_slice().expect("std"), g.as_slice().expect("std"), |y, g| g * y * (1.0 - y));
    ArrayD::from_shape_vec(y.raw_dim(), v).expect("same shape")
}

pub(crate) fn shaped(like: &Tensor, v: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(like.shape()), v).expect("same number of elements")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy_rules() {
        assert_eq!(broadcast_shape(&[4, 1, 3], &[5, 1]), vec![4, 5, 3]);
        assert_eq!(broadcast_shape(&[], &[2, 2]), vec![2, 2]);
    }

    #[test]
    #[should_panic(expected = "do not broadcast")]
    fn incompatible_shapes_panic_with_both_shapes() {
        broadcast_shape(&[3, 2], &[4]);
    }

    #[test]
    fn broadcast_add_sums_gradient_over_stretched_axes() {
        let a = Tensor::param(ArrayD::from_elem(IxDyn(&[2, 3]), 1.0));
        let b = Tensor::param(ArrayD::from_elem(IxDyn(&[3]), 2.0));
        let g = a.add(&b).sum_all().backward();
        assert_eq!(g.get(&b).unwrap().as_slice().unwrap(), &[2.0, 2.0, 2.0]);
        assert_eq!(g.get(&a).unwrap().as_slice().unwrap(), &[1.0; 6]);
    }

    #[test]
    fn relu_gradient_at_exact_zero_is_zero() {
        let x = Tensor::param(ndarray::arr1(&[-1.0f32, 0.0, 2.0]).into_dyn());
        let g = x.relu().sum_all().backward();
        assert_eq!(g.get(&x).unwrap().as_slice().unwrap(), &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
    }
}
