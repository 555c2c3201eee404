//! The backward pass: visit the recorded graph from the output in reverse
//! topological order; at every node, turn the gradient of its output into
//! gradients of its inputs (one `match` arm per [`Op`]) and add them up.

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, IxDyn};

use super::op::{Grad, Op};
use crate::ops;
use crate::tensor::{Tensor, TensorId};

/// Gradients of the leaves (parameters and inputs created with
/// [`Tensor::param`]) reached by a backward pass.
#[derive(Default)]
pub struct Grads(HashMap<TensorId, Grad>);

impl Grads {
    /// The gradient of `t`, if `t` is a leaf the loss depends on.
    pub fn get(&self, t: &Tensor) -> Option<&Grad> {
        self.0.get(&t.id())
    }

    /// Take the gradient of `t` out of the store.
    pub fn remove(&mut self, t: &Tensor) -> Option<Grad> {
        self.0.remove(&t.id())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Add the gradients that `op`'s inputs receive from the gradient `g` of
    /// its output `node`.
    fn propagate(&mut self, op: &Op, node: &Tensor, g: &Grad) {
        crate::runtime::keep_workers_warm();
        for (input, gin) in input_grads(op, node, g) {
            if input.requires_grad() {
                self.accumulate(input, gin);
            }
        }
    }

    fn accumulate(&mut self, t: &Tensor, g: Grad) {
        debug_assert_eq!(g.shape(), t.shape(), "gradient shape for {:?}", t.op().map(Op::name));
        match self.0.get_mut(&t.id()) {
            Some(acc) => *acc += &g,
            None => {
                self.0.insert(t.id(), g);
            }
        }
    }
}

impl Tensor {
    /// Reverse-mode differentiation from this (one-element) tensor: the
    /// gradient of every leaf that requires one. See [`backward`].
    pub fn backward(&self) -> Grads {
        backward(self)
    }

    /// Back-propagate an upstream gradient shaped like `self` (a
    /// vector-Jacobian product), read in place. See [`backward_with`].
    pub fn backward_with(&self, grad: &Grad) -> Grads {
        backward_with(self, grad)
    }

    /// The result of an op. The op (and with it the inputs it holds) is kept
    /// only when gradients are being recorded and some input needs one.
    /// Each op's completion is also where the thread driving the ops keeps
    /// its pool's workers polling ([`crate::runtime::keep_workers_warm`]; a
    /// no-op unless the program opted in with [`crate::runtime::init`]).
    pub(crate) fn from_op(value: ArrayD<f32>, op: Op) -> Tensor {
        crate::runtime::keep_workers_warm();
        let record = super::is_recording(&op.inputs());
        Tensor::node(value, record.then_some(op))
    }
}

/// Reverse-mode differentiation of the one-element tensor `root`.
///
/// Gradients of intermediate nodes are dropped as soon as they have been
/// propagated; the result holds only leaves. A tensor used several times
/// receives the sum of the gradients of its uses.
pub fn backward(root: &Tensor) -> Grads {
    assert_eq!(root.numel(), 1, "backward() needs a one-element output, got shape {:?}", root.shape());
    backward_with(root, &ArrayD::from_elem(IxDyn(root.shape()), 1.0))
}

/// Vector-Jacobian product: back-propagate a given upstream gradient
/// `grad_root` (shaped like `root`), i.e. the gradients of `Σ root ⊙ grad_root`.
/// Borrowed, as PyTorch's `y.backward(gy)` does: it is read, never copied
/// (unless `root` is itself a leaf, whose gradient it then is).
pub fn backward_with(root: &Tensor, grad_root: &Grad) -> Grads {
    assert_eq!(grad_root.shape(), root.shape(), "backward_with: upstream gradient shape");
    let mut grads = Grads::default();
    if !root.requires_grad() {
        return grads;
    }
    let Some(op) = root.op() else {
        grads.0.insert(root.id(), grad_root.clone());
        return grads;
    };
    grads.propagate(op, root, grad_root);
    // The root comes last in topological order, and no other node feeds it.
    let order = topological_order(root);
    for node in order[..order.len() - 1].iter().rev() {
        let Some(op) = node.op() else { continue };
        let Some(g) = grads.0.remove(&node.id()) else { continue };
        grads.propagate(op, node, &g);
    }
    grads
}

/// Nodes reachable from `root` through recorded ops, every node after its inputs.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    // Iterative DFS: (node, inputs already pushed?)
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for input in op.inputs() {
                if input.requires_grad() && !seen.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// The chain rule for one node: gradients of `op`'s inputs given the
/// gradient `g` of its output `out`. Inputs that need no gradient may be
/// skipped.
fn input_grads<'a>(op: &'a Op, out: &Tensor, g: &Grad) -> Vec<(&'a Tensor, Grad)> {
    use ops::*;
    let some = |pairs: Vec<(&'a Tensor, Option<Grad>)>| pairs.into_iter().filter_map(|(t, g)| Some((t, g?))).collect();
    match op {
        Op::Arith(kind, a, b) => {
            let [ga, gb] = elementwise::arith_backward(*kind, a, b, g);
            some(vec![(a, ga), (b, gb)])
        }
        Op::Scale(x, c) => vec![(x, elementwise::scale_backward(*c, g))],
        Op::Relu(x) => vec![(x, elementwise::relu_backward(out.value(), g))],
        Op::Sigmoid(x) => vec![(x, elementwise::sigmoid_backward(out.value(), g))],
        Op::Reshape(x) => vec![(x, shape::reshape_backward(x.shape(), g))],
        Op::Permute(x, axes) => vec![(x, shape::permute_backward(axes, g))],
        Op::Concat(xs, axis) => xs.iter().zip(shape::concat_backward(xs, *axis, g)).collect(),
        Op::SumAll(x) => vec![(x, reduce::sum_all_backward(x.shape(), g))],
        Op::SumAxis(x, axis) => vec![(x, reduce::sum_axis_backward(x.shape(), *axis, g))],
        Op::MaxAxis { x, axis, argmax } => vec![(x, reduce::max_axis_backward(x.shape(), *axis, argmax, g))],
        Op::MatMul(a, b) => {
            let [ga, gb] = matmul::matmul_backward(a, b, g);
            some(vec![(a, ga), (b, gb)])
        }
        Op::Linear { x, weight, bias } => {
            let [gx, gw, gb] = matmul::linear_backward(x, weight, bias.as_ref(), g);
            let mut v = vec![(x, gx), (weight, gw)];
            v.extend(bias.as_ref().map(|b| (b, gb)));
            some(v)
        }
        Op::Conv2d { x, weight, bias, stride, padding } => {
            let [gx, gw, gb] = conv::conv2d_backward(x, weight, bias.as_ref(), *stride, *padding, g);
            let mut v = vec![(x, gx), (weight, gw)];
            v.extend(bias.as_ref().map(|b| (b, gb)));
            some(v)
        }
        Op::MaxPool2d { x, argmax } => vec![(x, pool::max_pool2d_backward(x.shape(), argmax, g))],
        Op::BatchNorm { x, gamma, beta, mean, inv_std, train } => {
            let [gx, gg, gb] = norm::batch_norm_backward(x, gamma, mean, inv_std, *train, g);
            vec![(x, gx), (gamma, gg), (beta, gb)]
        }
        Op::BnReluPool { x, gamma, beta, mean, inv_std, argmax, window, train } => {
            let [gx, gg, gb] =
                bn_relu_pool::bn_relu_pool_backward(x, gamma, mean, inv_std, *train, argmax, window, out.value(), g);
            vec![(x, gx), (gamma, gg), (beta, gb)]
        }
        Op::Dropout { x, mask } => vec![(x, dropout::dropout_backward(mask, g))],
        Op::LogSoftmax(x) => vec![(x, loss::log_softmax_backward(out.value(), g))],
        Op::CrossEntropy { logits, labels, probs } => {
            vec![(logits, loss::cross_entropy_backward(logits.shape(), labels, probs, scalar(g)))]
        }
        Op::Bce { probs, target } => vec![(probs, loss::bce_backward(probs, target, scalar(g)))],
        Op::Custom(op) => some(op.inputs().into_iter().zip(op.backward(out, g)).collect()),
    }
}

/// The value of a one-element gradient (of a loss).
pub(crate) fn scalar(g: &Grad) -> f32 {
    *g.iter().next().expect("scalar gradient")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn the_upstream_gradient_of_a_leaf_is_its_gradient() {
        let a = Tensor::param(arr1(&[1.0f32, 2.0]).into_dyn());
        let g = arr1(&[3.0f32, -4.0]).into_dyn();
        let grads = a.backward_with(&g);
        assert_eq!(grads.get(&a), Some(&g));
        assert_eq!(grads.len(), 1);
        assert!(Tensor::new(g.clone()).backward_with(&g).is_empty(), "a constant has no gradient");
    }

    #[test]
    fn the_upstream_gradient_is_read_through_every_path() {
        // y = a·(a + b): dy/da = 2a + b, dy/db = a, each scaled by g.
        let a = Tensor::param(arr1(&[1.0f32, 2.0]).into_dyn());
        let b = Tensor::param(arr1(&[5.0f32, -1.0]).into_dyn());
        let y = a.mul(&a.add(&b));
        let g = arr1(&[3.0f32, -4.0]).into_dyn();
        let grads = y.backward_with(&g);
        assert_eq!(grads.get(&a), Some(&arr1(&[21.0f32, -12.0]).into_dyn()));
        assert_eq!(grads.get(&b), Some(&arr1(&[3.0f32, -8.0]).into_dyn()));
        // The graph and the upstream gradient are untouched: a second pass agrees.
        let again = y.backward_with(&g);
        assert_eq!((again.get(&a), again.get(&b)), (grads.get(&a), grads.get(&b)));
    }
}
