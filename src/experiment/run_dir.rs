//! One training run's folder: everything needed to resume after a kill and
//! to finish with exactly the result of an uninterrupted run.
//!
//! ```text
//! <run>/claim           locked (flock) by the process training the run; names it
//! <run>/checkpoint.npz  model + optimiser + `meta.*` counters, after the last finished epoch
//! <run>/best.npz        the model with the best validation score so far
//! <run>/log.jsonl       one JSON line per finished epoch
//! <run>/result.json     written last; its presence means "done"
//! ```
//! Every file is written atomically. Each epoch writes `best.npz` (if it
//! improved), then the log, then the checkpoint: a run killed in between
//! redoes that epoch, deterministically, and rewrites the same files.
//!
//! Several processes may share the folder (shards of a grid, on one machine
//! or over a network file system). Only the holder of the exclusive lock on
//! `claim` trains the run. The kernel releases a `flock` when its process
//! dies, however it dies, so a killed process never leaves a stale claim.
//!
//! `result.json` is sealed: it carries the SHA-256 of its run, so a file cut
//! short by a copy or edited by hand is refused by name instead of silently
//! entering a table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, IxDyn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data::identity::sha256_hex;
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
        Ok(Some(meta_of(&sd)))
    }

    /// The counters of the last checkpoint, without restoring it (to choose
    /// the optimiser its state belongs to); `None` when there is none.
    pub fn checkpoint_meta(&self) -> Result<Option<Meta>> {
        let path = self.file("checkpoint.npz");
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(meta_of(&load_npz(&path)?)))
    }

    pub fn save_best(&self, model: &mut dyn Module) -> Result<()> {
        save_npz(&self.file("best.npz"), &model.state_dict())
    }

    pub fn load_best(&self, model: &mut dyn Module) -> Result<()> {
        Ok(model.load_state_dict(&load_npz(&self.file("best.npz"))?)?)
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

    /// Write the finished run, sealed with the SHA-256 of its content.
    pub fn write_result<T: Serialize>(&self, result: &T) -> Result<()> {
        let run = serde_json::to_string(result)?;
        let seal = seal_of(&serde_json::from_str(&run)?);
        let text = format!("{{\n  \"sha256\": \"{seal}\",\n  \"run\": {}\n}}\n", serde_json::to_string_pretty(result)?);
        write_text_atomic(&self.file("result.json"), &text)
    }

    /// The finished run, if there is one. A `result.json` that is not valid
    /// JSON, lacks its seal, fails it, or does not describe a run is an error
    /// that names the file and the way out.
    pub fn read_result<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = self.file("result.json");
        if !path.exists() {
            return Ok(None);
        }
        let redo = "delete it and run the same command again: the run's test and pruning are recomputed from \
                    its best.npz (training is kept)";
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON (truncated or edited?); {redo}", path.display()))?;
        let (Some(seal), Some(run)) = (value.get("sha256").and_then(|s| s.as_str()), value.get("run")) else {
            bail!("{} is not a sealed run result (no `sha256` and `run` fields); {redo}", path.display());
        };
        if seal_of(run) != seal {
            bail!(
                "{} was changed after it was written: its content no longer matches its sha256 seal. Restore the \
                 original, or {redo}",
                path.display()
            );
        }
        let run =
            T::deserialize(run).with_context(|| format!("{} does not hold a run result; {redo}", path.display()))?;
        Ok(Some(run))
    }

    /// Claim the run for this process without waiting; `None` while another
    /// process holds it. The claim lasts as long as the returned value.
    pub fn try_claim(&self) -> Result<Option<Claim>> {
        let file = self.open_claim()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Claim::record(file)?)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| self.lock_failed()),
        }
    }

    /// Claim the run, waiting for its current holder to finish or die.
    pub fn claim(&self) -> Result<Claim> {
        let file = self.open_claim()?;
        file.lock().with_context(|| self.lock_failed())?;
        Claim::record(file)
    }

    /// Who holds the claim (or held it last): `pid N on host H`.
    pub fn claimant(&self) -> String {
        std::fs::read_to_string(self.file("claim"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "another process".into())
    }

    fn open_claim(&self) -> Result<std::fs::File> {
        let path = self.file("claim");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    fn lock_failed(&self) -> String {
        format!(
            "cannot lock {} (a file system without flock support? On NFS, mount with locking enabled)",
            self.file("claim").display()
        )
    }
}

/// The `meta.*` counters of a checkpoint's state dict.
fn meta_of(sd: &StateDict) -> Meta {
    sub_dict(sd, "meta")
        .into_iter()
        .filter_map(|(k, v)| match v {
            StateValue::I64(a) => a.iter().next().map(|&x| (k, x)),
            StateValue::F32(_) => None,
        })
        .collect()
}

/// The seal of a run: SHA-256 of its JSON in canonical form (keys sorted,
/// numbers as parsed), so that reformatting the file keeps it valid.
fn seal_of(run: &serde_json::Value) -> String {
    sha256_hex(run.to_string().as_bytes())
}

/// This process's exclusive claim on a run folder (see the module doc).
pub struct Claim {
    _file: std::fs::File,
}

impl Claim {
    /// Write who holds the claim into the (locked) file, for the messages of
    /// processes that find it taken.
    fn record(mut file: std::fs::File) -> Result<Claim> {
        use std::io::Write;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        file.set_len(0)?;
        writeln!(file, "pid {} on host {}", std::process::id(), host.trim())?;
        Ok(Claim { _file: file })
    }
}
