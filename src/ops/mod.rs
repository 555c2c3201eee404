//! Differentiable operations, one file per family; each file holds the
//! forward pass and, next to it, the gradient rule that `autograd` calls.
//!
//! Elementwise, shape and reduction ops are methods on [`Tensor`](crate::Tensor)
//! (`x.relu()`, `x.reshape(..)`, `x.max_axis(1)`); layer-sized ops are
//! functions (`conv2d`, `batch_norm`, `cross_entropy`, ...).

pub mod bn_relu_pool;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod maxplus;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod shape;

pub use bn_relu_pool::bn_relu_pool;
pub use conv::conv2d;
pub use dropout::{dropout, dropout_with_mask};
pub use loss::{binary_cross_entropy, cross_entropy};
pub use matmul::linear;
pub use maxplus::{maxplus, sparse_maxplus};
pub use norm::{BatchNormStats, batch_norm};
pub use pool::max_pool2d;
