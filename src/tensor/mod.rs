//! The [`Tensor`]: an immutable, contiguous `f32` array plus — while gradients
//! are being recorded — the [`Op`] that produced it.
//!
//! A tensor is a cheap `Arc` handle: cloning it shares the node. The graph of a
//! forward pass is nothing more than the `Op`s held by the nodes, each pointing
//! at its input tensors; it is freed when the last handle to the output drops.
//! This module knows nothing about how gradients flow or when an op is
//! recorded; that is `autograd` (which also gives `Tensor` its `backward`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayD, IxDyn};

use crate::autograd::Op;

/// Identity of a graph node; gradients are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> TensorId {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An n-dimensional `f32` array that can take part in reverse-mode autodiff.
#[derive(Clone)]
pub struct Tensor(Arc<Node>);

pub(crate) struct Node {
    id: TensorId,
    value: ArrayD<f32>,
    /// How this tensor was computed; `None` for leaves and for anything made
    /// while nothing needed gradients.
    op: Option<Op>,
    requires_grad: bool,
}

impl Tensor {
    /// A constant (no gradient is ever computed for it).
    pub fn new(value: ArrayD<f32>) -> Tensor {
        Tensor::leaf(value, false)
    }

    /// A leaf whose gradient `backward` will report (a parameter or an input
    /// under study).
    pub fn param(value: ArrayD<f32>) -> Tensor {
        Tensor::leaf(value, true)
    }

    fn leaf(value: ArrayD<f32>, requires_grad: bool) -> Tensor {
        Tensor(Arc::new(Node { id: TensorId::fresh(), value: standard(value), op: None, requires_grad }))
    }

    /// A constant from a flat row-major buffer. Panics when `data.len()` is
    /// not the product of `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(n, data.len(), "Tensor::from_vec: shape {shape:?} holds {n} values, got {}", data.len());
        Tensor::new(ArrayD::from_shape_vec(IxDyn(shape), data).expect("checked length"))
    }

    /// A constant filled with zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::new(ArrayD::zeros(IxDyn(shape)))
    }

    /// A 0-dimensional constant.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::new(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// A graph node: `value`, made by `op` (`None` for a result nobody
    /// differentiates). Ops build theirs with `Tensor::from_op`, which
    /// decides whether to record (`autograd`).
    pub(crate) fn node(value: ArrayD<f32>, op: Option<Op>) -> Tensor {
        let requires_grad = op.is_some();
        Tensor(Arc::new(Node { id: TensorId::fresh(), value: standard(value), op, requires_grad }))
    }

    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// The array (always in standard row-major layout).
    pub fn value(&self) -> &ArrayD<f32> {
        &self.0.value
    }

    /// The values as one contiguous row-major slice.
    pub fn data(&self) -> &[f32] {
        self.0.value.as_slice().expect("tensors are kept in standard layout")
    }

    pub fn shape(&self) -> &[usize] {
        self.0.value.shape()
    }

    pub fn ndim(&self) -> usize {
        self.0.value.ndim()
    }

    pub fn numel(&self) -> usize {
        self.0.value.len()
    }

    /// The single value of a one-element tensor (e.g. a loss).
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item() on a tensor of shape {:?}", self.shape());
        self.data()[0]
    }

    /// Whether gradients flow back through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// The same values, cut from the graph.
    pub fn detach(&self) -> Tensor {
        Tensor::new(self.0.value.clone())
    }

    pub(crate) fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }

    /// Change the values of a leaf in place (optimiser steps, pruning,
    /// loading). When a graph still holds this node, the values are copied
    /// into a fresh leaf instead so the recorded graph stays untouched.
    pub fn update(&mut self, f: impl FnOnce(&mut ArrayD<f32>)) {
        debug_assert!(self.0.op.is_none(), "update() is for leaves");
        match Arc::get_mut(&mut self.0) {
            Some(node) => f(&mut node.value),
            None => {
                let mut value = self.0.value.clone();
                f(&mut value);
                *self = Tensor::leaf(value, self.0.requires_grad);
            }
        }
        if !self.0.value.is_standard_layout() {
            let value = self.0.value.clone();
            *self = Tensor::leaf(value, self.0.requires_grad);
        }
    }
}

fn standard(value: ArrayD<f32>) -> ArrayD<f32> {
    if value.is_standard_layout() { value } else { value.as_standard_layout().into_owned() }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("id", &self.0.id.0)
            .field("shape", &self.shape())
            .field("requires_grad", &self.0.requires_grad)
            .field("op", &self.0.op.as_ref().map(Op::name))
            .finish()
    }
}
