//! `morphgrad` command line: parses arguments, calls the library, prints.
//! Run with no arguments for the default job: the CIFAR-10 reproduction on
//! built-in synthetic data at a small width (about a minute on 2 cores).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use morphgrad::experiment::cifar::{self, CifarProtocol, CifarSource};
use morphgrad::experiment::grid::{Grid, Outcome, Parallelism, Shard, parse_seeds};
use morphgrad::experiment::mtat::{self, MtatProtocol, MtatSource};
use morphgrad::experiment::plan::{self, Plan};
use morphgrad::experiment::{self as exp, Reproduced, report};
use morphgrad::models::HeadKind;

/// Tensors and buffers of 1 KiB or more start on a cache line (see the type).
#[global_allocator]
static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;

#[derive(Parser)]
#[command(name = "morphgrad", version, about = "Train, prune and study hybrid linear-morphological networks on CPU")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Reproduce an experiment of "Sparse Hybrid Linear-Morphological Networks".
    #[command(subcommand)]
    Reproduce(Reproduce),
    /// Tables and plots of every finished run under one or more output folders (shards of one
    /// grid, folders copied from several machines): results.json, results.csv, table.md,
    /// table.tex and the figures, exactly as `reproduce` writes them.
    Report(ReportArgs),
    /// Run the CIFAR net on given weights and inputs; write logits, loss and gradients.
    Forward(ForwardArgs),
    /// MagnaTagATune data tools.
    #[command(subcommand)]
    Mtat(MtatTools),
}

#[derive(Subcommand)]
enum MtatTools {
    /// Decode every mp3 under --mp3 to 16 kHz mono float32 .npy under --out (same relative
    /// paths; use <mtat root>/npy as --out). Finished files are skipped; undecodable ones reported.
    Preprocess {
        #[arg(long)]
        mp3: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum Reproduce {
    /// CIFAR-10: train every head × seed, test, prune over the r1 × r2 grid, report.
    Cifar(CifarArgs),
    /// MagnaTagATune: Short-chunk CNN per head × seed, Adam → SGD schedule, tagging metrics,
    /// pruning grid, convergence figure.
    Mtat(MtatArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// Output folders of one protocol (each holds protocol.json and runs/).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write the report [default: the first folder].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Fail if any run of the grids is not finished (by default they are listed and left out).
    #[arg(long)]
    require_complete: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// cifar: --channels 128 --hidden 512 --epochs 10 --seeds 5, the four paper heads, --ratios
    /// 0.7,0.8,0.9,0.95, batch 64, lr 1e-3. mtat: --channels 128 --epochs 80,20 --seeds 5, heads
    /// relu,maxout,dense-morph-nobn,sparse-morph, --ratios 0.8,0.9,0.95,0.98, batch 16, Adam lr 1e-4.
    Paper,
}

/// How a grid of runs is chosen and spread over processes; shared by both experiments.
#[derive(Args, Clone)]
struct GridArgs {
    /// Set every protocol and grid flag to the paper's value (listed below and in each flag's
    /// help); flags given explicitly override it. [default: none, each flag's own default]
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Seeds: a count N (seeds 0..N), a range 3-7, or a list 0,3,4 [default: 2; paper: 5].
    #[arg(long, allow_hyphen_values = true)]
    seeds: Option<String>,
    /// Comma-separated heads: relu, maxout, zhang, dense-morph, sparse-morph (+ -nobn variants)
    /// [default and paper: relu,maxout,dense-morph,sparse-morph for cifar;
    /// relu,maxout,dense-morph-nobn,sparse-morph for mtat].
    #[arg(long)]
    heads: Option<String>,
    /// Drop the BatchNorm of every morph head (dense-morph, sparse-morph).
    #[arg(long)]
    no_bn: bool,
    /// Output folder, shared by every shard of a grid [default: out/cifar or out/mtat].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs trained side by side in this process: `auto` or a number. Threads per run are this
    /// process's cores (SLURM_CPUS_PER_TASK in a Slurm job) divided among them.
    #[arg(long, default_value = "auto")]
    jobs: String,
    /// Train only part I of N of the (head, seed) grid, runs k with k mod N = I (I from 0), and
    /// skip the report (`morphgrad report OUT` makes it); `slurm` takes I and N from the job array.
    /// [default: the whole grid, then the report]
    #[arg(long, allow_hyphen_values = true)]
    shard: Option<String>,
    /// Wait for runs another process is training (then finish them if it died) instead of
    /// skipping them.
    #[arg(long)]
    wait_for_claimed: bool,
    /// Time a few training steps here and print the projected wall time of this grid for each
    /// --jobs layout of this machine and for --machines × --cores-per-machine, with the Slurm
    /// commands that would run it; train nothing.
    #[arg(long)]
    dry_run: bool,
    /// --dry-run: machines of the cluster to project for [default: 1, this machine's size].
    #[arg(long, requires = "dry_run")]
    machines: Option<usize>,
    /// --dry-run: cores of each machine [default: this machine's].
    #[arg(long, requires = "dry_run")]
    cores_per_machine: Option<usize>,
}

impl GridArgs {
    fn paper(&self) -> bool {
        matches!(self.preset, Some(Preset::Paper))
    }

    fn grid(&self, default_heads: &str) -> Result<Grid> {
        let mut heads = cifar::parse_heads(self.heads.as_deref().unwrap_or(default_heads))?;
        if self.no_bn {
            heads = heads.into_iter().map(|h| h.without_bn()).collect::<Result<_>>()?;
        }
        let seeds = parse_seeds(self.seeds.as_deref().unwrap_or(if self.paper() { "5" } else { "2" }))?;
        Ok(Grid { heads, seeds })
    }

    fn shard(&self) -> Result<Option<Shard>> {
        self.shard.as_deref().map(Shard::parse).transpose()
    }
}

#[derive(Args, Clone)]
struct CifarArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// CIFAR-10 as the binary folder, an image folder (train/, test/) or a .tar.gz of one.
    /// Default: built-in synthetic CIFAR-like images.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Channel width C of the backbone [default: 16; paper: 128].
    #[arg(long)]
    channels: Option<usize>,
    /// Hidden width h of the heads [default and paper: 512].
    #[arg(long)]
    hidden: Option<usize>,
    /// Epochs [default: 4; paper: 10].
    #[arg(long)]
    epochs: Option<usize>,
    /// Pruning ratios for r1 and r2 (fractions of weights removed) [default and paper: 0.7,0.8,0.9,0.95].
    #[arg(long)]
    ratios: Option<String>,
    /// Synthetic data: training images (split 80/20 into train and validation).
    #[arg(long, default_value_t = 6000)]
    synthetic_train: usize,
    /// Synthetic data: test images.
    #[arg(long, default_value_t = 2000)]
    synthetic_test: usize,
    /// Real data: train on a seeded random subset of this many training images.
    #[arg(long)]
    subset_train: Option<usize>,
    /// Real data: test on a seeded random subset of this many test images.
    #[arg(long)]
    subset_test: Option<usize>,
    /// Batch size [default and paper: 64].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate [default and paper: 1e-3].
    #[arg(long)]
    lr: Option<f32>,
}

#[derive(Args, Clone)]
struct MtatArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// MTAT in the reference layout (split files, binary.npy, npy/<dir>/<clip>.npy).
    /// Default: synthetic MTAT-like clips generated under <out>/synthetic-data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Channel width C (the head is 4C → 4C → tags) [default: 8; paper: 128].
    #[arg(long)]
    channels: Option<usize>,
    /// Epochs of each phase: Adam, then SGD (Nesterov) at 1e-3, 1e-4, 1e-5 [default: 10,2; paper: 80,20].
    #[arg(long)]
    epochs: Option<String>,
    /// Pruning ratios for r1 and r2 [default and paper: 0.8,0.9,0.95,0.98].
    #[arg(long)]
    ratios: Option<String>,
    /// Batch size [default and paper: 16].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate of the first phase [default and paper: 1e-4].
    #[arg(long)]
    adam_lr: Option<f32>,
    /// Synthetic data: clips in train, valid, test.
    #[arg(long, default_value = "640,128,128")]
    synthetic_clips: String,
    /// Synthetic data: seconds per clip.
    #[arg(long, default_value_t = 5.0)]
    synthetic_seconds: f32,
}

impl Default for CifarArgs {
    fn default() -> Self {
        match Cli::parse_from(["morphgrad", "reproduce", "cifar"]).command {
            Some(Command::Reproduce(Reproduce::Cifar(a))) => a,
            _ => unreachable!("the default command parses"),
        }
    }
}

/// The CIFAR-10 protocol of these arguments; the data fields are filled in by the loader.
fn cifar_protocol(a: &CifarArgs) -> Result<CifarProtocol> {
    let (paper, d) = (CifarProtocol::paper(), a.grid.paper());
    let p = CifarProtocol {
        channels: a.channels.unwrap_or(if d { paper.channels } else { 16 }),
        hidden: a.hidden.unwrap_or(paper.hidden),
        epochs: a.epochs.unwrap_or(if d { paper.epochs } else { 4 }),
        ratios: a.ratios.as_deref().map(cifar::parse_ratios).transpose()?.unwrap_or(paper.ratios.clone()),
        batch_size: a.batch_size.unwrap_or(paper.batch_size),
        lr: a.lr.unwrap_or(paper.lr),
        ..paper
    };
    anyhow::ensure!(
        p.channels > 0 && p.hidden > 0 && p.epochs > 0,
        "--channels, --hidden and --epochs must be positive"
    );
    anyhow::ensure!(p.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two images per batch)");
    Ok(CifarProtocol { sparse_k: 2 * p.hidden, ..p })
}

fn reproduce_cifar(a: CifarArgs) -> Result<()> {
    let mut protocol = cifar_protocol(&a)?;
    let grid = a.grid.grid("relu,maxout,dense-morph,sparse-morph")?;
    let shard = a.grid.shard()?;
    let out = a.grid.out.clone().unwrap_or_else(|| "out/cifar".into());
    let source = match &a.data {
        None => CifarSource::Synthetic { n_train: a.synthetic_train, n_test: a.synthetic_test, seed: 2025 },
        Some(p) => CifarSource::Path { path: p.clone(), subset_train: a.subset_train, subset_test: a.subset_test },
    };
    if a.grid.dry_run {
        let (train, test) = match &a.data {
            None => (a.synthetic_train, a.synthetic_test),
            Some(_) => (a.subset_train.unwrap_or(50_000), a.subset_test.unwrap_or(10_000)),
        };
        let (tr, va) = morphgrad::data::cifar::split_train_val(train, protocol.split_seed);
        (protocol.n_train, protocol.n_val, protocol.n_test) = (tr.len(), va.len(), test);
        let what = format!(
            "C = {}, h = {}, {} epochs, {} train / {} val / {} test images",
            protocol.channels, protocol.hidden, protocol.epochs, protocol.n_train, protocol.n_val, protocol.n_test
        );
        return dry_run(&protocol, &what, &grid, &a.grid, &out, a.data.as_ref());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!("loading data ...");
    let typed = a.data.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let (id, data) = source.load(protocol.split_seed, &out.join("cache"), &typed)?;
    (protocol.data, protocol.n_train, protocol.n_val, protocol.n_test) =
        (id, data.train.len(), data.val.len(), data.test.len());
    let par = layout(&a.grid, &grid, shard)?;
    eprintln!(
        "{}: {} train / {} val / {} test images",
        protocol.data.format, protocol.n_train, protocol.n_val, protocol.n_test
    );
    let t0 = Instant::now();
    let done = exp::reproduce(&protocol, &grid, shard, par, a.grid.wait_for_claimed, &out, |h, s, dir, bar| {
        cifar::run(&protocol, &data, h, s, dir, bar)
    })?;
    finish(done, t0, &out)
}

/// The MTAT protocol of these arguments; the data fields are filled in by the loader.
fn mtat_protocol(a: &MtatArgs) -> Result<MtatProtocol> {
    let (paper, d) = (MtatProtocol::paper(), a.grid.paper());
    let p = MtatProtocol {
        channels: a.channels.unwrap_or(if d { paper.channels } else { 8 }),
        epochs: match &a.epochs {
            Some(e) => mtat::parse_epochs(e)?,
            None if d => paper.epochs.clone(),
            None => vec![10, 2],
        },
        ratios: a.ratios.as_deref().map(cifar::parse_ratios).transpose()?.unwrap_or(paper.ratios.clone()),
        batch_size: a.batch_size.unwrap_or(paper.batch_size),
        adam_lr: a.adam_lr.unwrap_or(paper.adam_lr),
        ..paper
    };
    anyhow::ensure!(p.channels > 0, "--channels must be positive");
    anyhow::ensure!(p.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two clips per batch)");
    Ok(MtatProtocol { sparse_k: 2 * 4 * p.channels, ..p })
}

fn reproduce_mtat(a: MtatArgs) -> Result<()> {
    let mut protocol = mtat_protocol(&a)?;
    let grid = a.grid.grid("relu,maxout,dense-morph-nobn,sparse-morph")?;
    let shard = a.grid.shard()?;
    let out = a.grid.out.clone().unwrap_or_else(|| "out/mtat".into());
    if a.grid.dry_run {
        let what = format!(
            "C = {}, batch {}, {} epochs, {} train / {} valid / {} test clips (the full MTAT split)",
            protocol.channels,
            protocol.batch_size,
            protocol.total_epochs(),
            protocol.n_train,
            protocol.n_valid,
            protocol.n_test
        );
        return dry_run(&protocol, &what, &grid, &a.grid, &out, a.data.as_ref());
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let source = match &a.data {
        Some(p) => MtatSource::Path(p.clone()),
        None => MtatSource::synthetic(&a.synthetic_clips, a.synthetic_seconds, &out.join("synthetic-data"))?,
    };
    let typed = a.data.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let (id, data) = source.load(&typed)?;
    protocol.data = id;
    (protocol.n_train, protocol.n_valid, protocol.n_test, protocol.n_tags) =
        (data.train.len(), data.valid.len(), data.test.len(), data.n_tags);
    let par = layout(&a.grid, &grid, shard)?;
    eprintln!(
        "{}: {} train / {} valid / {} test clips, {} tags",
        protocol.data.format, protocol.n_train, protocol.n_valid, protocol.n_test, protocol.n_tags
    );
    let t0 = Instant::now();
    let done = exp::reproduce(&protocol, &grid, shard, par, a.grid.wait_for_claimed, &out, |h, s, dir, bar| {
        mtat::run(&protocol, &data, h, s, dir, bar)
    })?;
    finish(done, t0, &out)
}

/// Choose and announce how this process runs its share of the grid.
fn layout(g: &GridArgs, grid: &Grid, shard: Option<Shard>) -> Result<Parallelism> {
    let runs = grid.runs_of(shard).len();
    let par = Parallelism::choose(&g.jobs, runs)?;
    let part = shard.map_or(String::new(), |s| format!(" (shard {s} of a grid of {})", grid.runs().len()));
    eprintln!("{runs} runs{part}: {} side by side, {} thread(s) each", par.jobs, par.threads_per_job);
    Ok(par)
}

/// Print what the command did: skipped runs, the tables, the wall time.
fn finish(done: Reproduced, t0: Instant, out: &std::path::Path) -> Result<()> {
    for (id, outcome) in &done.outcomes {
        if let Outcome::Skipped(holder) = outcome {
            println!("{id}: skipped, claimed by {holder} (--wait-for-claimed waits for it)");
        }
    }
    match done.report {
        Some(r) => print_summary(&r, out),
        None => {
            println!("done; no report written: run `morphgrad report {}` once every shard has finished", out.display())
        }
    }
    println!("wall time of this command: {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn print_summary(r: &report::Summary, out: &std::path::Path) {
    println!("\n{} runs finished; mean ± std over each head's seeds:\n\n{}", r.finished, r.tables);
    if !r.missing.is_empty() {
        println!("not finished, left out of the tables:");
        for (id, why) in &r.missing {
            println!("  {id}: {why}");
        }
    }
    println!("results, tables and figures in {}", out.display());
}

/// `--dry-run`: measure this machine's layouts, project the grid here and on a cluster.
fn dry_run<P: Plan>(
    p: &P,
    what: &str,
    grid: &Grid,
    g: &GridArgs,
    out: &std::path::Path,
    data: Option<&PathBuf>,
) -> Result<()> {
    let mut env = format!("OUT={}", out.display());
    if let Some(d) = data {
        env = format!("DATA={} {env}", d.display());
    }
    env.push_str(&format!(" ARGS='{}'", passthrough_args().join(" ")));
    print!("{}", plan::dry_run(p, what, grid, g.machines, g.cores_per_machine, &env)?);
    Ok(())
}

/// The protocol and grid flags of this command line, for the sbatch file's `ARGS`: everything
/// after `reproduce <experiment>` but the flags that the sbatch file or the dry run set.
fn passthrough_args() -> Vec<String> {
    const DROP: [&str; 8] = [
        "--dry-run",
        "--machines",
        "--cores-per-machine",
        "--data",
        "--out",
        "--jobs",
        "--shard",
        "--wait-for-claimed",
    ];
    const VALUED: [&str; 6] = ["--machines", "--cores-per-machine", "--data", "--out", "--jobs", "--shard"];
    let args: Vec<String> = std::env::args().skip(3).collect();
    let mut kept = Vec::new();
    let mut skip_value = false;
    for a in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let name = a.split('=').next().unwrap_or("");
        if DROP.contains(&name) {
            skip_value = VALUED.contains(&name) && !a.contains('=');
            continue;
        }
        kept.push(a);
    }
    kept
}

fn report(a: ReportArgs) -> Result<()> {
    let out = a.out.clone().unwrap_or_else(|| a.dirs[0].clone());
    let summary = report::report(&a.dirs, &out, a.require_complete)?;
    print_summary(&summary, &out);
    Ok(())
}

#[derive(Args)]
struct ForwardArgs {
    /// Head of the net: relu, maxout, zhang, dense-morph, sparse-morph (-nobn variants too).
    #[arg(long)]
    head: String,
    /// Channel width C the weights were trained with.
    #[arg(long)]
    channels: usize,
    /// Weights as .npz keyed by PyTorch state_dict names (or the authors' names).
    #[arg(long)]
    weights: PathBuf,
    /// Images: float32 [N,3,32,32] normalised, or uint8 [N,32,32,3].
    #[arg(long)]
    input: PathBuf,
    /// int64 [N] class ids: also write the loss and every parameter's gradient.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Batch statistics (and running-stat updates) instead of the running statistics.
    #[arg(long)]
    train_mode: bool,
    /// Dropout probability in train mode (0 keeps the run deterministic).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    #[arg(long)]
    out: PathBuf,
}

fn forward(a: ForwardArgs) -> Result<()> {
    let head: HeadKind = a.head.parse()?;
    morphgrad::experiment::forward::run(&morphgrad::experiment::forward::ForwardSpec {
        head,
        channels: a.channels,
        weights: a.weights,
        input: a.input,
        labels: a.labels,
        train_mode: a.train_mode,
        dropout: a.dropout,
        out: a.out,
    })
}

fn main() -> Result<()> {
    morphgrad::runtime::init();
    let cli = Cli::parse();
    match cli.command {
        None => reproduce_cifar(CifarArgs::default()),
        Some(Command::Reproduce(Reproduce::Cifar(a))) => reproduce_cifar(a),
        Some(Command::Reproduce(Reproduce::Mtat(a))) => reproduce_mtat(a),
        Some(Command::Report(a)) => report(a),
        Some(Command::Forward(a)) => forward(a),
        Some(Command::Mtat(MtatTools::Preprocess { mp3, out })) => {
            let bar = indicatif::ProgressBar::new(0);
            let report = morphgrad::data::preprocess::preprocess(&mp3, &out, &bar)?;
            println!("converted {}, already done {}, failed {}", report.converted, report.skipped, report.failed.len());
            for (f, why) in &report.failed {
                println!("  could not decode {}: {why}", f.display());
            }
            Ok(())
        }
    }
}
