//! MTAT pipeline end to end: the real split files parse; a synthetic run
//! learns well above chance and produces every report; a killed run resumes
//! to the same result; the dry run projects the paper's protocol.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, results, run_ok, shared_data, strip_timings, tmp};
use morphgrad::data::mtat::parse_split;
use morphgrad::io::read_npy_strings;

#[test]
fn the_real_mtat_split_files_parse() {
    let Some(dir) = shared_data("../shared/datasets/mtat-split") else { return };
    let tags = read_npy_strings(&dir.join("tags.npy")).unwrap();
    assert_eq!(tags.len(), 50);
    assert_eq!(tags[..3], ["guitar", "classical", "slow"]);
    let valid = parse_split(&dir.join("valid.npy")).unwrap();
    let test = parse_split(&dir.join("test.npy")).unwrap();
    assert_eq!((valid.len(), test.len()), (1529, 4332));
    assert_eq!(valid[0].row, 5);
    assert_eq!(valid[0].path, "c/lvx_nova-lvx_nova-01-contimune-30-59.mp3");
    assert!(test.iter().all(|c| c.row < 25863 && c.path.ends_with(".mp3")));
}

fn synthetic_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "reproduce",
        "mtat",
        "--synthetic-seconds",
        "3.8",
        "--adam-lr",
        "3e-3",
        "--seeds",
        "1",
        "--ratios",
        "0.8,0.95",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(out.display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[test]
fn synthetic_training_learns_well_above_chance_and_reports_everything() {
    let out = tmp("learn");
    let text = run_ok(bin().args(synthetic_args(
        &out,
        &["--synthetic-clips", "160,48,48", "--channels", "8", "--epochs", "8,1", "--heads", "relu,sparse-morph"],
    )));
    assert!(text.contains("| head | seeds | ROC-AUC | PR-AUC |"), "{text}");
    let r = results(&out);
    for head in ["relu", "sparse-morph"] {
        let h = &r["heads"][head];
        let roc = h["test_roc_auc"][0].as_f64().unwrap();
        assert!(roc > 0.6, "{head}: test ROC-AUC {roc} is not well above chance (0.5)");
        let epochs = h["epochs"][0].as_array().unwrap();
        assert_eq!(epochs.len(), 9);
        assert_eq!(epochs[8]["phase"], "sgd1");
        assert!(epochs[8]["val_roc_auc"].as_f64().unwrap() > epochs[0]["val_roc_auc"].as_f64().unwrap());
        assert_eq!(h["pruned"].as_array().unwrap().len(), 4);
    }
    for f in [
        "results.csv",
        "table.md",
        "convergence_roc_auc.svg",
        "convergence_roc_auc.png",
        "convergence_pr_auc.svg",
        "convergence_pr_auc.png",
    ] {
        assert!(std::fs::metadata(out.join(f)).map(|m| m.len() > 200).unwrap_or(false), "{f} missing or empty");
    }
    assert!(std::fs::read_to_string(out.join("table.md")).unwrap().contains("After pruning"));
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn a_killed_mtat_run_resumes_through_the_phase_change_to_the_same_result() {
    let cfg = [
        "--synthetic-clips",
        "96,32,32",
        "--channels",
        "4",
        "--epochs",
        "3,2,1",
        "--heads",
        "sparse-morph",
        "--jobs",
        "1",
    ];
    let whole = tmp("whole");
    run_ok(bin().args(synthetic_args(&whole, &cfg)));
    let killed = tmp("killed");
    // Reuse the same synthetic clips (generation is seeded; copying saves time).
    run_ok(Command::new("cp").arg("-r").arg(whole.join("synthetic-data")).arg(&killed));
    let mut child =
        bin().args(synthetic_args(&killed, &cfg)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let log = killed.join("runs/sparse-morph-seed0/log.jsonl");
    let t0 = Instant::now();
    // Kill inside the Adam phase, after at least one checkpoint.
    while std::fs::read_to_string(&log).map(|s| s.lines().count()).unwrap_or(0) < 2 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress after 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("results.json").exists(), "finished before the kill: make the run longer");
    run_ok(bin().args(synthetic_args(&killed, &cfg)));
    assert_eq!(strip_timings(results(&killed)), strip_timings(results(&whole)));
    std::fs::remove_dir_all(whole).ok();
    std::fs::remove_dir_all(killed).ok();
}

#[test]
fn dry_run_projects_the_paper_protocol_here_and_on_a_cluster() {
    let out = run_ok(bin().args([
        "reproduce",
        "mtat",
        "--preset",
        "paper",
        "--channels",
        "4",
        "--dry-run",
        "--machines",
        "10",
        "--cores-per-machine",
        "32",
    ]));
    // The preset sets the paper's grid and epochs; --channels overrides its width.
    assert!(out.contains("4 heads × 5 seeds = 20 runs; C = 4, batch 16, 100 epochs, 15244 train"), "{out}");
    assert!(out.contains("s per training step") && out.contains("for the grid"), "{out}");
    assert!(
        out.contains("10 machine(s) × 32 cores") && out.contains("16 thread(s) per run, 20 runs at a time"),
        "{out}"
    );
    assert!(out.contains("--array=0-19 --cpus-per-task=16") && out.contains("docs/cluster/mtat.sbatch"), "{out}");
    assert!(out.contains("ARGS='--preset paper --channels 4'"), "{out}");
}
