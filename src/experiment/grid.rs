//! Grids of independent trainings (heads × seeds): which runs a process
//! takes (`--seeds`, `--shard`), how it spreads them over its cores
//! (`--jobs`), and the loop that claims, trains and records each run.
//!
//! Several narrow runs side by side often beat one wide run on a small
//! machine (less synchronisation, no idle cores in serial parts), so a
//! process runs `jobs` workers, each with its own rayon pool of `threads`
//! threads, pulling runs from a shared queue. Across processes, a grid is
//! split into shards: shard `I` of `N` takes the runs `k` (in head-major
//! order) with `k mod N == I`, the way a Slurm job array numbers its tasks.

use std::collections::VecDeque;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::out_dir::OutDir;
use super::run_dir::RunDir;
use super::{RunId, RunRecord};
use crate::models::HeadKind;

/// How to spread runs over the machine's cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallelism {
    pub jobs: usize,
    pub threads_per_job: usize,
}

impl Parallelism {
    /// The cores this process may use: `SLURM_CPUS_PER_TASK` inside a Slurm
    /// job (its allocation, not the node's size), else `RAYON_NUM_THREADS`,
    /// else every core the OS gives the process.
    pub fn cores() -> usize {
        let var = |name: &str| std::env::var(name).ok().and_then(|s| s.trim().parse().ok()).filter(|&n: &usize| n > 0);
        var("SLURM_CPUS_PER_TASK")
            .or_else(|| var("RAYON_NUM_THREADS"))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// `jobs` = "auto" or a number; threads are the [cores](Self::cores)
    /// divided among jobs. Auto runs one single-threaded job per core when
    /// there are at least as many runs as cores (measured faster here, see
    /// docs/performance.md), else one job using every core.
    pub fn choose(jobs: &str, runs: usize) -> Result<Parallelism> {
        Parallelism::choose_for(jobs, runs, Parallelism::cores())
    }

    /// [`choose`](Self::choose) for a machine of `cores` cores.
    pub fn choose_for(jobs: &str, runs: usize, cores: usize) -> Result<Parallelism> {
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

/// The seeds of `--seeds`: a count `N` (seeds `0..N`), a range `3-7`
/// (inclusive), or a comma-separated list of seeds and ranges (`0,3,5-7`).
/// Returned sorted; a seed given twice is an error.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let t = text.trim();
    let forms = "give a count (3 = seeds 0,1,2), a range (3-7) or a list (0,3,4)";
    if let Ok(n) = t.parse::<u64>() {
        if n == 0 {
            bail!("--seeds 0 selects no run: {forms}");
        }
        return Ok((0..n).collect());
    }
    let mut seeds = Vec::new();
    for item in t.split(',').map(str::trim) {
        let num = |s: &str| -> Result<u64> {
            s.trim()
                .parse()
                .map_err(|_| anyhow!("--seeds `{text}`: `{item}` is not a seed (a whole number ≥ 0); {forms}"))
        };
        if item.is_empty() {
            bail!("--seeds `{text}` has an empty item: {forms}");
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    bail!("--seeds: the range {a}-{b} is empty (it runs downward); write {b}-{a}");
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(num(item)?),
        }
    }
    seeds.sort_unstable();
    if let Some(w) = seeds.windows(2).find(|w| w[0] == w[1]) {
        bail!("--seeds `{text}` names seed {} twice: list each seed once", w[0]);
    }
    Ok(seeds)
}

/// Part `index` of a grid split into `count` parts (`--shard I/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// `I/N` (0 ≤ I < N), or `slurm` for the task of a Slurm job array that
    /// runs this process (`SLURM_ARRAY_TASK_ID`, `_MIN`, `_STEP`, `_COUNT`).
    pub fn parse(text: &str) -> Result<Shard> {
        Shard::parse_with(text, |k| std::env::var(k).ok())
    }

    /// [`parse`](Self::parse) reading the environment through `env`.
    pub fn parse_with(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        if text.trim() == "slurm" {
            return Shard::from_slurm(env);
        }
        let usage = "--shard takes I/N with whole numbers 0 ≤ I < N (I counts from 0, as Slurm array indices), \
                     or `slurm`";
        let (i, n) = text.split_once('/').ok_or_else(|| anyhow!("--shard `{text}`: {usage}"))?;
        let (Ok(index), Ok(count)) = (i.trim().parse::<usize>(), n.trim().parse::<usize>()) else {
            bail!("--shard `{text}`: {usage}");
        };
        if count == 0 {
            bail!("--shard `{text}`: a grid cannot be split into 0 shards; {usage}");
        }
        if index >= count {
            bail!(
                "--shard `{text}`: shard {index} does not exist among {count} (they are 0 to {}); {usage}",
                count - 1
            );
        }
        Ok(Shard { index, count })
    }

    fn from_slurm(env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let Some(id) = env("SLURM_ARRAY_TASK_ID") else {
            bail!(
                "--shard slurm: SLURM_ARRAY_TASK_ID is not set, so this process is not a task of a Slurm job array. \
                 Submit it with `sbatch --array=0-<N-1> ...` (see docs/cluster/), or give the shard as --shard I/N"
            );
        };
        let num = |name: &str, default: Option<usize>| -> Result<usize> {
            match env(name) {
                Some(v) => v.trim().parse().map_err(|_| anyhow!("--shard slurm: {name}=`{v}` is not a number")),
                None => {
                    default.ok_or_else(|| anyhow!("--shard slurm: {name} is not set although SLURM_ARRAY_TASK_ID is"))
                }
            }
        };
        let id: usize =
            id.trim().parse().map_err(|_| anyhow!("--shard slurm: SLURM_ARRAY_TASK_ID=`{id}` is not a number"))?;
        let (min, step, count) = (
            num("SLURM_ARRAY_TASK_MIN", Some(0))?,
            num("SLURM_ARRAY_TASK_STEP", Some(1))?.max(1),
            num("SLURM_ARRAY_TASK_COUNT", None)?,
        );
        let offset = id.checked_sub(min).filter(|o| o % step == 0).map(|o| o / step);
        match offset {
            Some(index) if index < count => Ok(Shard { index, count }),
            _ => bail!(
                "--shard slurm: task {id} is not one of the {count} tasks {min}, {min}+{step}, …: use a regular \
                 array (`--array=0-<N-1>` or `lo-hi:step`), not a list of indices"
            ),
        }
    }

    /// Whether this shard takes run `k` of the grid.
    pub fn takes(&self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The (head, seed) runs of a reproduction.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub heads: Vec<HeadKind>,
    pub seeds: Vec<u64>,
}

impl Grid {
    /// Every run, head-major: run `k` is head `k / seeds`, seed `k % seeds`.
    pub fn runs(&self) -> Vec<RunId> {
        self.heads.iter().flat_map(|h| self.seeds.iter().map(move |&seed| RunId { head: h.id(), seed })).collect()
    }

    /// The runs a shard takes (all of them without one).
    pub fn runs_of(&self, shard: Option<Shard>) -> Vec<RunId> {
        let all = self.runs().into_iter().enumerate();
        all.filter(|(k, _)| shard.is_none_or(|s| s.takes(*k))).map(|(_, r)| r).collect()
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
                        let _driving = crate::runtime::drive_from_current_thread();
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

/// What became of one run a process was given.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Trained (or resumed and finished) by this process.
    Trained,
    /// Already finished before this process came to it.
    Finished,
    /// Claimed by another process, which is training it (named here).
    Skipped(String),
}

/// Train `runs` under `out`, `par.jobs` at a time. Each run is claimed
/// first (see [`RunDir::try_claim`]): a run another process holds is
/// skipped, saying so — or, with `wait_for_claimed`, waited for and then
/// finished if its holder died before it did. A finished run is left as it
/// is; an interrupted one resumes. `train` trains (or resumes) one run in
/// its folder and returns its result, which is then written, sealed.
pub fn train_runs<R: RunRecord>(
    out: &OutDir,
    runs: &[RunId],
    par: Parallelism,
    wait_for_claimed: bool,
    train: impl Fn(&RunId, &RunDir, &ProgressBar) -> Result<R> + Sync,
) -> Result<Vec<Outcome>> {
    run_grid(
        runs,
        par,
        |id| id.to_string(),
        |id, bar| {
            let dir = out.run_dir(id)?;
            let claim = match dir.try_claim()? {
                Some(claim) => claim,
                None if wait_for_claimed => {
                    bar.set_message(format!("waiting: claimed by {}", dir.claimant()));
                    dir.claim()?
                }
                None => {
                    let holder = dir.claimant();
                    bar.finish_with_message(format!("skipped: claimed by {holder}"));
                    return Ok(Outcome::Skipped(holder));
                }
            };
            if dir.read_result::<R>()?.is_some() {
                bar.finish_with_message("finished earlier");
                return Ok(Outcome::Finished);
            }
            let result = train(id, &dir, bar)?;
            dir.write_result(&result)?;
            drop(claim);
            Ok(Outcome::Trained)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.expect_err("an error"))
    }

    #[test]
    fn seeds_are_a_count_a_range_or_a_list() {
        assert_eq!(parse_seeds("3").unwrap(), [0, 1, 2]);
        assert_eq!(parse_seeds("3-7").unwrap(), [3, 4, 5, 6, 7]);
        assert_eq!(parse_seeds("4,0,3").unwrap(), [0, 3, 4]);
        assert_eq!(parse_seeds("0,5-6").unwrap(), [0, 5, 6]);
        assert_eq!(parse_seeds("2-2").unwrap(), [2]);
    }

    #[test]
    fn bad_seed_lists_name_the_problem() {
        assert!(err(parse_seeds("5-2")).contains("the range 5-2 is empty (it runs downward); write 2-5"));
        assert!(err(parse_seeds("0,3,3")).contains("names seed 3 twice"));
        assert!(err(parse_seeds("0-3,2-5")).contains("names seed 2 twice"));
        assert!(err(parse_seeds("0")).contains("selects no run"));
        assert!(err(parse_seeds("")).contains("empty item"));
        assert!(err(parse_seeds("1,,2")).contains("empty item"));
        assert!(err(parse_seeds("a")).contains("`a` is not a seed"));
        assert!(err(parse_seeds("-1")).contains("is not a seed"));
    }

    #[test]
    fn shards_take_every_nth_run_of_the_head_major_grid() {
        let grid = Grid { heads: vec![HeadKind::Relu, HeadKind::SparseMorph { bn: true }], seeds: vec![0, 1, 2] };
        let names = |s: Option<Shard>| grid.runs_of(s).iter().map(|r| r.folder()).collect::<Vec<_>>();
        assert_eq!(names(Some(Shard { index: 1, count: 4 })), ["relu-seed1", "sparse-morph-seed2"]);
        assert_eq!(names(Some(Shard { index: 0, count: 1 })).len(), 6);
        let mut all: Vec<String> = (0..4).flat_map(|i| names(Some(Shard { index: i, count: 4 }))).collect();
        all.sort();
        let mut whole = names(None);
        whole.sort();
        assert_eq!(all, whole, "the shards partition the grid");
    }

    #[test]
    fn shard_forms_and_their_errors() {
        let none = |_: &str| None;
        assert_eq!(Shard::parse_with("2/5", none).unwrap(), Shard { index: 2, count: 5 });
        assert!(err(Shard::parse_with("3/2", none)).contains("shard 3 does not exist among 2 (they are 0 to 1)"));
        for bad in ["-1/4", "a/b", "3", "1/2/3"] {
            assert!(err(Shard::parse_with(bad, none)).contains("--shard takes I/N"), "{bad}");
        }
        assert!(err(Shard::parse_with("0/0", none)).contains("into 0 shards"));
        assert!(err(Shard::parse_with("slurm", none)).contains("not a task of a Slurm job array"));
    }

    #[test]
    fn the_slurm_shard_is_the_array_task_counted_from_the_arrays_first_index() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let plain = env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert_eq!(Shard::parse_with("slurm", plain).unwrap(), Shard { index: 3, count: 4 });
        let offset =
            env(&[("SLURM_ARRAY_TASK_ID", "12"), ("SLURM_ARRAY_TASK_MIN", "10"), ("SLURM_ARRAY_TASK_COUNT", "4")]);
        assert_eq!(Shard::parse_with("slurm", offset).unwrap(), Shard { index: 2, count: 4 });
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "5"),
        ]);
        assert_eq!(Shard::parse_with("slurm", stepped).unwrap(), Shard { index: 3, count: 5 });
        let listed =
            env(&[("SLURM_ARRAY_TASK_ID", "9"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert!(err(Shard::parse_with("slurm", listed)).contains("use a regular array"));
        let no_count = env(&[("SLURM_ARRAY_TASK_ID", "1")]);
        assert!(err(Shard::parse_with("slurm", no_count)).contains("SLURM_ARRAY_TASK_COUNT is not set"));
    }

    #[test]
    fn threads_follow_the_cores_given_to_the_process() {
        assert_eq!(Parallelism::choose_for("auto", 8, 4).unwrap(), Parallelism { jobs: 4, threads_per_job: 1 });
        assert_eq!(Parallelism::choose_for("auto", 2, 8).unwrap(), Parallelism { jobs: 1, threads_per_job: 8 });
        assert_eq!(Parallelism::choose_for("2", 2, 8).unwrap(), Parallelism { jobs: 2, threads_per_job: 4 });
        assert!(err(Parallelism::choose_for("0", 2, 8)).contains("--jobs must be"));
    }
}
