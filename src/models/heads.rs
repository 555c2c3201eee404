//! The paper's heads — what replaces `Linear → activation → Linear` on top
//! of a backbone — as one enum. Parameter names follow the reference
//! PyTorch code (`head.dense1`, `head.bn1`, `head.maxout.branches.{k}`,
//! `head.maxplus`, `head.dense2`).

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use rand::Rng;

use crate::nn::{
    BatchNorm, Ctx, Dropout, Entry, EntryMut, Forward, Linear, MaxPlus, Maxout, Module, SparseMaxPlus, visit_child,
    visit_child_mut,
};
use crate::tensor::Tensor;

/// Which head, as named on the command line (`--head`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeadKind {
    /// `Linear(d,h) → BN → ReLU → Dropout → Linear(h,k)`.
    Relu,
    /// `Maxout(d,h, pool 2, BN per branch) → Dropout → Linear(h,k)`.
    Maxout,
    /// Zhang et al. 2019: `Linear(d,h, no bias) → ReLU → Dropout → MaxPlus(h,k)`.
    Zhang,
    /// `Linear(d,h, no bias) → [BN] → MaxPlus(h,h) → Linear(h,k)`.
    DenseMorph { bn: bool },
    /// Dense-Morph with an explicitly sparse MaxPlus (budget K).
    SparseMorph { bn: bool },
}

impl HeadKind {
    /// The four heads of the paper's CIFAR-10 tables.
    pub const PAPER: [HeadKind; 4] =
        [HeadKind::Relu, HeadKind::Maxout, HeadKind::DenseMorph { bn: true }, HeadKind::SparseMorph { bn: true }];

    /// The `--head` id (`dense-morph-nobn` for the variants without BatchNorm).
    pub fn id(self) -> String {
        match self {
            HeadKind::Relu => "relu".into(),
            HeadKind::Maxout => "maxout".into(),
            HeadKind::Zhang => "zhang".into(),
            HeadKind::DenseMorph { bn } => format!("dense-morph{}", if bn { "" } else { "-nobn" }),
            HeadKind::SparseMorph { bn } => format!("sparse-morph{}", if bn { "" } else { "-nobn" }),
        }
    }

    /// The name used in result tables.
    pub fn label(self) -> String {
        match self {
            HeadKind::Relu => "ReLU".into(),
            HeadKind::Maxout => "Maxout".into(),
            HeadKind::Zhang => "Max-plus (Zhang)".into(),
            HeadKind::DenseMorph { bn } => format!("Dense-Morph{}", if bn { "" } else { " (no BN)" }),
            HeadKind::SparseMorph { bn } => format!("Sparse-Morph{}", if bn { "" } else { " (no BN)" }),
        }
    }

    /// The same head without its BatchNorm (`--no-bn`); only the morph heads have that option.
    pub fn without_bn(self) -> Result<HeadKind> {
        match self {
            HeadKind::DenseMorph { .. } => Ok(HeadKind::DenseMorph { bn: false }),
            HeadKind::SparseMorph { .. } => Ok(HeadKind::SparseMorph { bn: false }),
            other => bail!("--no-bn applies to dense-morph and sparse-morph only, not to {}", other.id()),
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

impl FromStr for HeadKind {
    type Err = anyhow::Error;
    /// Accepts the ids above, `-nobn` suffixes, and the reference code's
    /// names `lmpl` (Dense-Morph) and `lmpl2` (Sparse-Morph).
    fn from_str(s: &str) -> Result<HeadKind> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "relu" => HeadKind::Relu,
            "maxout" => HeadKind::Maxout,
            "zhang" | "maxplus" => HeadKind::Zhang,
            "dense-morph" | "lmpl" => HeadKind::DenseMorph { bn: true },
            "dense-morph-nobn" => HeadKind::DenseMorph { bn: false },
            "sparse-morph" | "lmpl2" => HeadKind::SparseMorph { bn: true },
            "sparse-morph-nobn" => HeadKind::SparseMorph { bn: false },
            other => bail!(
                "unknown head `{other}`: choose one of relu, maxout, zhang, dense-morph, sparse-morph \
                 (add -nobn to a morph head, e.g. sparse-morph-nobn, to drop its BatchNorm)"
            ),
        })
    }
}

/// Sizes of a head: input features `d`, hidden width `h`, outputs `classes`, the
/// sparse budget `K` (active max-plus weights of Sparse-Morph) and the
/// dropout probability of the heads that have one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadDims {
    pub d: usize,
    pub h: usize,
    /// Outputs: classes or tags.
    pub classes: usize,
    pub sparse_k: usize,
    pub dropout: f32,
}

/// A head with its parameters.
pub enum Head {
    Relu { dense1: Linear, bn1: BatchNorm, drop: Dropout, dense2: Linear },
    Maxout { maxout: Maxout, drop: Dropout, dense2: Linear },
    Zhang { dense1: Linear, drop: Dropout, maxplus: MaxPlus },
    DenseMorph { dense1: Linear, bn1: Option<BatchNorm>, maxplus: MaxPlus, dense2: Linear },
    SparseMorph { dense1: Linear, bn1: Option<BatchNorm>, maxplus: SparseMaxPlus, dense2: Linear },
}

impl Head {
    pub fn new(kind: HeadKind, dims: HeadDims, rng: &mut impl Rng) -> Head {
        let HeadDims { d, h, classes: k, sparse_k, dropout } = dims;
        let drop = Dropout { p: dropout };
        match kind {
            HeadKind::Relu => Head::Relu {
                dense1: Linear::new(d, h, true, rng),
                bn1: BatchNorm::new(h),
                drop,
                dense2: Linear::new(h, k, true, rng),
            },
            HeadKind::Maxout => {
                Head::Maxout { maxout: Maxout::new(d, h, 2, rng), drop, dense2: Linear::new(h, k, true, rng) }
            }
            HeadKind::Zhang => {
                Head::Zhang { dense1: Linear::new(d, h, false, rng), drop, maxplus: MaxPlus::new(h, k, true, rng) }
            }
            HeadKind::DenseMorph { bn } => Head::DenseMorph {
                dense1: Linear::new(d, h, false, rng),
                bn1: bn.then(|| BatchNorm::new(h)),
                maxplus: MaxPlus::new(h, h, true, rng),
                dense2: Linear::new(h, k, true, rng),
            },
            HeadKind::SparseMorph { bn } => Head::SparseMorph {
                dense1: Linear::new(d, h, false, rng),
                bn1: bn.then(|| BatchNorm::new(h)),
                maxplus: SparseMaxPlus::new(h, h, sparse_k, rng),
                dense2: Linear::new(h, k, true, rng),
            },
        }
    }

    pub fn kind(&self) -> HeadKind {
        match self {
            Head::Relu { .. } => HeadKind::Relu,
            Head::Maxout { .. } => HeadKind::Maxout,
            Head::Zhang { .. } => HeadKind::Zhang,
            Head::DenseMorph { bn1, .. } => HeadKind::DenseMorph { bn: bn1.is_some() },
            Head::SparseMorph { bn1, .. } => HeadKind::SparseMorph { bn: bn1.is_some() },
        }
    }
}

impl Forward for Head {
    type Output = Tensor;
    /// Features `[N, d]` → logits `[N, classes]`.
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        match self {
            Head::Relu { dense1, bn1, drop, dense2 } => {
                let h = dense1.forward(x, ctx);
                let h = bn1.forward(&h, ctx).relu();
                let h = drop.forward(&h, ctx);
                dense2.forward(&h, ctx)
            }
            Head::Maxout { maxout, drop, dense2 } => {
                let h = maxout.forward(x, ctx);
                let h = drop.forward(&h, ctx);
                dense2.forward(&h, ctx)
            }
            Head::Zhang { dense1, drop, maxplus } => {
                let h = dense1.forward(x, ctx).relu();
                let h = drop.forward(&h, ctx);
                maxplus.forward(&h, ctx)
            }
            Head::DenseMorph { dense1, bn1, maxplus, dense2 } => {
                let h = dense1.forward(x, ctx);
                let h = bn1.forward(&h, ctx);
                let h = maxplus.forward(&h, ctx);
                dense2.forward(&h, ctx)
            }
            Head::SparseMorph { dense1, bn1, maxplus, dense2 } => {
                let h = dense1.forward(x, ctx);
                let h = bn1.forward(&h, ctx);
                let h = maxplus.forward(&h, ctx);
                dense2.forward(&h, ctx)
            }
        }
    }
}

impl Module for Head {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        match self {
            Head::Relu { dense1, bn1, dense2, .. } => {
                visit_child("dense1", dense1, f);
                visit_child("bn1", bn1, f);
                visit_child("dense2", dense2, f);
            }
            Head::Maxout { maxout, dense2, .. } => {
                visit_child("maxout", maxout, f);
                visit_child("dense2", dense2, f);
            }
            Head::Zhang { dense1, maxplus, .. } => {
                visit_child("dense1", dense1, f);
                visit_child("maxplus", maxplus, f);
            }
            Head::DenseMorph { dense1, bn1, maxplus, dense2 } => {
                visit_child("dense1", dense1, f);
                visit_child("bn1", bn1, f);
                visit_child("maxplus", maxplus, f);
                visit_child("dense2", dense2, f);
            }
            Head::SparseMorph { dense1, bn1, maxplus, dense2 } => {
                visit_child("dense1", dense1, f);
                visit_child("bn1", bn1, f);
                visit_child("maxplus", maxplus, f);
                visit_child("dense2", dense2, f);
            }
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        match self {
            Head::Relu { dense1, bn1, dense2, .. } => {
                visit_child_mut("dense1", dense1, f);
                visit_child_mut("bn1", bn1, f);
                visit_child_mut("dense2", dense2, f);
            }
            Head::Maxout { maxout, dense2, .. } => {
                visit_child_mut("maxout", maxout, f);
                visit_child_mut("dense2", dense2, f);
            }
            Head::Zhang { dense1, maxplus, .. } => {
                visit_child_mut("dense1", dense1, f);
                visit_child_mut("maxplus", maxplus, f);
            }
            Head::DenseMorph { dense1, bn1, maxplus, dense2 } => {
                visit_child_mut("dense1", dense1, f);
                visit_child_mut("bn1", bn1, f);
                visit_child_mut("maxplus", maxplus, f);
                visit_child_mut("dense2", dense2, f);
            }
            Head::SparseMorph { dense1, bn1, maxplus, dense2 } => {
                visit_child_mut("dense1", dense1, f);
                visit_child_mut("bn1", bn1, f);
                visit_child_mut("maxplus", maxplus, f);
                visit_child_mut("dense2", dense2, f);
            }
        }
    }
}
