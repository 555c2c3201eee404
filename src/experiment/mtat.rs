//! The MTAT protocol: Short-chunk CNN, one random 59 049-sample chunk per
//! clip per epoch, BCE, batch 16; Adam (lr 1e-4, L2 1e-4), then — each time
//! reloading the best model (lowest validation loss) — SGD Nesterov at
//! 1e-3, 1e-4 and 1e-5 (momentum 0.9, L2 1e-4). Validation and test average
//! the sigmoid outputs of 16 evenly spaced chunks per clip; metrics are
//! macro ROC-AUC and PR-AUC. Then the head is pruned over the r1 × r2 grid.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use indicatif::ProgressBar;
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::plan::{Plan, StepCost, seconds_per_call};
use super::run_dir::{Meta, RunDir};
use super::trainer::{self, Epoch, Task};
use super::{Protocol, RunId, RunRecord};
use crate::autograd::no_grad;
use crate::data::identity::DataId;
use crate::data::mtat::CHUNK;
use crate::data::mtat::{Clip, EVAL_CHUNKS, Mtat};
use crate::metrics::tag_metrics;
use crate::models::{Head, HeadKind, ShortChunkCnn, ShortChunkConfig};
use crate::nn::{Ctx, Forward, ModuleExt};
use crate::ops;
use crate::optim::{Adam, Optimizer, Sgd};
use crate::tensor::Tensor;

/// Every setting that decides the numbers of an MTAT run (stored in
/// `protocol.json` and `results.json`); heads, seeds and threads are not
/// part of it (see [`super::grid`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatProtocol {
    /// What the clips are (format, counts, fingerprint) and where they came from.
    pub data: DataId,
    pub channels: usize,
    pub sparse_k: usize,
    pub dropout: f32,
    /// Epochs of each phase: Adam, then SGD at each of `sgd_lrs`.
    pub epochs: Vec<usize>,
    pub adam_lr: f32,
    pub sgd_lrs: Vec<f32>,
    pub weight_decay: f32,
    pub batch_size: usize,
    pub ratios: Vec<f64>,
    pub n_train: usize,
    pub n_valid: usize,
    pub n_test: usize,
    pub n_tags: usize,
}

impl MtatProtocol {
    /// The paper's protocol on the full MTAT split: C = 128 (head 512 → 512 →
    /// 50), K = 1024, Adam at 1e-4 for 80 epochs then SGD at 1e-3 for 20,
    /// batch 16, weight decay 1e-4, the ratio grid 0.8 / 0.9 / 0.95 / 0.98.
    /// `data` is filled in when the data is loaded.
    pub fn paper() -> MtatProtocol {
        MtatProtocol {
            data: DataId::default(),
            channels: 128,
            sparse_k: 1024,
            dropout: 0.5,
            epochs: vec![80, 20],
            adam_lr: 1e-4,
            sgd_lrs: vec![1e-3, 1e-4, 1e-5],
            weight_decay: 1e-4,
            batch_size: 16,
            ratios: vec![0.8, 0.9, 0.95, 0.98],
            n_train: 15244,
            n_valid: 1529,
            n_test: 4332,
            n_tags: 50,
        }
    }

    pub fn total_epochs(&self) -> usize {
        self.epochs.iter().sum()
    }

    /// The phase (0 = Adam, k = SGD at `sgd_lrs[k-1]`) of epoch `e` (1-based).
    pub fn phase_of(&self, e: usize) -> usize {
        let mut end = 0;
        for (p, &n) in self.epochs.iter().enumerate() {
            end += n;
            if e <= end {
                return p;
            }
        }
        self.epochs.len() - 1
    }

    fn lr_of(&self, phase: usize) -> f32 {
        if phase == 0 { self.adam_lr } else { self.sgd_lrs[phase - 1] }
    }

    fn optimizer(&self, phase: usize) -> Box<dyn Optimizer + Send> {
        if phase == 0 {
            Box::new(Adam::new(self.adam_lr, self.weight_decay))
        } else {
            Box::new(Sgd::new(self.lr_of(phase), 0.9, true, self.weight_decay))
        }
    }

    pub fn model_config(&self, head: HeadKind) -> ShortChunkConfig {
        ShortChunkConfig {
            head,
            channels: self.channels,
            classes: self.n_tags,
            sparse_k: self.sparse_k,
            dropout: self.dropout,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatEpochLog {
    pub epoch: usize,
    pub phase: String,
    pub lr: f32,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_roc_auc: f64,
    pub val_pr_auc: f64,
    /// Training time of the epoch (validation excluded).
    pub seconds: f64,
    pub clips_per_s: f64,
    /// Threads of the pool that trained the epoch.
    pub threads: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatPruned {
    pub r1: f64,
    pub r2: f64,
    pub params: usize,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub sparsity: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatRun {
    pub head: String,
    pub seed: u64,
    pub epochs: Vec<MtatEpochLog>,
    pub best_epoch: usize,
    pub test_roc_auc: f64,
    pub test_pr_auc: f64,
    pub pruned: Vec<MtatPruned>,
}

impl RunRecord for MtatRun {
    fn id(&self) -> RunId {
        RunId { head: self.head.clone(), seed: self.seed }
    }
}

impl Protocol for MtatProtocol {
    const EXPERIMENT: &'static str = "mtat";
    type Run = MtatRun;

    fn misfit(&self, run: &MtatRun) -> Option<String> {
        super::grid_misfit(&run.head, run.epochs.len(), run.pruned.len(), self.total_epochs(), self.ratios.len())
    }

    fn write_report(&self, runs: &[MtatRun], missing: &[RunId], dir: &std::path::Path) -> Result<String> {
        let results = super::mtat_report::MtatResults::from_runs(self.clone(), runs, missing);
        results.write(dir)?;
        Ok(results.table_md())
    }
}

/// Mean BCE over the 16 chunks of each clip, and the chunk-averaged tag
/// probabilities `[clips, tags]` (eval mode).
pub fn evaluate(model: &mut ShortChunkCnn, data: &Mtat, clips: &[Clip]) -> Result<(f64, Vec<f32>)> {
    let n_tags = data.n_tags;
    let mut loss = 0.0f64;
    let mut probs = Vec::with_capacity(clips.len() * n_tags);
    no_grad(|| -> Result<()> {
        for clip in clips {
            let wav = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[EVAL_CHUNKS, CHUNK]), data.eval_chunks(clip)?)?);
            let out = model.forward(&wav, &mut Ctx::eval())?;
            let target: Vec<f32> = (0..EVAL_CHUNKS).flat_map(|_| data.labels_of(clip).iter().copied()).collect();
            let target = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[EVAL_CHUNKS, n_tags]), target)?);
            loss += ops::binary_cross_entropy(&out, &target).item() as f64;
            probs.extend(out.mean_axis(0).data());
        }
        Ok(())
    })?;
    Ok((loss / clips.len().max(1) as f64, probs))
}

/// Macro ROC-AUC and PR-AUC of clip probabilities against the clips' labels.
fn auc(data: &Mtat, clips: &[Clip], probs: &[f32]) -> Result<(f64, f64)> {
    let labels: Vec<f32> = clips.iter().flat_map(|c| data.labels_of(c).iter().copied()).collect();
    let m = tag_metrics(&labels, probs, data.n_tags)?;
    Ok((m.roc_auc, m.pr_auc))
}

/// The MTAT specifics of the common training loop: BCE on one random chunk
/// per clip, validation loss as the score (the best model has the lowest),
/// Adam then SGD phases, each new phase from the best model so far.
struct MtatTask<'a> {
    p: &'a MtatProtocol,
    data: &'a Mtat,
}

impl Task for MtatTask<'_> {
    type Model = ShortChunkCnn;
    type Log = MtatEpochLog;

    fn n_train(&self) -> usize {
        self.data.train.len()
    }

    fn batch_size(&self) -> usize {
        self.p.batch_size
    }

    fn epochs(&self) -> usize {
        self.p.total_epochs()
    }

    fn phase_of(&self, epoch: usize) -> usize {
        self.p.phase_of(epoch)
    }

    fn optimizer(&self, phase: usize) -> Box<dyn Optimizer + Send> {
        self.p.optimizer(phase)
    }

    /// Leaving Adam starts SGD afresh; later phases keep SGD's momentum and
    /// lower its learning rate.
    fn change_phase(&self, from: usize, to: usize, opt: &mut Box<dyn Optimizer + Send>) {
        if from == 0 {
            *opt = self.p.optimizer(to);
        }
        opt.set_lr(self.p.lr_of(to));
    }

    /// Each clip of the batch gives one random chunk, drawn from the step's
    /// seed and the clip's place in the batch.
    fn step(&self, model: &mut ShortChunkCnn, opt: &mut dyn Optimizer, batch: &[usize], seed: u64) -> Result<f64> {
        let data = self.data;
        let chunks: Vec<Vec<f32>> = batch
            .par_iter()
            .enumerate()
            .map(|(k, &i)| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ (k as u64).wrapping_mul(31));
                data.random_chunk(&data.train[i], &mut rng)
            })
            .collect::<Result<_>>()?;
        let wav = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[batch.len(), CHUNK]), chunks.concat())?);
        let target: Vec<f32> = batch.iter().flat_map(|&i| data.labels_of(&data.train[i]).iter().copied()).collect();
        let target = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[batch.len(), data.n_tags]), target)?);
        // The graph is dropped before the step (see `Optimizer::step`).
        let (loss, grads) = {
            let loss = ops::binary_cross_entropy(&model.forward(&wav, &mut Ctx::train(seed))?, &target);
            (loss.item() as f64, loss.backward())
        };
        opt.step(model, &grads);
        Ok(loss)
    }

    fn validate(&self, model: &mut ShortChunkCnn, e: &Epoch) -> Result<(f64, MtatEpochLog)> {
        let (val_loss, probs) = evaluate(model, self.data, &self.data.valid)?;
        let (val_roc_auc, val_pr_auc) = auc(self.data, &self.data.valid, &probs)?;
        let log = MtatEpochLog {
            epoch: e.epoch,
            phase: if e.phase == 0 { "adam".into() } else { format!("sgd{}", e.phase) },
            lr: self.p.lr_of(e.phase),
            train_loss: e.train_loss,
            val_loss,
            val_roc_auc,
            val_pr_auc,
            seconds: e.seconds,
            clips_per_s: self.data.train.len() as f64 / e.seconds,
            threads: e.threads,
        };
        Ok((-val_loss, log))
    }

    fn best_to_meta(&self, score: f64) -> (&'static str, i64) {
        ("best_loss_bits", (-score).to_bits() as i64)
    }

    fn best_from_meta(&self, meta: &Meta) -> f64 {
        -f64::from_bits(meta["best_loss_bits"] as u64)
    }
}

/// Train one (head, seed) run in `dir` (resuming from its checkpoint), then
/// test the best model and every pruned copy of it; the backbone's test
/// features are computed once.
pub fn run(
    p: &MtatProtocol,
    data: &Mtat,
    head: HeadKind,
    seed: u64,
    dir: &RunDir,
    bar: &ProgressBar,
) -> Result<MtatRun> {
    let label = format!("{head} seed {seed}");
    let mut model = ShortChunkCnn::new(p.model_config(head), seed);
    let trained = trainer::train(&MtatTask { p, data }, &mut model, seed, dir, bar, &label)?;
    bar.set_message(format!("{label}: testing and pruning"));
    let (mut model, best) = trainer::best_model(dir, || ShortChunkCnn::new(p.model_config(head), seed))?;
    let features = no_grad(|| -> Result<Tensor> {
        let mut parts = Vec::new();
        for clip in &data.test {
            let wav = Tensor::new(ArrayD::from_shape_vec(IxDyn(&[EVAL_CHUNKS, CHUNK]), data.eval_chunks(clip)?)?);
            let spec = model.spectrogram(&wav)?;
            parts.push(model.features(&spec, &mut Ctx::eval()));
        }
        Ok(Tensor::concat(&parts, 0))
    })?;
    let metrics_of = |h: &mut Head| -> Result<(f64, f64)> {
        let probs = no_grad(|| h.forward(&features, &mut Ctx::eval()).sigmoid());
        let per_clip = probs.reshape(&[data.test.len(), EVAL_CHUNKS, data.n_tags]).mean_axis(1);
        auc(data, &data.test, per_clip.data())
    };
    let (test_roc_auc, test_pr_auc) = metrics_of(&mut model.head)?;
    let fresh_head = || -> Result<Head> {
        let mut m = ShortChunkCnn::new(p.model_config(head), seed);
        m.load_state_dict(&best)?;
        Ok(m.head)
    };
    let pruned = trainer::prune_grid(head, &p.ratios, fresh_head, metrics_of)?
        .into_iter()
        .map(|g| MtatPruned {
            r1: g.r1,
            r2: g.r2,
            params: g.report.params,
            roc_auc: g.metrics.0,
            pr_auc: g.metrics.1,
            sparsity: g.report.sparsity(),
        })
        .collect();
    let result = MtatRun {
        head: head.id(),
        seed,
        epochs: trained.epochs,
        best_epoch: trained.best_epoch,
        test_roc_auc,
        test_pr_auc,
        pruned,
    };
    bar.finish_with_message(format!("{label}: test ROC-AUC {:.4}", result.test_roc_auc));
    Ok(result)
}

/// Where a reproduction reads its clips.
pub enum MtatSource {
    /// MTAT in the reference layout (see [`Mtat`]).
    Path(std::path::PathBuf),
    /// Seeded synthetic MTAT-like clips (train, valid, test counts, seconds
    /// each), generated once into `dir`.
    Synthetic { clips: [usize; 3], seconds: f32, dir: std::path::PathBuf },
}

impl MtatSource {
    /// Synthetic clips from `--synthetic-clips train,valid,test` and `--synthetic-seconds`.
    pub fn synthetic(clips: &str, seconds: f32, dir: &std::path::Path) -> Result<MtatSource> {
        let counts: Vec<usize> = clips
            .split(',')
            .map(|s| s.trim().parse().map_err(|_| anyhow::anyhow!("--synthetic-clips takes train,valid,test counts")))
            .collect::<Result<_>>()?;
        let [train, valid, test] = counts[..] else { bail!("--synthetic-clips takes three counts, got `{clips}`") };
        anyhow::ensure!(counts.iter().all(|&c| c >= 2), "--synthetic-clips takes three counts >= 2, got `{clips}`");
        anyhow::ensure!(seconds >= 3.7, "--synthetic-seconds must cover a 59049-sample chunk (>= 3.7 s)");
        Ok(MtatSource::Synthetic { clips: [train, valid, test], seconds, dir: dir.to_path_buf() })
    }

    /// Open the clips (generating synthetic ones first if they are not
    /// there yet) and say what they are; `typed` is the data path as the
    /// user gave it, for the record.
    pub fn load(&self, typed: &str) -> Result<(DataId, Mtat)> {
        let (root, source, format) = match self {
            MtatSource::Path(p) => {
                (p.clone(), typed.to_string(), "MTAT reference layout (split files, binary.npy, npy clips)".to_string())
            }
            MtatSource::Synthetic { clips: [train, valid, test], seconds, dir } => {
                if !dir.join("split/test.npy").exists() {
                    eprintln!("writing synthetic MTAT-like clips to {} ...", dir.display());
                    let samples = (seconds * crate::data::mtat::SAMPLE_RATE as f32) as usize;
                    crate::data::synthetic::mtat_like(dir, *train, *valid, *test, samples, 2025)?;
                }
                let format = format!("synthetic MTAT-like clips ({train},{valid},{test}, {seconds} s each, seed 2025)");
                (dir.clone(), "synthetic".to_string(), format)
            }
        };
        let data = Mtat::load(&root)?;
        let counts = [
            ("train", data.train.len()),
            ("valid", data.valid.len()),
            ("test", data.test.len()),
            ("tags", data.n_tags),
        ];
        let counts = counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Ok((DataId { source, format, counts, sha256: data.fingerprint() }, data))
    }
}

/// Parse `--epochs A,B,C,D`: epochs of Adam, then of SGD at 1e-3, 1e-4, 1e-5.
pub fn parse_epochs(s: &str) -> Result<Vec<usize>> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse().map_err(|_| anyhow::anyhow!("--epochs `{s}`: `{x}` is not a number of epochs")))
        .collect::<Result<_>>()?;
    if v.is_empty() || v.len() > 4 || v.iter().sum::<usize>() == 0 {
        bail!(
            "--epochs takes 1 to 4 comma-separated counts (Adam, SGD 1e-3, SGD 1e-4, SGD 1e-5), not all zero; got `{s}`"
        );
    }
    Ok(v)
}

impl Plan for MtatProtocol {
    fn time(&self, head: HeadKind) -> Result<StepCost> {
        time_step_and_eval(self, head)
    }

    fn run_seconds(&self, c: &StepCost) -> f64 {
        let epoch = self.n_train.div_ceil(self.batch_size) as f64 * c.step + self.n_valid as f64 * c.eval_item;
        epoch * self.total_epochs() as f64 + self.n_test as f64 * c.eval_item
    }
}

/// Seconds per training step and per evaluated clip (16 chunks) of one model,
/// on the current thread pool.
fn time_step_and_eval(p: &MtatProtocol, head: HeadKind) -> Result<StepCost> {
    let mut model = ShortChunkCnn::new(p.model_config(head), 0);
    let mut opt = p.optimizer(0);
    let mut s = 0x1234_5678_9ABC_DEF1u64;
    let wav = ArrayD::from_shape_simple_fn(IxDyn(&[p.batch_size, CHUNK]), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 2000) as f32 * 1e-4 - 0.1
    });
    let (wav, target) = (Tensor::new(wav), Tensor::new(ArrayD::from_elem(IxDyn(&[p.batch_size, p.n_tags]), 0.1)));
    let step = seconds_per_call(|| {
        // The graph is dropped before the step (see `Optimizer::step`).
        let grads = ops::binary_cross_entropy(&model.forward(&wav, &mut Ctx::train(1))?, &target).backward();
        opt.step(&mut model, &grads);
        Ok(())
    })?;
    let clip = Tensor::new(ArrayD::from_elem(IxDyn(&[EVAL_CHUNKS, CHUNK]), 0.01));
    let eval_item = seconds_per_call(|| no_grad(|| model.forward(&clip, &mut Ctx::eval())).map(drop))?;
    Ok(StepCost { step, eval_item })
}
