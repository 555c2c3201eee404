//! The one training loop of every experiment: resumable epochs, seeded data
//! order and dropout, best-model tracking, phases with best-model reloads,
//! checkpoints — and, after training, the pruning grid. An experiment says
//! only what differs ([`Task`]): its model, its loss on a batch, its
//! validation score, its schedule.
//!
//! Every epoch shuffles the training set with a seed drawn from the run's
//! seed and the epoch, steps through it in batches (a last batch of one
//! example is left out: train-mode BatchNorm needs two), validates, keeps
//! the best model (`best.npz`), then writes the log and the checkpoint (see
//! [`RunDir`]). A run resumed from its checkpoint draws exactly the batches
//! and dropout masks of an uninterrupted one, and ends with the same numbers.

use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::run_dir::{Meta, RunDir};
use crate::models::{Head, HeadKind};
use crate::nn::{Module, ModuleExt, StateDict};
use crate::optim::Optimizer;
use crate::prune::{HeadPrune, prune_head};

/// What an experiment's training run needs beyond the common loop.
pub trait Task: Sync {
    type Model: Module;
    /// One line of the epoch log.
    type Log: Serialize + DeserializeOwned;

    /// Examples in the training set (shuffled each epoch).
    fn n_train(&self) -> usize;
    fn batch_size(&self) -> usize;
    fn epochs(&self) -> usize;
    /// The phase of epoch `epoch` (1-based) of a schedule; one phase unless
    /// overridden. Each new phase starts from the best model so far.
    fn phase_of(&self, _epoch: usize) -> usize {
        0
    }
    /// The optimiser of a run (or a resumed run) in `phase`.
    fn optimizer(&self, phase: usize) -> Box<dyn Optimizer + Send>;
    /// Carry `opt` from phase `from` into phase `to` (a new rule, a new
    /// learning rate); only called by schedules with several phases.
    fn change_phase(&self, _from: usize, _to: usize, _opt: &mut Box<dyn Optimizer + Send>) {}
    /// One optimiser step on the training examples `batch` (train mode,
    /// dropout drawn from `seed`); returns the loss.
    fn step(&self, model: &mut Self::Model, opt: &mut dyn Optimizer, batch: &[usize], seed: u64) -> Result<f64>;
    /// After an epoch: the validation score to keep the best model by
    /// (higher is better) and the epoch's log line.
    fn validate(&self, model: &mut Self::Model, epoch: &Epoch) -> Result<(f64, Self::Log)>;
    /// The checkpoint's record of the best score: a name and an integer.
    fn best_to_meta(&self, score: f64) -> (&'static str, i64);
    /// The best score a checkpoint records.
    fn best_from_meta(&self, meta: &Meta) -> f64;
}

/// What the loop measured of one epoch, for [`Task::validate`] to log.
#[derive(Clone, Debug)]
pub struct Epoch {
    /// 1-based.
    pub epoch: usize,
    pub phase: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    pub steps: usize,
    /// Training time (validation excluded).
    pub seconds: f64,
    /// Threads of the pool that trained it.
    pub threads: usize,
}

/// A finished training: every epoch's log line and the best epoch.
pub struct Trained<L> {
    pub epochs: Vec<L>,
    pub best_epoch: usize,
}

/// Per-step dropout seed: a pure function of (run seed, epoch, step), so a
/// resumed run draws exactly the masks of an uninterrupted one.
pub fn step_seed(seed: u64, epoch: usize, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((epoch as u64) << 32) ^ step as u64
}

/// Train `model` for `task` in `dir`, from its checkpoint if there is one.
/// `label` names the run in the progress bar's messages.
pub fn train<T: Task>(
    task: &T,
    model: &mut T::Model,
    seed: u64,
    dir: &RunDir,
    bar: &ProgressBar,
    label: &str,
) -> Result<Trained<T::Log>> {
    let (mut epochs, mut best, mut best_epoch, mut phase) = (Vec::new(), f64::NEG_INFINITY, 0usize, 0usize);
    // The checkpoint's phase decides which optimiser its state belongs to.
    let meta = dir.checkpoint_meta()?;
    if let Some(meta) = &meta {
        phase = meta.get("phase").copied().unwrap_or(0) as usize;
    }
    let mut opt = task.optimizer(phase);
    if let Some(meta) = meta {
        dir.load_checkpoint(model, opt.as_mut())?;
        epochs = dir.read_log::<T::Log>(meta["epochs_done"] as usize)?;
        best = task.best_from_meta(&meta);
        best_epoch = meta["best_epoch"] as usize;
    }
    let n = task.n_train();
    let steps = n / task.batch_size() + usize::from(n % task.batch_size() >= 2);
    bar.set_length((steps * task.epochs()) as u64);
    bar.set_position((steps * epochs.len()) as u64);
    for epoch in epochs.len() + 1..=task.epochs() {
        let next = task.phase_of(epoch);
        if next != phase {
            dir.load_best(model)?;
            task.change_phase(phase, next, &mut opt);
            phase = next;
        }
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order
            .shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407)));
        let mut loss_sum = 0.0f64;
        for (step, batch) in order.chunks(task.batch_size()).take(steps).enumerate() {
            let loss = task.step(model, opt.as_mut(), batch, step_seed(seed, epoch, step))?;
            loss_sum += loss;
            bar.inc(1);
            if step % 5 == 0 {
                bar.set_message(format!("{label} epoch {epoch} loss {loss:.4}"));
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        let stats = Epoch {
            epoch,
            phase,
            train_loss: loss_sum / steps.max(1) as f64,
            steps,
            seconds,
            threads: rayon::current_num_threads(),
        };
        let (score, log) = task.validate(model, &stats)?;
        epochs.push(log);
        if score > best {
            (best, best_epoch) = (score, epoch);
            dir.save_best(model)?;
        }
        dir.write_log(&epochs)?;
        let (best_key, best_value) = task.best_to_meta(best);
        let meta: Meta = [("epochs_done", epoch as i64), ("phase", phase as i64), ("best_epoch", best_epoch as i64)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain([(best_key.to_string(), best_value)])
            .collect();
        dir.save_checkpoint(model, opt.as_ref(), &meta)?;
    }
    Ok(Trained { epochs, best_epoch })
}

/// One point of the pruning grid: the ratios, what pruning removed, and the
/// experiment's metrics of the pruned model.
pub struct GridPoint<M> {
    pub r1: f64,
    pub r2: f64,
    pub report: HeadPrune,
    pub metrics: M,
}

/// Prune a copy of the best head at every `(r1, r2)` of `ratios` × `ratios`
/// (r2 outer) and measure it with `eval`; the Zhang head, whose layers the
/// paper does not prune, gets no grid. `head_of` builds a fresh head
/// holding the best weights.
pub fn prune_grid<M>(
    kind: HeadKind,
    ratios: &[f64],
    head_of: impl Fn() -> Result<Head>,
    mut eval: impl FnMut(&mut Head) -> Result<M>,
) -> Result<Vec<GridPoint<M>>> {
    if kind == HeadKind::Zhang {
        return Ok(vec![]);
    }
    let mut points = Vec::new();
    for &r2 in ratios {
        for &r1 in ratios {
            let mut head = head_of()?;
            let report = prune_head(&mut head, r1, r2)?;
            points.push(GridPoint { r1, r2, metrics: eval(&mut head)?, report });
        }
    }
    Ok(points)
}

/// A fresh model holding the best weights a run saved.
pub fn best_model<M: Module>(dir: &RunDir, fresh: impl Fn() -> M) -> Result<(M, StateDict)> {
    let best = dir.best_state()?;
    let mut model = fresh();
    model.load_state_dict(&best)?;
    Ok((model, best))
}
