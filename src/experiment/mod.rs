//! Training protocols and reports: resumable runs, the CIFAR-10 and MTAT
//! reproductions, grids of runs spread over processes and machines, tables
//! and plots.
//!
//! A reproduction is a *protocol* (every setting that decides a run's
//! numbers, [`Protocol`]) and a grid of (head, seed) runs. Each run lives in
//! its own folder `OUT/runs/<head>-seed<s>/` ([`run_dir`]), claimed by one
//! process at a time; the protocol is written once into `OUT/protocol.json`
//! ([`out_dir`]). Any number of processes — shards of one grid on one
//! machine or many ([`grid`]) — fill the same `OUT`, and [`report`] turns
//! every finished run under one or more such folders into the tables.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod cifar;
pub mod cifar_report;
pub mod forward;
pub mod grid;
pub mod mtat;
pub mod mtat_report;
pub mod out_dir;
pub mod paper;
pub mod plan;
pub mod plots;
pub mod report;
pub mod run_dir;
pub mod stats;
pub mod trainer;

/// What the grid, the shared output folder and `report` need of an
/// experiment's protocol.
pub trait Protocol: Serialize + DeserializeOwned + Clone + PartialEq + Sync {
    /// `cifar` or `mtat`: the `reproduce` subcommand and the `experiment`
    /// field of `protocol.json`.
    const EXPERIMENT: &'static str;
    /// What one finished (head, seed) run records in its `result.json`.
    type Run: RunRecord;

    /// Why `run` cannot be a run of this protocol (wrong number of epochs or
    /// pruning points), or `None` when it fits.
    fn misfit(&self, run: &Self::Run) -> Option<String>;

    /// Tables and plots of `runs` (sorted by head, then seed) into `dir`;
    /// `missing` lists the grid's unfinished runs. Returns the tables as
    /// Markdown, for the terminal.
    fn write_report(&self, runs: &[Self::Run], missing: &[RunId], dir: &Path) -> Result<String>;
}

/// Why a run with `epochs` logged epochs and `points` pruning points does
/// not fit a protocol of `want_epochs` epochs and `ratios` pruning ratios
/// (the Zhang head is not pruned), or `None`.
pub fn grid_misfit(run_head: &str, epochs: usize, points: usize, want_epochs: usize, ratios: usize) -> Option<String> {
    let want_points = if run_head == crate::models::HeadKind::Zhang.id() { 0 } else { ratios * ratios };
    if epochs != want_epochs {
        Some(format!("it logs {epochs} epochs where the protocol has {want_epochs}"))
    } else if points != want_points {
        Some(format!("it has {points} pruning points where the protocol's ratios give {want_points}"))
    } else {
        None
    }
}

/// The parts of a finished run that the grid machinery reads.
pub trait RunRecord: Serialize + DeserializeOwned + Send + Clone {
    fn id(&self) -> RunId;
}

/// One cell of a grid: a head (its `--heads` id) and a seed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct RunId {
    pub head: String,
    pub seed: u64,
}

impl RunId {
    /// The run's folder name, `<head>-seed<seed>`.
    pub fn folder(&self) -> String {
        format!("{}-seed{}", self.head, self.seed)
    }

    /// The inverse of [`RunId::folder`]; `None` for any other name.
    pub fn from_folder(name: &str) -> Option<RunId> {
        let (head, seed) = name.rsplit_once("-seed")?;
        let seed = seed.parse().ok()?;
        let kind: crate::models::HeadKind = head.parse().ok()?;
        (kind.id() == head).then(|| RunId { head: head.to_string(), seed })
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} seed {}", self.head, self.seed)
    }
}

/// What one `reproduce` command did.
pub struct Reproduced {
    /// The runs this process was given, and what became of each.
    pub outcomes: Vec<(RunId, grid::Outcome)>,
    /// The report over everything finished in the output folder; `None` for
    /// a shard, which leaves the report to `morphgrad report`, and while no
    /// run is finished (all claimed by other processes).
    pub report: Option<report::Summary>,
}

/// Train the runs of `grid` that `shard` takes (every run without one) into
/// `out`, `par.jobs` at a time, resuming and skipping as
/// [`grid::train_runs`] does. Every run folder of the grid is created first,
/// so that a report made before all shards are done lists the missing ones.
/// Without a shard, end with the report over every finished run in `out`.
pub fn reproduce<P: Protocol>(
    protocol: &P,
    grid: &grid::Grid,
    shard: Option<grid::Shard>,
    par: grid::Parallelism,
    wait_for_claimed: bool,
    out: &Path,
    train: impl Fn(crate::models::HeadKind, u64, &run_dir::RunDir, &indicatif::ProgressBar) -> Result<P::Run> + Sync,
) -> Result<Reproduced> {
    let out_dir = out_dir::OutDir::open(out, protocol)?;
    for id in grid.runs() {
        out_dir.run_dir(&id)?;
    }
    let mine = grid.runs_of(shard);
    let outcomes = grid::train_runs(&out_dir, &mine, par, wait_for_claimed, |id, dir, bar| {
        train(id.head.parse()?, id.seed, dir, bar)
    })?;
    let finished = out_dir.run_dirs()?.iter().any(|(_, dir)| dir.path.join("result.json").exists());
    let report = match shard {
        None if finished => Some(report::report(&[out.to_path_buf()], out, false)?),
        _ => None,
    };
    Ok(Reproduced { outcomes: mine.into_iter().zip(outcomes).collect(), report })
}
