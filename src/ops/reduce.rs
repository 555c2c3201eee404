//! Reductions: sums, means and the max over an axis with argmax routing.
//!
//! **Subgradient of `max`.** `y = max_l x[l]` is not differentiable at ties;
//! we use the subgradient that sends the whole upstream gradient to one
//! winner: `dy/dx[l*] = 1`, every other `x[l]` gets 0. The winner is the
//! *lowest* index among exact ties (PyTorch's CPU rule), and a NaN wins over
//! any number (NaN propagates, as `torch.max` does; the first NaN wins).

use ndarray::{ArrayD, Axis, IxDyn};

use crate::autograd::{Op, is_recording};
use crate::tensor::Tensor;

impl Tensor {
    /// Sum of every element, as a 0-d tensor; backward broadcasts `g`.
    pub fn sum_all(&self) -> Tensor {
        let s: f64 = self.data().iter().map(|&v| v as f64).sum();
        Tensor::from_op(ArrayD::from_elem(IxDyn(&[]), s as f32), Op::SumAll(self.clone()))
    }

    /// Mean of every element.
    pub fn mean_all(&self) -> Tensor {
        self.sum_all().scale(1.0 / self.numel().max(1) as f32)
    }

    /// Sum over one axis, which is removed.
    pub fn sum_axis(&self, axis: usize) -> Tensor {
        assert!(axis < self.ndim(), "sum_axis({axis}) of shape {:?}", self.shape());
        let v = self.value().sum_axis(Axis(axis));
        Tensor::from_op(v, Op::SumAxis(self.clone(), axis))
    }

    /// Mean over one axis, which is removed.
    pub fn mean_axis(&self, axis: usize) -> Tensor {
        assert!(axis < self.ndim(), "mean_axis({axis}) of shape {:?}", self.shape());
        self.sum_axis(axis).scale(1.0 / self.shape()[axis].max(1) as f32)
    }

    /// Maximum over one axis (removed); see the module docs for the winner rule.
    pub fn max_axis(&self, axis: usize) -> Tensor {
        let shape = self.shape();
        assert!(axis < shape.len() && shape[axis] > 0, "max_axis({axis}) of shape {shape:?}");
        let (outer, len, inner) = split_at_axis(shape, axis);
        let x = self.data();
        let mut values = vec![0.0f32; outer * inner];
        let mut argmax = vec![0u32; outer * inner];
        for o in 0..outer {
            let block = &x[o * len * inner..(o + 1) * len * inner];
            let (vals, args) = (&mut values[o * inner..(o + 1) * inner], &mut argmax[o * inner..(o + 1) * inner]);
            vals.copy_from_slice(&block[..inner]);
            for l in 1..len {
                for i in 0..inner {
                    let v = block[l * inner + i];
                    if v > vals[i] || (v.is_nan() && !vals[i].is_nan()) {
                        vals[i] = v;
                        args[i] = l as u32;
                    }
                }
            }
        }
        let mut out_shape = shape.to_vec();
        out_shape.remove(axis);
        let v = ArrayD::from_shape_vec(IxDyn(&out_shape), values).expect("sizes agree");
        let argmax = if is_recording(&[self]) { argmax } else { Vec::new() };
        Tensor::from_op(v, Op::MaxAxis { x: self.clone(), axis, argmax })
    }

    /// Max over every axis from 2 on: `[N, C, H, W] -> [N, C]` (global max pool).
    pub fn global_max_pool(&self) -> Tensor {
        assert!(self.ndim() >= 3, "global_max_pool expects [N, C, ...], got {:?}", self.shape());
        self.flatten(2).max_axis(2)
    }
}

/// `(outer, len, inner)` sizes around `axis` of a row-major shape.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// `dx[i] = g` for every element: each one adds to the sum with weight 1.
pub(crate) fn sum_all_backward(x_shape: &[usize], g: &ArrayD<f32>) -> ArrayD<f32> {
    ArrayD::from_elem(IxDyn(x_shape), crate::autograd::scalar(g))
}

pub(crate) fn sum_axis_backward(x_shape: &[usize], axis: usize, g: &ArrayD<f32>) -> ArrayD<f32> {
    g.view().insert_axis(Axis(axis)).broadcast(IxDyn(x_shape)).expect("sum shape").to_owned()
}

/// Route each upstream gradient entry to its winner.
pub(crate) fn max_axis_backward(x_shape: &[usize], axis: usize, argmax: &[u32], g: &ArrayD<f32>) -> ArrayD<f32> {
    let (outer, len, inner) = split_at_axis(x_shape, axis);
    let g = g.as_slice().expect("std");
    let mut gx = vec![0.0f32; outer * len * inner];
    for o in 0..outer {
        for i in 0..inner {
            let k = o * inner + i;
            gx[(o * len + argmax[k] as usize) * inner + i] += g[k];
        }
    }
    ArrayD::from_shape_vec(IxDyn(x_shape), gx).expect("sizes agree")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_axis_ties_go_to_the_lowest_index() {
        let x = Tensor::param(ndarray::arr2(&[[1.0f32, 3.0, 3.0], [2.0, 2.0, 2.0]]).into_dyn());
        let y = x.max_axis(1);
        assert_eq!(y.data(), &[3.0, 2.0]);
        let g = y.sum_all().backward();
        assert_eq!(g.get(&x).unwrap().as_slice().unwrap(), &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn max_axis_propagates_nan() {
        let x = Tensor::from_vec(&[3], vec![1.0, f32::NAN, 5.0]);
        assert!(x.max_axis(0).item().is_nan());
    }

    #[test]
    fn max_over_a_middle_axis_keeps_the_others() {
        let x = Tensor::from_vec(&[2, 3, 2], (0..12).map(|v| ((v * 5) % 7) as f32).collect());
        let y = x.max_axis(1);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.data(), &[6.0, 5.0, 5.0, 6.0]);
    }
}
