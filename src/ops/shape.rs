//! Reshape, flatten, permute/transpose, concat and stack. Backward moves the
//! gradient back through the inverse rearrangement.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::autograd::Op;
use crate::tensor::Tensor;

/// `dx = g` in `x`'s shape (a reshape keeps row-major order, so the values line up).
pub(crate) fn reshape_backward(x_shape: &[usize], g: &ArrayD<f32>) -> ArrayD<f32> {
    g.clone().into_shape_with_order(IxDyn(x_shape)).expect("same size")
}

impl Tensor {
    /// The same values in a new shape (row-major order is kept).
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(n, self.numel(), "reshape: {:?} has {} values, {shape:?} needs {n}", self.shape(), self.numel());
        let v = ArrayD::from_shape_vec(IxDyn(shape), self.data().to_vec()).expect("checked");
        Tensor::from_op(v, Op::Reshape(self.clone()))
    }

    /// Collapse every axis from `start` on into one: `[N, C, H, W] -> [N, C*H*W]` for `start = 1`.
    pub fn flatten(&self, start: usize) -> Tensor {
        let shape = self.shape();
        assert!(start < shape.len().max(1), "flatten({start}) of shape {shape:?}");
        let mut new: Vec<usize> = shape[..start].to_vec();
        new.push(shape[start..].iter().product());
        self.reshape(&new)
    }

    /// Reorder axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(&self, axes: &[usize]) -> Tensor {
        let mut seen = axes.to_vec();
        seen.sort_unstable();
        assert!(
            seen == (0..self.ndim()).collect::<Vec<_>>(),
            "permute: {axes:?} is not a permutation of the {} axes of {:?}",
            self.ndim(),
            self.shape()
        );
        let v = self.value().view().permuted_axes(IxDyn(axes)).as_standard_layout().into_owned();
        Tensor::from_op(v, Op::Permute(self.clone(), axes.to_vec()))
    }

    /// Swap two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Tensor {
        let mut axes: Vec<usize> = (0..self.ndim()).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// Join tensors along an existing axis; all other axes must agree.
    pub fn concat(tensors: &[Tensor], axis: usize) -> Tensor {
        assert!(!tensors.is_empty(), "concat of no tensors");
        let first = tensors[0].shape();
        for t in tensors {
            let ok = t.ndim() == first.len()
                && axis < first.len()
                && t.shape().iter().zip(first).enumerate().all(|(i, (a, b))| i == axis || a == b);
            assert!(ok, "concat along axis {axis}: shape {:?} does not fit {first:?}", t.shape());
        }
        let views: Vec<_> = tensors.iter().map(|t| t.value().view()).collect();
        let v = ndarray::concatenate(Axis(axis), &views).expect("checked");
        Tensor::from_op(v, Op::Concat(tensors.to_vec(), axis))
    }

    /// Join equally shaped tensors along a new axis.
    pub fn stack(tensors: &[Tensor], axis: usize) -> Tensor {
        let expanded: Vec<Tensor> = tensors
            .iter()
            .map(|t| {
                let mut s = t.shape().to_vec();
                assert!(axis <= s.len(), "stack: axis {axis} for shape {s:?}");
                s.insert(axis, 1);
                t.reshape(&s)
            })
            .collect();
        Tensor::concat(&expanded, axis)
    }
}

pub(crate) fn permute_backward(axes: &[usize], g: &ArrayD<f32>) -> ArrayD<f32> {
    let mut inverse = vec![0; axes.len()];
    for (i, &a) in axes.iter().enumerate() {
        inverse[a] = i;
    }
    g.view().permuted_axes(IxDyn(&inverse)).as_standard_layout().into_owned()
}

/// The slice of `g` along `axis` that each concatenated input contributed.
pub(crate) fn concat_backward(parts: &[Tensor], axis: usize, g: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    let mut start = 0;
    parts
        .iter()
        .map(|t| {
            let len = t.shape()[axis];
            let piece = g.slice_axis(Axis(axis), ndarray::Slice::from(start..start + len)).to_owned();
            start += len;
            piece
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_then_permute_round_trips_values() {
        let a = Tensor::from_vec(&[2, 3], (0..6).map(|v| v as f32).collect());
        let b = Tensor::from_vec(&[2, 3], (6..12).map(|v| v as f32).collect());
        let s = Tensor::stack(&[a, b], 2); // [2, 3, 2]
        assert_eq!(s.shape(), &[2, 3, 2]);
        assert_eq!(&s.data()[..4], &[0.0, 6.0, 1.0, 7.0]);
        let p = s.permute(&[2, 0, 1]);
        assert_eq!(&p.data()[..6], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn concat_names_mismatched_shapes() {
        Tensor::concat(&[Tensor::zeros(&[2, 3]), Tensor::zeros(&[3, 3])], 1);
    }
}
