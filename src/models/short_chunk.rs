//! The Short-chunk CNN of Won et al. (2020) for music tagging: raw audio
//! (59 049 samples at 16 kHz) → log-mel spectrogram (128 bands, 231 frames)
//! → BatchNorm2d(1) → seven `ConvBlock`s (1→C, C→C, C→2C, 2C→2C, 2C→2C,
//! 2C→2C, 2C→4C) that bring 128×231 down to 1×1 → global max pool → head
//! with `d = h = 4C` and 50 tag outputs → sigmoid.

use anyhow::{Result, bail};
use ndarray::{ArrayD, IxDyn};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::heads::{Head, HeadDims, HeadKind};
use crate::nn::mel::{MelConfig, MelSpectrogram};
use crate::nn::{BatchNorm, ConvBlock, Ctx, Entry, EntryMut, Forward, Module, visit_child, visit_child_mut};
use crate::tensor::Tensor;

/// Hyper-parameters of a [`ShortChunkCnn`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShortChunkConfig {
    pub head: HeadKind,
    /// Channel width C (128 in the paper); the head is `4C → 4C → classes`.
    pub channels: usize,
    pub classes: usize,
    /// Sparse-Morph budget K (8·128 = 1024 in the paper).
    pub sparse_k: usize,
    pub dropout: f32,
}

impl ShortChunkConfig {
    /// The paper's setting for `head` at width `channels`.
    pub fn paper(head: HeadKind, channels: usize) -> ShortChunkConfig {
        ShortChunkConfig { head, channels, classes: 50, sparse_k: 8 * 128, dropout: 0.5 }
    }
}

pub struct ShortChunkCnn {
    pub config: ShortChunkConfig,
    pub mel: MelSpectrogram,
    pub spec_bn: BatchNorm,
    pub blocks: Vec<ConvBlock>,
    pub head: Head,
}

impl ShortChunkCnn {
    pub fn new(config: ShortChunkConfig, seed: u64) -> ShortChunkCnn {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let c = config.channels;
        let chans = [1, c, c, 2 * c, 2 * c, 2 * c, 2 * c, 4 * c];
        let blocks = (0..7).map(|i| ConvBlock::new(chans[i], chans[i + 1], &mut rng)).collect();
        let dims = HeadDims {
            d: 4 * c,
            h: 4 * c,
            classes: config.classes,
            sparse_k: config.sparse_k,
            dropout: config.dropout,
        };
        let head = Head::new(config.head, dims, &mut rng);
        ShortChunkCnn {
            config,
            mel: MelSpectrogram::new(MelConfig::default()),
            spec_bn: BatchNorm::new(1),
            blocks,
            head,
        }
    }

    /// The log-mel input `[N, 1, 128, frames]` of raw audio `[N, samples]`.
    pub fn spectrogram(&self, wav: &Tensor) -> Result<Tensor> {
        let s = wav.shape();
        if s.len() != 2 || s[1] < 128 * self.mel.config.hop {
            bail!(
                "ShortChunkCnn expects raw audio [N, samples] with at least {} samples, got {s:?}",
                128 * self.mel.config.hop
            );
        }
        let frames = self.mel.frames(s[1]);
        let db = self.mel.db_batch(wav.data(), s[1]);
        Ok(Tensor::new(ArrayD::from_shape_vec(IxDyn(&[s[0], 1, self.mel.config.n_mels, frames]), db)?))
    }

    /// Features `[N, 4C]` of a spectrogram batch.
    pub fn features(&mut self, spec: &Tensor, ctx: &mut Ctx) -> Tensor {
        let x = self.spec_bn.forward(spec, ctx);
        self.blocks.iter_mut().fold(x, |h, b| b.forward(&h, ctx)).global_max_pool()
    }

    /// Tag probabilities from a precomputed spectrogram.
    pub fn forward_spec(&mut self, spec: &Tensor, ctx: &mut Ctx) -> Tensor {
        let f = self.features(spec, ctx);
        self.head.forward(&f, ctx).sigmoid()
    }
}

impl Forward for ShortChunkCnn {
    type Output = Result<Tensor>;
    /// Tag probabilities `[N, classes]` of raw audio `[N, samples]`.
    fn forward(&mut self, wav: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let spec = self.spectrogram(wav)?;
        Ok(self.forward_spec(&spec, ctx))
    }
}

impl Module for ShortChunkCnn {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        visit_child("spec_bn", &self.spec_bn, f);
        for (i, b) in self.blocks.iter().enumerate() {
            visit_child(&format!("blocks.{i}"), b, f);
        }
        visit_child("head", &self.head, f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        visit_child_mut("spec_bn", &mut self.spec_bn, f);
        for (i, b) in self.blocks.iter_mut().enumerate() {
            visit_child_mut(&format!("blocks.{i}"), b, f);
        }
        visit_child_mut("head", &mut self.head, f);
    }
}
