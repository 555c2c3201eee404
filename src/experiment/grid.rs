//! Running a grid of independent trainings (heads × seeds) side by side:
//! `jobs` workers, each with its own rayon pool of `threads` threads, pull
//! runs from a shared queue. Several narrow runs often beat one wide run on
//! a small machine (less synchronisation, no idle cores in serial parts).

use std::collections::VecDeque;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use super::run_dir::{RunDir, earlier_wall_seconds};
use crate::models::HeadKind;

/// How to spread runs over the machine's cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    pub jobs: usize,
    pub threads_per_job: usize,
}

impl Parallelism {
    /// `jobs` = "auto" or a number; threads are the cores divided among jobs.
    /// Auto runs one single-threaded job per core when there are at least as
    /// many runs as cores (measured faster here, see docs/performance.md),
    /// else one job using every core.
    pub fn choose(jobs: &str, runs: usize) -> Result<Parallelism> {
        let cores = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let jobs = match jobs {
            "auto" => {
                if runs >= cores {
                    cores
                } else {
                    1
                }
            }
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| anyhow!("--jobs must be `auto` or a positive number, got `{n}`"))?,
        };
        let jobs = jobs.min(runs.max(1));
        Ok(Parallelism { jobs, threads_per_job: (cores / jobs).max(1) })
    }
}

/// Run `f` on every task, `par.jobs` at a time; results in task order. Each
/// task gets a progress bar labelled by `label(task)`. The first error stops
/// new tasks from starting and is returned.
pub fn run_grid<T: Sync, R: Send>(
    tasks: &[T],
    par: Parallelism,
    label: impl Fn(&T) -> String + Sync,
    f: impl Fn(&T, &ProgressBar) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    crate::kernels::tune_allocator();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..tasks.len()).collect());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..tasks.len()).map(|_| None).collect());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..par.jobs {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(par.threads_per_job).build() {
                    Ok(p) => p,
                    Err(e) => {
                        *failure.lock().expect("lock") = Some(anyhow!("cannot start a thread pool: {e}"));
                        return;
                    }
                };
                loop {
                    if failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let Some(i) = queue.lock().expect("lock").pop_front() else { return };
                    let bar = multi.add(ProgressBar::new(0).with_style(style.clone()).with_prefix(label(&tasks[i])));
                    let run = || {
                        let _driving = crate::kernels::drive_from_current_thread();
                        f(&tasks[i], &bar)
                    };
                    match pool.install(run).with_context(|| format!("run {}", label(&tasks[i]))) {
                        Ok(r) => results.lock().expect("lock")[i] = Some(r),
                        Err(e) => {
                            bar.abandon_with_message("failed");
                            failure.lock().expect("lock").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(results.into_inner().expect("lock").into_iter().map(|r| r.expect("every task ran")).collect())
}

/// Every head × seed of a reproduction through [`run_grid`], each run in its
/// own resumable folder `out/runs/<head>-seed<seed>`. Returns the runs in
/// (head, seed) order and the wall time spent on `out` so far: this
/// command's plus what an earlier `results.json` of the same `protocol`
/// records (see [`earlier_wall_seconds`]).
pub fn run_heads_and_seeds<R: Send>(
    heads: &[String],
    seeds: &[u64],
    par: Parallelism,
    out: &std::path::Path,
    protocol: &impl Serialize,
    run: impl Fn(HeadKind, u64, &RunDir, &ProgressBar) -> Result<R> + Sync,
) -> Result<(Vec<R>, f64)> {
    let t0 = std::time::Instant::now();
    let heads: Vec<HeadKind> = heads.iter().map(|h| h.parse()).collect::<Result<_>>()?;
    let tasks: Vec<(HeadKind, u64)> = heads.iter().flat_map(|&h| seeds.iter().map(move |&s| (h, s))).collect();
    let runs = run_grid(
        &tasks,
        par,
        |(h, s)| format!("{h} seed {s}"),
        |&(h, s), bar| run(h, s, &RunDir::new(&out.join("runs").join(format!("{h}-seed{s}")))?, bar),
    )?;
    Ok((runs, earlier_wall_seconds(out, protocol) + t0.elapsed().as_secs_f64()))
}
