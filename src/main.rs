//! `morphgrad` command line: parses arguments, calls the library, prints.
//! Run with no arguments for the default job: the CIFAR-10 reproduction on
//! built-in synthetic data at a small width (a few minutes on 2 cores).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use morphgrad::experiment::cifar::{self, CifarProtocol, CifarSource};
use morphgrad::experiment::grid::Parallelism;

/// Tensors and buffers of 1 KiB or more start on a cache line (see the type).
#[global_allocator]
static ALLOC: morphgrad::kernels::LineAligned = morphgrad::kernels::LineAligned;

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

#[derive(Args, Clone)]
struct MtatArgs {
    /// MTAT in the reference layout (split files, binary.npy, npy/<dir>/<clip>.npy).
    /// Default: synthetic MTAT-like clips generated under <out>/synthetic-data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Channel width C (the paper: 128; the head is 4C → 4C → tags).
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Epochs of each phase: Adam, then SGD (Nesterov) at 1e-3, 1e-4, 1e-5. The paper: 80,20.
    #[arg(long, default_value = "10,2")]
    epochs: String,
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// Heads; the paper's figure compares relu, maxout, dense-morph-nobn and sparse-morph.
    #[arg(long, default_value = "relu,maxout,dense-morph-nobn,sparse-morph")]
    heads: String,
    /// Drop the BatchNorm of every morph head.
    #[arg(long)]
    no_bn: bool,
    #[arg(long, default_value = "0.8,0.9,0.95,0.98")]
    ratios: String,
    #[arg(long, default_value = "out/mtat")]
    out: PathBuf,
    #[arg(long, default_value = "auto")]
    jobs: String,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Adam learning rate of the first phase (the paper: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    adam_lr: f32,
    /// Synthetic data: clips in train, valid, test.
    #[arg(long, default_value = "640,128,128")]
    synthetic_clips: String,
    /// Synthetic data: seconds per clip.
    #[arg(long, default_value_t = 5.0)]
    synthetic_seconds: f32,
    /// Measure seconds per training step, project the wall time of this protocol and of the
    /// paper's (C = 128, 80 + 20 epochs, 4 heads × 5 seeds, full MTAT), and exit.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Clone)]
struct CifarArgs {
    /// CIFAR-10 as the binary folder, an image folder (train/, test/) or a .tar.gz of one.
    /// Default: built-in synthetic CIFAR-like images.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Channel width C of the backbone (the paper: 128).
    #[arg(long, default_value_t = 16)]
    channels: usize,
    /// Hidden width h of the heads (the paper: 512).
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Number of runs per head (seeds 0..N).
    #[arg(long, default_value_t = 2)]
    seeds: u64,
    /// Comma-separated heads: relu, maxout, zhang, dense-morph, sparse-morph (+ -nobn variants).
    #[arg(long, default_value = "relu,maxout,dense-morph,sparse-morph")]
    heads: String,
    /// Drop the BatchNorm of the morph heads (dense-morph, sparse-morph).
    #[arg(long)]
    no_bn: bool,
    /// Pruning ratios for r1 and r2 (fractions of weights removed).
    #[arg(long, default_value = "0.7,0.8,0.9,0.95")]
    ratios: String,
    #[arg(long, default_value = "out/cifar")]
    out: PathBuf,
    /// Runs trained side by side: `auto` or a number.
    #[arg(long, default_value = "auto")]
    jobs: String,
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
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
}

impl Default for CifarArgs {
    fn default() -> Self {
        match Cli::parse_from(["morphgrad", "reproduce", "cifar"]).command {
            Some(Command::Reproduce(Reproduce::Cifar(a))) => a,
            _ => unreachable!("the default command parses"),
        }
    }
}

fn reproduce_cifar(a: CifarArgs) -> Result<()> {
    let mut heads = cifar::parse_heads(&a.heads)?;
    if a.no_bn {
        heads = heads.into_iter().map(|h| h.without_bn()).collect::<Result<_>>()?;
    }
    let ratios = cifar::parse_ratios(&a.ratios)?;
    anyhow::ensure!(
        a.channels > 0 && a.hidden > 0 && a.epochs > 0 && a.seeds > 0,
        "--channels, --hidden, --epochs and --seeds must be positive"
    );
    anyhow::ensure!(a.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two images per batch)");
    let source = match &a.data {
        None => CifarSource::Synthetic { n_train: a.synthetic_train, n_test: a.synthetic_test, seed: 2025 },
        Some(p) => CifarSource::Path { path: p.clone(), subset_train: a.subset_train, subset_test: a.subset_test },
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    eprintln!("loading data ...");
    let (desc, data) = source.load(0, &a.out.join("cache"))?;
    let runs = heads.len() * a.seeds as usize;
    let par = Parallelism::choose(&a.jobs, runs)?;
    let protocol = CifarProtocol {
        data: desc,
        channels: a.channels,
        hidden: a.hidden,
        sparse_k: 2 * a.hidden,
        dropout: 0.5,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        split_seed: 0,
        seeds: (0..a.seeds).collect(),
        heads: heads.iter().map(|h| h.id()).collect(),
        ratios,
        n_train: data.train.len(),
        n_val: data.val.len(),
        n_test: data.test.len(),
        jobs: par.jobs,
        threads_per_job: par.threads_per_job,
    };
    eprintln!(
        "{}: {} train / {} val / {} test images; {runs} runs ({} side by side, {} thread(s) each) -> {}",
        protocol.data,
        protocol.n_train,
        protocol.n_val,
        protocol.n_test,
        par.jobs,
        par.threads_per_job,
        a.out.display()
    );
    let results = cifar::reproduce(&protocol, &data, &a.out)?;
    let title = format!("Test accuracy (%), mean ± std over {} seed(s), C = {}", a.seeds, a.channels);
    print_report(&title, &results.table_md(), results.wall_seconds, &a.out);
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
    morphgrad::experiment::forward::run(&morphgrad::experiment::forward::ForwardSpec {
        head: a.head.parse()?,
        channels: a.channels,
        weights: a.weights,
        input: a.input,
        labels: a.labels,
        train_mode: a.train_mode,
        dropout: a.dropout,
        out: a.out,
    })
}

fn reproduce_mtat(a: MtatArgs) -> Result<()> {
    use morphgrad::data::mtat::Mtat;
    use morphgrad::experiment::mtat::{self, MtatProtocol};
    let mut heads = cifar::parse_heads(&a.heads)?;
    if a.no_bn {
        heads = heads.into_iter().map(|h| h.without_bn()).collect::<Result<_>>()?;
    }
    let ratios = cifar::parse_ratios(&a.ratios)?;
    let epochs = mtat::parse_epochs(&a.epochs)?;
    anyhow::ensure!(a.channels > 0 && a.seeds > 0, "--channels and --seeds must be positive");
    anyhow::ensure!(a.batch_size >= 2, "--batch-size must be at least 2 (BatchNorm needs two clips per batch)");
    let runs = heads.len() * a.seeds as usize;
    let par = Parallelism::choose(&a.jobs, runs)?;
    let mut protocol = MtatProtocol {
        data: String::new(),
        channels: a.channels,
        sparse_k: 2 * 4 * a.channels,
        dropout: 0.5,
        epochs,
        adam_lr: a.adam_lr,
        sgd_lrs: vec![1e-3, 1e-4, 1e-5],
        weight_decay: 1e-4,
        batch_size: a.batch_size,
        seeds: (0..a.seeds).collect(),
        heads: heads.iter().map(|h| h.id()).collect(),
        ratios,
        n_train: 15244,
        n_valid: 1529,
        n_test: 4332,
        n_tags: 50,
        jobs: par.jobs,
        threads_per_job: par.threads_per_job,
    };
    if a.dry_run {
        let show = |name: &str, p: &MtatProtocol| -> Result<()> {
            let pr = mtat::project(p, heads[0], 3)?;
            println!(
                "{name}: C = {}, batch {}, {} train / {} valid clips, {} epochs, {} runs ({} at a time)\n  \
                 {:.3} s per training step, {:.3} s per evaluated clip (16 chunks) -> {:.1} min per epoch, \
                 {:.1} h per run, {:.1} h in total",
                p.channels,
                p.batch_size,
                p.n_train,
                p.n_valid,
                p.total_epochs(),
                p.heads.len() * p.seeds.len(),
                p.jobs,
                pr.seconds_per_step,
                pr.seconds_per_eval_clip,
                pr.seconds_per_epoch / 60.0,
                pr.hours_per_run,
                pr.hours_total
            );
            Ok(())
        };
        show("these settings on the full MTAT split", &protocol)?;
        let paper = MtatProtocol {
            channels: 128,
            sparse_k: 1024,
            epochs: vec![80, 20],
            seeds: (0..5).collect(),
            heads: ["relu", "maxout", "dense-morph-nobn", "sparse-morph"].map(String::from).to_vec(),
            ..protocol.clone()
        };
        let auto = Parallelism::choose("auto", paper.heads.len() * paper.seeds.len())?;
        let wide = Parallelism::choose("1", 1)?;
        for layout in if auto == wide { vec![wide] } else { vec![wide, auto] } {
            let name = format!(
                "the paper's protocol, {} run(s) at a time × {} thread(s){}",
                layout.jobs,
                layout.threads_per_job,
                if layout == auto { " (what --jobs auto picks)" } else { "" }
            );
            show(&name, &MtatProtocol { jobs: layout.jobs, threads_per_job: layout.threads_per_job, ..paper.clone() })?;
        }
        return Ok(());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let root = match &a.data {
        Some(p) => p.clone(),
        None => {
            let dir = a.out.join("synthetic-data");
            let counts: Vec<usize> = a
                .synthetic_clips
                .split(',')
                .map(|s| {
                    s.trim().parse().map_err(|_| anyhow::anyhow!("--synthetic-clips takes train,valid,test counts"))
                })
                .collect::<Result<_>>()?;
            anyhow::ensure!(
                counts.len() == 3 && counts.iter().all(|&c| c >= 2),
                "--synthetic-clips takes three counts >= 2"
            );
            anyhow::ensure!(
                a.synthetic_seconds >= 3.7,
                "--synthetic-seconds must cover a 59049-sample chunk (>= 3.7 s)"
            );
            if !dir.join("split/test.npy").exists() {
                eprintln!("writing synthetic MTAT-like clips to {} ...", dir.display());
                let samples = (a.synthetic_seconds * morphgrad::data::audio::SAMPLE_RATE as f32) as usize;
                morphgrad::data::synthetic::mtat_like(&dir, counts[0], counts[1], counts[2], samples, 2025)?;
            }
            dir
        }
    };
    let data = Mtat::load(&root)?;
    protocol.data = match &a.data {
        Some(p) => p.display().to_string(),
        None => format!("synthetic MTAT-like clips ({}, {} s each)", a.synthetic_clips, a.synthetic_seconds),
    };
    (protocol.n_train, protocol.n_valid, protocol.n_test, protocol.n_tags) =
        (data.train.len(), data.valid.len(), data.test.len(), data.n_tags);
    eprintln!(
        "{}: {} train / {} valid / {} test clips, {} tags; {runs} runs ({} side by side, {} thread(s) each) -> {}",
        protocol.data,
        protocol.n_train,
        protocol.n_valid,
        protocol.n_test,
        protocol.n_tags,
        par.jobs,
        par.threads_per_job,
        a.out.display()
    );
    let results = mtat::reproduce(&protocol, &data, &a.out)?;
    let title = format!("Test metrics, mean ± std over {} seed(s), C = {}", a.seeds, a.channels);
    print_report(&title, &results.table_md(), results.wall_seconds, &a.out);
    Ok(())
}

/// The end of a reproduction: its tables, its wall time and where it wrote.
fn print_report(title: &str, tables: &str, wall_seconds: f64, out: &std::path::Path) {
    println!("\n{title}:\n\n{tables}");
    println!(
        "wall time {wall_seconds:.0} s (summed over the commands that wrote these results); results, tables and \
         figures in {}",
        out.display()
    );
}

fn main() -> Result<()> {
    morphgrad::kernels::tune_allocator();
    morphgrad::kernels::adopt_calling_thread();
    let cli = Cli::parse();
    match cli.command {
        None => reproduce_cifar(CifarArgs::default()),
        Some(Command::Reproduce(Reproduce::Cifar(a))) => reproduce_cifar(a),
        Some(Command::Reproduce(Reproduce::Mtat(a))) => reproduce_mtat(a),
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
