//! One training run's folder: everything needed to resume after a kill and
//! to finish with exactly the result of an uninterrupted run.
//!
//! ```text
//! <run>/checkpoint.npz  model + optimiser + `meta.*` counters, after the last finished epoch
//! <run>/best.npz        the model with the best validation score so far
//! <run>/log.jsonl       one JSON line per finished epoch
//! <run>/result.json     written last; its presence means "done"
//! ```
//! Every file is written atomically. Each epoch writes `best.npz` (if it
//! improved), then the log, then the checkpoint: a run killed in between
//! redoes that epoch, deterministically, and rewrites the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{ArrayD, IxDyn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::io::write_text_atomic;
use crate::nn::checkpoint::{load_npz, prefixed, save_npz, sub_dict};
use crate::nn::{Module, ModuleExt, StateDict, StateValue};
use crate::optim::Optimizer;

/// Integer counters saved with a checkpoint (epochs done, best epoch, the
/// best score's bits, the schedule phase, ...).
pub type Meta = BTreeMap<String, i64>;

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(path).with_context(|| format!("cannot create run folder {}", path.display()))?;
        Ok(RunDir { path: path.to_path_buf() })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Save model, optimiser state and counters.
    pub fn save_checkpoint(&self, model: &mut dyn Module, opt: &dyn Optimizer, meta: &Meta) -> Result<()> {
        let mut sd = prefixed(model.state_dict(), "model");
        sd.extend(prefixed(opt.state_dict(), "optimizer"));
        for (k, v) in meta {
            sd.insert(format!("meta.{k}"), StateValue::I64(ArrayD::from_elem(IxDyn(&[]), *v)));
        }
        save_npz(&self.file("checkpoint.npz"), &sd)
    }

    /// Restore the last checkpoint into `model` and `opt`; `None` when there is none.
    pub fn load_checkpoint(&self, model: &mut dyn Module, opt: &mut dyn Optimizer) -> Result<Option<Meta>> {
        let path = self.file("checkpoint.npz");
        if !path.exists() {
            return Ok(None);
        }
        let sd = load_npz(&path)?;
        model.load_state_dict(&sub_dict(&sd, "model")).with_context(|| format!("resuming from {}", path.display()))?;
        opt.load_state_dict(&sub_dict(&sd, "optimizer"))?;
        let meta = sub_dict(&sd, "meta")
            .into_iter()
            .filter_map(|(k, v)| match v {
                StateValue::I64(a) => a.iter().next().map(|&x| (k, x)),
                StateValue::F32(_) => None,
            })
            .collect();
        Ok(Some(meta))
    }

    pub fn save_best(&self, model: &mut dyn Module) -> Result<()> {
        save_npz(&self.file("best.npz"), &model.state_dict())
    }

    pub fn load_best(&self, model: &mut dyn Module) -> Result<()> {
        model.load_state_dict(&load_npz(&self.file("best.npz"))?)
    }

    pub fn best_state(&self) -> Result<StateDict> {
        load_npz(&self.file("best.npz"))
    }

    /// Rewrite the epoch log with `entries`, one JSON object per line.
    pub fn write_log<T: Serialize>(&self, entries: &[T]) -> Result<()> {
        let mut text = String::new();
        for e in entries {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        write_text_atomic(&self.file("log.jsonl"), &text)
    }

    /// The first `n` entries of the epoch log.
    pub fn read_log<T: DeserializeOwned>(&self, n: usize) -> Result<Vec<T>> {
        let path = self.file("log.jsonl");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let entries: Vec<T> = text
            .lines()
            .take(n)
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} is corrupt", path.display()))?;
        anyhow::ensure!(entries.len() == n, "{} holds {} epochs, the checkpoint {n}", path.display(), entries.len());
        Ok(entries)
    }

    pub fn write_result<T: Serialize>(&self, result: &T) -> Result<()> {
        write_text_atomic(&self.file("result.json"), &serde_json::to_string_pretty(result)?)
    }

    /// The finished result, if this run completed before.
    pub fn read_result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.file("result.json");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        Ok(Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is corrupt; delete it to rerun", path.display()))?,
        ))
    }
}

/// The `wall_seconds` that `dir/results.json` already records for this same
/// `protocol`, or 0. A grid reproduced again in the same folder — to finish
/// interrupted runs or only to redraw the report — adds its own time to it
/// rather than replacing the record with a few seconds.
pub fn earlier_wall_seconds(dir: &Path, protocol: &impl Serialize) -> f64 {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let earlier = std::fs::read_to_string(dir.join("results.json")).ok().and_then(|t| parse(&t));
    // Through text, as in the file: f32 settings compare equal after the round trip.
    let now = serde_json::to_string(protocol).ok().and_then(|t| parse(&t));
    match (earlier, now) {
        (Some(e), Some(p)) if e.get("protocol") == Some(&p) => e["wall_seconds"].as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}
