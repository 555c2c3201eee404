//! Planning a reproduction (`--dry-run`): time a few training steps on this
//! machine, then project the wall time of a grid for each way of spreading
//! it over this machine's cores, and for `M` machines of `c` cores — with
//! the Slurm commands that would run it.
//!
//! The cluster projection assumes cores as fast as these, and threads that
//! scale by Amdahl's law with the serial fraction fitted to the times of one
//! run measured here alone on one thread and on every core.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use indicatif::ProgressBar;

use super::Protocol;
use super::grid::{Grid, Parallelism, run_grid};
use crate::models::HeadKind;

/// Measured cost of one model: seconds per training step and per evaluated
/// item (an image for CIFAR-10, a clip of 16 chunks for MTAT).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCost {
    pub step: f64,
    pub eval_item: f64,
}

/// What planning needs of a protocol.
pub trait Plan: Protocol {
    /// Time training steps and the evaluation of one item of a `head` model
    /// at this protocol's sizes, on the current thread pool (with
    /// [`seconds_per_call`]).
    fn time(&self, head: HeadKind) -> Result<StepCost>;
    /// Seconds one run takes at `cost`: every epoch's training and
    /// validation, then the test.
    fn run_seconds(&self, cost: &StepCost) -> f64;
}

/// One way to run a grid on this machine, measured.
#[derive(Clone, Debug)]
pub struct Layout {
    pub par: Parallelism,
    pub cost: StepCost,
    pub hours_per_run: f64,
    /// The grid's wall time: runs go `jobs` at a time.
    pub hours_total: f64,
}

/// Measure every layout of `cores` cores — `jobs` = 1, 2, 4, … and `cores`,
/// each with `cores / jobs` threads.
pub fn layouts<P: Plan>(p: &P, head: HeadKind, runs: usize, cores: usize) -> Result<Vec<Layout>> {
    let mut counts: Vec<usize> = std::iter::successors(Some(1), |j| Some(j * 2)).take_while(|&j| j < cores).collect();
    counts.push(cores);
    counts
        .into_iter()
        .map(|jobs| measure(p, head, Parallelism { jobs, threads_per_job: (cores / jobs).max(1) }, runs))
        .collect()
}

/// Time `par.jobs` copies of a run side by side, each on its own pool of
/// `par.threads_per_job` threads, so that contention for memory bandwidth
/// is in the numbers; project `runs` runs at that layout.
pub fn measure<P: Plan>(p: &P, head: HeadKind, par: Parallelism, runs: usize) -> Result<Layout> {
    let copies: Vec<usize> = (0..par.jobs).collect();
    let timings = run_grid(
        &copies,
        par,
        |_| String::new(),
        |_, bar: &ProgressBar| {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            p.time(head)
        },
    )?;
    let n = timings.len() as f64;
    let cost = StepCost {
        step: timings.iter().map(|t| t.step).sum::<f64>() / n,
        eval_item: timings.iter().map(|t| t.eval_item).sum::<f64>() / n,
    };
    let hours_per_run = p.run_seconds(&cost) / 3600.0;
    Ok(Layout { par, cost, hours_per_run, hours_total: hours_per_run * runs.div_ceil(par.jobs) as f64 })
}

/// Seconds per call of `f`: one warm-up call, then calls until 4 s have
/// passed (at least 2, at most 20), so that slow models are timed over
/// enough calls to average out a noisy machine and fast ones quickly.
pub fn seconds_per_call(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let t0 = std::time::Instant::now();
    let mut calls = 0u32;
    while calls < 2 || (calls < 20 && t0.elapsed().as_secs_f64() < 4.0) {
        f()?;
        calls += 1;
    }
    Ok(t0.elapsed().as_secs_f64() / calls as f64)
}

/// The whole `--dry-run` of `grid` (`what` describes its protocol), as
/// text: every layout of this machine, one run alone on one thread, the
/// projection onto `machines` × `cores_per_machine` (default: one machine
/// like this one), and the Slurm commands, with `env` the variables the
/// sbatch file reads.
pub fn dry_run<P: Plan>(
    p: &P,
    what: &str,
    grid: &Grid,
    machines: Option<usize>,
    cores_per_machine: Option<usize>,
    env: &str,
) -> Result<String> {
    let (runs, cores, head) = (grid.runs().len(), Parallelism::cores(), grid.heads[0]);
    let (machines, per_machine) = (machines.unwrap_or(1), cores_per_machine.unwrap_or(cores));
    if machines == 0 || per_machine == 0 {
        bail!("--machines and --cores-per-machine must be at least 1");
    }
    let mut s = format!(
        "{}: {} heads × {} seeds = {runs} runs; {what}.\nTiming {head} (the heads differ little: the backbone \
         dominates) on this machine, {cores} cores:\n",
        P::EXPERIMENT,
        grid.heads.len(),
        grid.seeds.len()
    );
    let layouts = layouts(p, head, runs, cores)?;
    let auto = Parallelism::choose_for("auto", runs, cores)?;
    for l in &layouts {
        let _ = writeln!(
            s,
            "  --jobs {}: {} run(s) side by side × {} thread(s): {:.3} s per training step, {:.2} ms per evaluated \
             item -> {} per run, {} for the grid{}",
            l.par.jobs,
            l.par.jobs,
            l.par.threads_per_job,
            l.cost.step,
            l.cost.eval_item * 1e3,
            fmt_hours(l.hours_per_run),
            fmt_hours(l.hours_total),
            if l.par == auto { " (what --jobs auto picks)" } else { "" }
        );
    }
    // Amdahl's fit needs one run alone on one thread; the busy layout has every core taken.
    let busy = layouts.last().expect("a layout");
    let alone = match cores {
        1 => busy.clone(),
        _ => measure(p, head, Parallelism { jobs: 1, threads_per_job: 1 }, runs)?,
    };
    let f = serial_fraction(alone.hours_per_run, layouts[0].hours_per_run, cores);
    let c = cluster(alone.hours_per_run, busy.hours_per_run, f, runs, machines, per_machine);
    let _ = writeln!(
        s,
        "  one run alone on 1 thread: {} per run\n{machines} machine(s) × {per_machine} cores (cores as fast as these; \
         threads scale by Amdahl's law, serial fraction {f:.2} fitted here): {} thread(s) per run, {} runs at a time \
         -> {} per run, {} for the grid",
        fmt_hours(alone.hours_per_run),
        c.threads,
        c.concurrent,
        fmt_hours(c.hours_per_run),
        fmt_hours(c.hours_total)
    );
    let _ = writeln!(
        s,
        "Slurm, one array task per run and the report after them (docs/cluster/README.md):\n{}",
        sbatch_lines(P::EXPERIMENT, runs, &c, env)
    );
    Ok(s)
}

/// A grid spread over `machines` machines of `cores` cores each.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterPlan {
    pub machines: usize,
    pub cores: usize,
    /// Threads of each run (`--cpus-per-task`).
    pub threads: usize,
    /// Runs at the same time over all machines.
    pub concurrent: usize,
    pub hours_per_run: f64,
    pub hours_total: f64,
}

/// Amdahl's serial fraction `f` from the speed-up `t1 / tn` at `n` threads
/// (`t(n) = t1 · (f + (1 - f) / n)`), clamped to [0, 1]; 1 when `n` is 1,
/// as nothing was measured beyond one thread.
pub fn serial_fraction(t1: f64, tn: f64, n: usize) -> f64 {
    if n < 2 {
        return 1.0;
    }
    let n = n as f64;
    ((tn / t1 * n - 1.0) / (n - 1.0)).clamp(0.0, 1.0)
}

/// Project `runs` runs onto `machines` × `cores`. Runs get one thread each
/// while there are at least as many runs as cores, and then take
/// `busy_1` hours (one thread, every core of the machine busy, as measured
/// here); otherwise they get the most threads that still let every run start
/// at once, and take `alone_1 · (f + (1 - f) / threads)` hours.
pub fn cluster(alone_1: f64, busy_1: f64, f: f64, runs: usize, machines: usize, cores: usize) -> ClusterPlan {
    let slots = machines * cores;
    let fits = |t: usize| machines * (cores / t) >= runs;
    let threads = if runs >= slots { 1 } else { (1..=cores).rev().find(|&t| fits(t)).unwrap_or(1) };
    let concurrent = machines * (cores / threads);
    let hours_per_run = if threads == 1 { busy_1 } else { alone_1 * (f + (1.0 - f) / threads as f64) };
    ClusterPlan {
        machines,
        cores,
        threads,
        concurrent,
        hours_per_run,
        hours_total: hours_per_run * runs.div_ceil(concurrent) as f64,
    }
}

/// The commands that submit a grid of `runs` runs to Slurm as one array
/// task per run with the plan's threads, a time limit of 1.25 × the
/// projected run time (at least 15 min, rounded up to 15 min), and the
/// report job after it. `env` sets the variables the sbatch file reads.
pub fn sbatch_lines(experiment: &str, runs: usize, plan: &ClusterPlan, env: &str) -> String {
    let quarters = ((plan.hours_per_run * 1.25 * 4.0).ceil() as usize).max(1);
    let limit = format!("{}:{:02}:00", quarters / 4, (quarters % 4) * 15);
    let file = format!("docs/cluster/{experiment}.sbatch");
    format!(
        "export {env}\njid=$(sbatch --parsable --array=0-{} --cpus-per-task={} --time={limit} {file})\n\
         sbatch --dependency=afterok:$jid --export=ALL,STEP=report {file}",
        runs - 1,
        plan.threads
    )
}

/// `12.3 h`, or minutes below an hour.
pub fn fmt_hours(h: f64) -> String {
    if h < 1.0 { format!("{:.0} min", h * 60.0) } else { format!("{h:.1} h") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_fraction_inverts_amdahls_law() {
        let (t1, f) = (10.0, 0.2);
        let tn = t1 * (f + (1.0 - f) / 2.0);
        assert!((serial_fraction(t1, tn, 2) - f).abs() < 1e-12);
        assert_eq!(serial_fraction(t1, t1 / 3.0, 2), 0.0, "super-linear speed-ups clamp to 0");
        assert_eq!(serial_fraction(t1, t1, 1), 1.0);
    }

    #[test]
    fn a_grid_larger_than_the_cluster_runs_single_threaded_in_waves() {
        let p = cluster(1.5, 2.0, 0.1, 100, 10, 4);
        assert_eq!((p.threads, p.concurrent), (1, 40));
        assert_eq!(p.hours_total, 2.0 * 3.0, "one-thread runs on busy machines take the contended time");
    }

    #[test]
    fn a_small_grid_gives_each_run_the_threads_that_still_start_it_at_once() {
        // 20 runs on 10 × 32 cores: 16 threads each, 2 per machine.
        let p = cluster(8.0, 9.0, 0.0, 20, 10, 32);
        assert_eq!((p.threads, p.concurrent), (16, 20));
        assert_eq!(p.hours_total, 0.5);
        let amdahl = cluster(8.0, 9.0, 0.5, 20, 10, 32);
        assert_eq!(amdahl.hours_per_run, 8.0 * (0.5 + 0.5 / 16.0));
        // 3 runs on 2 × 4 cores: 2 machines hold at most 2 runs of 3-4 threads, so 2 threads.
        assert_eq!(cluster(1.0, 1.0, 0.0, 3, 2, 4).threads, 2);
    }

    #[test]
    fn sbatch_lines_ask_for_one_task_per_run_and_a_report_after_them() {
        let p = cluster(1.9, 2.0, 0.0, 20, 10, 32);
        let s = sbatch_lines("cifar", 20, &p, "OUT=runs/c128");
        assert!(s.contains("--array=0-19 --cpus-per-task=16 --time=0:15:00 docs/cluster/cifar.sbatch"), "{s}");
        assert!(s.contains("--dependency=afterok:$jid --export=ALL,STEP=report"), "{s}");
        let long = cluster(8.0, 10.0, 0.0, 20, 1, 2);
        assert!(sbatch_lines("mtat", 20, &long, "").contains("--time=12:30:00"));
    }
}
