//! The CIFAR-10 protocol: train every head × seed (Adam, batch 64, keep the
//! best validation model), evaluate on test, prune over the r1 × r2 grid.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Result, bail};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};
use serde::{Deserialize, Serialize};

use super::plan::{Plan, StepCost, seconds_per_call};
use super::run_dir::{Meta, RunDir};
use super::trainer::{self, Epoch, Task};
use super::{Protocol, RunId, RunRecord};
use crate::autograd::no_grad;
use crate::data::cifar::ImageSet;
use crate::data::identity::DataId;
use crate::models::{CifarConfig, CifarNet, Head, HeadKind};
use crate::nn::{Ctx, Forward, ModuleExt};
use crate::ops;
use crate::optim::{Adam, Optimizer};
use crate::tensor::Tensor;

/// Every setting that decides the numbers of a CIFAR-10 run (stored in
/// `protocol.json` and `results.json`). Which heads and seeds are run, and
/// on how many threads, is not part of it: see [`super::grid`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CifarProtocol {
    /// What the images are (format, counts, fingerprint) and where they came from.
    pub data: DataId,
    pub channels: usize,
    pub hidden: usize,
    pub sparse_k: usize,
    pub dropout: f32,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    /// Seed of the 80/20 train/validation split (the same for every run).
    pub split_seed: u64,
    pub ratios: Vec<f64>,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
}

impl CifarProtocol {
    /// The paper's protocol: C = 128, h = 512, K = 2h, 10 epochs of Adam at
    /// 1e-3 with batch 64, the ratio grid 0.7 / 0.8 / 0.9 / 0.95. `data` and
    /// the split sizes are filled in when the data is loaded.
    pub fn paper() -> CifarProtocol {
        CifarProtocol {
            data: DataId::default(),
            channels: 128,
            hidden: 512,
            sparse_k: 1024,
            dropout: 0.5,
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            split_seed: 0,
            ratios: vec![0.7, 0.8, 0.9, 0.95],
            n_train: 40_000,
            n_val: 10_000,
            n_test: 10_000,
        }
    }
}

impl Protocol for CifarProtocol {
    const EXPERIMENT: &'static str = "cifar";
    type Run = CifarRun;

    fn misfit(&self, run: &CifarRun) -> Option<String> {
        super::grid_misfit(&run.head, run.epochs.len(), run.pruned.len(), self.epochs, self.ratios.len())
    }

    fn write_report(&self, runs: &[CifarRun], missing: &[RunId], dir: &std::path::Path) -> Result<String> {
        let results = super::cifar_report::CifarResults::from_runs(self.clone(), runs, missing);
        results.write(dir)?;
        Ok(results.table_md())
    }
}

impl Plan for CifarProtocol {
    /// Times training steps on random images, and the evaluation forward
    /// pass on a batch of 256 (as [`evaluate`] runs it).
    fn time(&self, head: HeadKind) -> Result<StepCost> {
        let config = self.config(head);
        let mut model = CifarNet::new(config, 0);
        let mut opt = Adam::new(self.lr, 0.0);
        let images = |n: usize| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
            let v: Vec<f32> = (0..n * 3 * 32 * 32).map(|_| rng.random::<f32>() - 0.5).collect();
            Tensor::new(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n, 3, 32, 32]), v).expect("sizes"))
        };
        let (x, labels) = (images(self.batch_size), (0..self.batch_size).map(|i| i % 10).collect::<Vec<_>>());
        let step = seconds_per_call(|| {
            // The graph is dropped before the step (see `Optimizer::step`).
            let grads = ops::cross_entropy(&model.forward(&x, &mut Ctx::train(1))?, &labels).backward();
            opt.step(&mut model, &grads);
            Ok(())
        })?;
        let batch = images(256);
        let eval = seconds_per_call(|| no_grad(|| model.forward(&batch, &mut Ctx::eval())).map(drop))?;
        Ok(StepCost { step, eval_item: eval / 256.0 })
    }

    fn run_seconds(&self, c: &StepCost) -> f64 {
        let epoch = self.train_steps(self.n_train) as f64 * c.step + self.n_val as f64 * c.eval_item;
        epoch * self.epochs as f64 + self.n_test as f64 * c.eval_item
    }
}

/// Train / validation / test images of one reproduction.
pub struct CifarSplits {
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: ImageSet,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Percent.
    pub val_acc: f64,
    /// Training time of the epoch (validation excluded).
    pub seconds: f64,
    pub images_per_s: f64,
    /// Threads of the pool that trained the epoch (the kernels make results
    /// independent of it; the log makes that checkable).
    pub threads: usize,
}

/// Test accuracy of one pruned copy of the best model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrunedRun {
    pub r1: f64,
    pub r2: f64,
    pub params: usize,
    pub test_acc: f64,
    /// Measured fraction of inactive weights per pruned layer.
    pub sparsity: BTreeMap<String, f64>,
}

/// Histogram of `|w|` of the first head layer of the best model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub max: f32,
    pub counts: Vec<usize>,
}

/// Everything one (head, seed) run produced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CifarRun {
    pub head: String,
    pub seed: u64,
    pub epochs: Vec<EpochLog>,
    pub best_epoch: usize,
    pub unpruned_test_acc: f64,
    pub pruned: Vec<PrunedRun>,
    pub first_layer_abs_weights: Histogram,
}

impl RunRecord for CifarRun {
    fn id(&self) -> RunId {
        RunId { head: self.head.clone(), seed: self.seed }
    }
}

/// Mean cross-entropy and number of correct predictions, eval mode.
pub fn evaluate(model: &mut CifarNet, set: &ImageSet) -> Result<(f64, usize)> {
    let (mut loss, mut correct) = (0.0f64, 0usize);
    no_grad(|| -> Result<()> {
        for chunk in (0..set.len()).collect::<Vec<_>>().chunks(256) {
            let (x, labels) = set.batch(chunk);
            let logits = model.forward(&Tensor::new(x), &mut Ctx::eval())?;
            loss += ops::cross_entropy(&logits, &labels).item() as f64 * chunk.len() as f64;
            correct += count_correct(&logits, &labels);
        }
        Ok(())
    })?;
    Ok((loss / set.len().max(1) as f64, correct))
}

/// Correct top-1 predictions (ties: the lowest class id).
pub fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    let k = logits.shape()[1];
    logits
        .data()
        .chunks_exact(k)
        .zip(labels)
        .filter(|(row, l)| {
            let best = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
            best == **l
        })
        .count()
}

fn percent(correct: usize, n: usize) -> f64 {
    100.0 * correct as f64 / n.max(1) as f64
}

/// The CIFAR-10 specifics of the common training loop: cross-entropy on a
/// batch of images, validation accuracy as the score (the best model is the
/// most accurate on validation), Adam throughout.
struct CifarTask<'a> {
    p: &'a CifarProtocol,
    data: &'a CifarSplits,
}

impl Task for CifarTask<'_> {
    type Model = CifarNet;
    type Log = EpochLog;

    fn n_train(&self) -> usize {
        self.data.train.len()
    }

    fn batch_size(&self) -> usize {
        self.p.batch_size
    }

    fn epochs(&self) -> usize {
        self.p.epochs
    }

    fn optimizer(&self, _phase: usize) -> Box<dyn Optimizer + Send> {
        Box::new(Adam::new(self.p.lr, 0.0))
    }

    fn step(&self, model: &mut CifarNet, opt: &mut dyn Optimizer, batch: &[usize], seed: u64) -> Result<f64> {
        let (x, labels) = self.data.train.batch(batch);
        // The graph is dropped before the step (see `Optimizer::step`).
        let (loss, grads) = {
            let loss = ops::cross_entropy(&model.forward(&Tensor::new(x), &mut Ctx::train(seed))?, &labels);
            (loss.item() as f64, loss.backward())
        };
        opt.step(model, &grads);
        Ok(loss)
    }

    fn validate(&self, model: &mut CifarNet, e: &Epoch) -> Result<(f64, EpochLog)> {
        let (val_loss, correct) = evaluate(model, &self.data.val)?;
        let log = EpochLog {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_loss,
            val_acc: percent(correct, self.data.val.len()),
            seconds: e.seconds,
            images_per_s: (e.steps * self.p.batch_size) as f64 / e.seconds,
            threads: e.threads,
        };
        Ok((correct as f64, log))
    }

    fn best_to_meta(&self, score: f64) -> (&'static str, i64) {
        ("best_correct", score as i64)
    }

    fn best_from_meta(&self, meta: &Meta) -> f64 {
        meta["best_correct"] as f64
    }
}

impl CifarProtocol {
    fn config(&self, head: HeadKind) -> CifarConfig {
        CifarConfig {
            head,
            channels: self.channels,
            hidden: self.hidden,
            classes: 10,
            sparse_k: self.sparse_k,
            dropout: self.dropout,
        }
    }

    /// Optimiser steps per epoch: every full batch, and a last partial one
    /// unless it would hold a single image (train-mode BatchNorm needs two).
    pub fn train_steps(&self, n: usize) -> usize {
        let full = n / self.batch_size;
        if n % self.batch_size >= 2 { full + 1 } else { full }
    }
}

/// Train one (head, seed) run in `dir`, resuming from its checkpoint if one
/// exists; then test the best model and every pruned copy of it. The
/// backbone is untouched by pruning, so its test features are computed once
/// and only the head runs per grid point.
pub fn run(
    p: &CifarProtocol,
    data: &CifarSplits,
    head: HeadKind,
    seed: u64,
    dir: &RunDir,
    bar: &ProgressBar,
) -> Result<CifarRun> {
    let label = format!("{head} seed {seed}");
    let mut model = CifarNet::new(p.config(head), seed);
    let trained = trainer::train(&CifarTask { p, data }, &mut model, seed, dir, bar, &label)?;
    bar.set_message(format!("{label}: testing and pruning"));
    let (mut model, best) = trainer::best_model(dir, || CifarNet::new(p.config(head), seed))?;
    let labels: Vec<usize> = data.test.labels.iter().map(|&l| l as usize).collect();
    let features = no_grad(|| {
        let chunks: Vec<Vec<usize>> =
            (0..data.test.len()).collect::<Vec<_>>().chunks(256).map(<[usize]>::to_vec).collect();
        let parts: Vec<Tensor> =
            chunks.iter().map(|c| model.features(&Tensor::new(data.test.batch(c).0), &mut Ctx::eval())).collect();
        Tensor::concat(&parts, 0)
    });
    let head_acc = |h: &mut Head| -> Result<f64> {
        let logits = no_grad(|| h.forward(&features, &mut Ctx::eval()));
        Ok(percent(count_correct(&logits, &labels), labels.len()))
    };
    let unpruned_test_acc = head_acc(&mut model.head)?;
    let fresh_head = || -> Result<Head> {
        let mut m = CifarNet::new(p.config(head), seed);
        m.load_state_dict(&best)?;
        Ok(m.head)
    };
    let pruned = trainer::prune_grid(head, &p.ratios, fresh_head, head_acc)?
        .into_iter()
        .map(|g| PrunedRun {
            r1: g.r1,
            r2: g.r2,
            params: g.report.params,
            test_acc: g.metrics,
            sparsity: g.report.sparsity(),
        })
        .collect();
    let result = CifarRun {
        head: head.id(),
        seed,
        epochs: trained.epochs,
        best_epoch: trained.best_epoch,
        unpruned_test_acc,
        pruned,
        first_layer_abs_weights: first_layer_histogram(&model.head),
    };
    bar.finish_with_message(format!("{label}: test {:.2}%", result.unpruned_test_acc));
    Ok(result)
}

/// 60-bin histogram of `|w|` over the first head layer (both maxout branches).
pub fn first_layer_histogram(head: &Head) -> Histogram {
    let weights: Vec<f32> = match head {
        Head::Relu { dense1, .. }
        | Head::Zhang { dense1, .. }
        | Head::DenseMorph { dense1, .. }
        | Head::SparseMorph { dense1, .. } => dense1.weight.data().iter().map(|v| v.abs()).collect(),
        Head::Maxout { maxout, .. } => {
            maxout.branches.iter().flat_map(|(l, _)| l.weight.data().iter().map(|v| v.abs())).collect()
        }
    };
    let max = weights.iter().copied().fold(0.0f32, f32::max).max(f32::MIN_POSITIVE);
    let mut counts = vec![0usize; 60];
    for w in weights {
        counts[((w / max * 60.0) as usize).min(59)] += 1;
    }
    Histogram { max, counts }
}

/// Parse a comma-separated list of heads.
pub fn parse_heads(list: &str) -> Result<Vec<HeadKind>> {
    let heads: Vec<HeadKind> =
        list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect::<Result<_>>()?;
    if heads.is_empty() {
        bail!("--heads is empty: give e.g. relu,maxout,dense-morph,sparse-morph");
    }
    Ok(heads)
}

/// Parse a comma-separated list of pruning ratios in (0, 1).
pub fn parse_ratios(list: &str) -> Result<Vec<f64>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let r: f64 = s.trim().parse().map_err(|_| anyhow::anyhow!("pruning ratio `{s}` is not a number"))?;
            if !(0.0..1.0).contains(&r) {
                bail!("pruning ratio {r} must be in [0, 1): it is the fraction of weights removed");
            }
            Ok(r)
        })
        .collect()
}

/// Where a reproduction reads its images.
pub enum CifarSource {
    /// The seeded generator: `n_train` training (split 80/20) and `n_test` test images.
    Synthetic { n_train: usize, n_test: usize, seed: u64 },
    /// Binary folder, image folder or `.tar.gz`; optionally a seeded random
    /// subset of each split (for quick runs).
    Path { path: std::path::PathBuf, subset_train: Option<usize>, subset_test: Option<usize> },
}

impl CifarSource {
    /// Load and split the images; decoded real data is cached in `cache_dir`.
    /// `typed` is the data path as the user gave it, for the record.
    pub fn load(&self, split_seed: u64, cache_dir: &std::path::Path, typed: &str) -> Result<(DataId, CifarSplits)> {
        let (source, format, data) = match self {
            CifarSource::Synthetic { n_train, n_test, seed } => (
                "synthetic".to_string(),
                format!("synthetic CIFAR-like images (seed {seed})"),
                crate::data::synthetic::cifar_like(*n_train, *n_test, *seed),
            ),
            CifarSource::Path { path, subset_train, subset_test } => {
                let mut data = crate::data::cifar::Cifar::load(path, cache_dir)?;
                let mut format = crate::data::cifar::Cifar::format_of(path).to_string();
                for (set, limit, name) in
                    [(&mut data.train, subset_train, "train"), (&mut data.test, subset_test, "test")]
                {
                    if let Some(n) = *limit {
                        if n > set.len() {
                            bail!("--subset-{name} {n} exceeds the {} {name} images available", set.len());
                        }
                        let mut idx: Vec<usize> = (0..set.len()).collect();
                        idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(split_seed ^ 0xC1FA));
                        idx.truncate(n);
                        idx.sort_unstable();
                        *set = set.subset(&idx);
                        let _ = write!(format, ", a seeded random {n} of its {name} images");
                    }
                }
                (typed.to_string(), format, data)
            }
        };
        let id = DataId {
            source,
            format,
            counts: [("train".to_string(), data.train.len()), ("test".to_string(), data.test.len())].into(),
            sha256: data.fingerprint(),
        };
        let (tr, va) = crate::data::cifar::split_train_val(data.train.len(), split_seed);
        Ok((id, CifarSplits { train: data.train.subset(&tr), val: data.train.subset(&va), test: data.test }))
    }
}
