//! The paper's CIFAR-10 network: five `ConvBlock`s (channels 3→C, C→C,
//! C→2C, 2C→2C, 2C→2C), each halving the image, then a global max pool
//! (`[N, 2C, 1, 1]` → `[N, 2C]`) and a head with `d = 2C`, `k = 10`.

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::heads::{Head, HeadDims, HeadKind};
use crate::nn::{ConvBlock, Ctx, Entry, EntryMut, Forward, Module, visit_child, visit_child_mut};
use crate::tensor::Tensor;

/// Hyper-parameters of a [`CifarNet`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CifarConfig {
    pub head: HeadKind,
    /// Channel width C (128 in the paper).
    pub channels: usize,
    /// Hidden width h of the head (512).
    pub hidden: usize,
    pub classes: usize,
    /// Sparse-Morph budget K (2·h in the paper).
    pub sparse_k: usize,
    /// Dropout of the relu, maxout and zhang heads (0.5).
    pub dropout: f32,
}

impl CifarConfig {
    /// The paper's setting for `head` at width `channels`.
    pub fn paper(head: HeadKind, channels: usize) -> CifarConfig {
        CifarConfig { head, channels, hidden: 512, classes: 10, sparse_k: 2 * 512, dropout: 0.5 }
    }
}

pub struct CifarNet {
    pub config: CifarConfig,
    pub blocks: Vec<ConvBlock>,
    pub head: Head,
}

impl CifarNet {
    /// A freshly initialised network; the same seed gives the same weights.
    pub fn new(config: CifarConfig, seed: u64) -> CifarNet {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let c = config.channels;
        let chans = [3, c, c, 2 * c, 2 * c, 2 * c];
        let blocks = (0..5).map(|i| ConvBlock::new(chans[i], chans[i + 1], &mut rng)).collect();
        let dims = HeadDims {
            d: 2 * c,
            h: config.hidden,
            classes: config.classes,
            sparse_k: config.sparse_k,
            dropout: config.dropout,
        };
        let head = Head::new(config.head, dims, &mut rng);
        CifarNet { config, blocks, head }
    }

    /// The backbone's features `[N, 2C]` for normalised images `[N, 3, H, W]`.
    pub fn features(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        self.blocks.iter_mut().fold(x.clone(), |h, b| b.forward(&h, ctx)).global_max_pool()
    }
}

impl Forward for CifarNet {
    type Output = Result<Tensor>;
    /// Logits `[N, classes]`. Inputs must be `[N, 3, H, W]` with H, W ≥ 32.
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 3 || s[2] < 32 || s[3] < 32 {
            bail!("CifarNet expects normalised images [N, 3, H, W] with H, W >= 32, got {s:?}");
        }
        let f = self.features(x, ctx);
        Ok(self.head.forward(&f, ctx))
    }
}

impl Module for CifarNet {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        for (i, b) in self.blocks.iter().enumerate() {
            visit_child(&format!("blocks.{i}"), b, f);
        }
        visit_child("head", &self.head, f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        for (i, b) in self.blocks.iter_mut().enumerate() {
            visit_child_mut(&format!("blocks.{i}"), b, f);
        }
        visit_child_mut("head", &mut self.head, f);
    }
}
