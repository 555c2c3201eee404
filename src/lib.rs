//! # morphgrad
//!
//! A from-scratch CPU tensor library and reverse-mode autodiff engine for
//! studying, training and pruning *morphological* (max-plus) neural networks,
//! and a reproduction of "Sparse Hybrid Linear-Morphological Networks"
//! (Fotopoulos, Garoufis, Maragos, EUSIPCO 2025).
//!
//! | module | what it holds |
//! |---|---|
//! | [`tensor`] | [`Tensor`]: an `f32` array handle, optionally a graph node |
//! | [`autograd`] | the [`Op`](autograd::Op) enum, `backward`, `no_grad`, `gradcheck` |
//! | [`ops`] | forward + backward of every op family, side by side |
//! | [`kernels`] | the hot loops (GEMM glue, im2col, max-plus), free of autograd |
//! | [`runtime`] | what a program opts into once: thread pool, worker polling, allocator |
//! | [`nn`] | layers with named parameters, the `Module` trait, checkpoints |
//! | [`optim`] | Adam and SGD (momentum, Nesterov), matching `torch.optim` |
//! | [`models`], [`prune`], [`metrics`] | the paper's networks and heads, L1 pruning, ROC-AUC / PR-AUC |
//! | [`data`] | CIFAR-10, MagnaTagATune, synthetic stand-ins |
//! | [`experiment`] | resumable runs, grids sharded over processes, reports |

pub mod autograd;
pub mod data;
pub mod experiment;
pub mod io;
pub mod kernels;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod prune;
pub mod runtime;
pub mod tensor;

pub use tensor::Tensor;

/// `docs/subgradients.md`, compiled as a doc test so its worked examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/subgradients.md")]
pub struct SubgradientsTutorial;
