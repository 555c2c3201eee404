//! Every differentiable operation, as one enum. A variant holds the op's
//! input tensors plus whatever the forward pass saved for backward (argmax
//! indices, batch statistics, dropout masks). Its gradient rule is one arm of
//! the `match` in [`super::backward`], which calls the rule's function next
//! to the op's forward in `ops/`. An op whose saved state belongs to its
//! kernel (the max-plus layers: winners, sparsity pattern, gradient buffer)
//! brings its own type and rule instead, through [`CustomOp`], so that
//! autograd knows nothing of kernels.

use ndarray::ArrayD;

use crate::ops::elementwise::Arith;
use crate::ops::pool::Window;
use crate::tensor::Tensor;

/// An op that owns its saved state and its gradient rule (as candle's
/// custom ops do). Autograd asks it only for its inputs and its backward.
pub trait CustomOp: Send + Sync {
    /// The op's name, for messages.
    fn name(&self) -> &'static str;
    /// The tensors the op read.
    fn inputs(&self) -> Vec<&Tensor>;
    /// Gradients of [`inputs`](Self::inputs), in the same order, given the
    /// gradient `g` of the output `out`; `None` for an input that wants none.
    fn backward(&self, out: &Tensor, g: &Grad) -> Vec<Option<Grad>>;
}

pub enum Op {
    /// `a ∘ b` with broadcasting.
    Arith(Arith, Tensor, Tensor),
    /// `c · x`.
    Scale(Tensor, f32),
    Relu(Tensor),
    Sigmoid(Tensor),
    Reshape(Tensor),
    Permute(Tensor, Vec<usize>),
    Concat(Vec<Tensor>, usize),
    SumAll(Tensor),
    SumAxis(Tensor, usize),
    /// Max over `axis`; `argmax` holds the winning index of every output.
    MaxAxis {
        x: Tensor,
        axis: usize,
        argmax: Vec<u32>,
    },
    MatMul(Tensor, Tensor),
    /// `x Wᵀ + b`.
    Linear {
        x: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
    },
    Conv2d {
        x: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
    },
    /// `argmax[o]`: flat index, within its input plane, of output `o`'s winner.
    MaxPool2d {
        x: Tensor,
        argmax: Vec<u32>,
    },
    /// Per-channel statistics used to normalise (batch or running ones).
    BatchNorm {
        x: Tensor,
        gamma: Tensor,
        beta: Tensor,
        mean: Vec<f32>,
        inv_std: Vec<f32>,
        train: bool,
    },
    /// `max_pool2d(relu(batch_norm(x)))` in one op: BatchNorm's statistics,
    /// the pool's windows and their winners.
    BnReluPool {
        x: Tensor,
        gamma: Tensor,
        beta: Tensor,
        mean: Vec<f32>,
        inv_std: Vec<f32>,
        argmax: Vec<u32>,
        window: Window,
        train: bool,
    },
    /// `mask` is `1/(1-p)` where kept, 0 where dropped.
    Dropout {
        x: Tensor,
        mask: Vec<f32>,
    },
    LogSoftmax(Tensor),
    CrossEntropy {
        logits: Tensor,
        labels: Vec<usize>,
        probs: Vec<f32>,
    },
    Bce {
        probs: Tensor,
        target: Tensor,
    },
    /// An op with its own state and rule.
    Custom(Box<dyn CustomOp>),
}

impl Op {
    /// The tensors this op read.
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Arith(_, a, b) | Op::MatMul(a, b) => vec![a, b],
            Op::Scale(x, _)
            | Op::Relu(x)
            | Op::Sigmoid(x)
            | Op::Reshape(x)
            | Op::Permute(x, _)
            | Op::SumAll(x)
            | Op::SumAxis(x, _)
            | Op::MaxAxis { x, .. }
            | Op::MaxPool2d { x, .. }
            | Op::Dropout { x, .. }
            | Op::LogSoftmax(x) => vec![x],
            Op::Concat(xs, _) => xs.iter().collect(),
            Op::Linear { x, weight, bias } | Op::Conv2d { x, weight, bias, .. } => {
                let mut v = vec![x, weight];
                v.extend(bias);
                v
            }
            Op::BatchNorm { x, gamma, beta, .. } | Op::BnReluPool { x, gamma, beta, .. } => vec![x, gamma, beta],
            Op::CrossEntropy { logits, .. } => vec![logits],
            Op::Bce { probs, target } => vec![probs, target],
            Op::Custom(op) => op.inputs(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Arith(Arith::Add, ..) => "add",
            Op::Arith(Arith::Sub, ..) => "sub",
            Op::Arith(Arith::Mul, ..) => "mul",
            Op::Arith(Arith::Div, ..) => "div",
            Op::Scale(..) => "scale",
            Op::Relu(_) => "relu",
            Op::Sigmoid(_) => "sigmoid",
            Op::Reshape(_) => "reshape",
            Op::Permute(..) => "permute",
            Op::Concat(..) => "concat",
            Op::SumAll(_) => "sum_all",
            Op::SumAxis(..) => "sum_axis",
            Op::MaxAxis { .. } => "max_axis",
            Op::MatMul(..) => "matmul",
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::BnReluPool { .. } => "bn_relu_pool",
            Op::Dropout { .. } => "dropout",
            Op::LogSoftmax(_) => "log_softmax",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::Bce { .. } => "binary_cross_entropy",
            Op::Custom(op) => op.name(),
        }
    }
}

/// Gradient of a scalar loss with respect to one tensor, shaped like it.
pub type Grad = ArrayD<f32>;
