//! A grid spread over processes: shards filling one output folder at the
//! same time, `report` assembling them into exactly the single-process
//! results, claims that keep two processes off one run (also after a
//! `kill -9`), and clear errors for every malformed request. The same
//! commands under a real Slurm are tested in `slurm.rs`.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{bin, results, run_ok, strip_timings, tmp};

/// `morphgrad reproduce cifar` on synthetic images, one thread per run,
/// with the settings that make the grid (`--channels`, `--seeds`, ...).
fn cifar(out: &Path, settings: &[&str]) -> std::process::Command {
    let mut cmd = bin();
    cmd.env("RAYON_NUM_THREADS", "1").args(["reproduce", "cifar", "--ratios", "0.8", "--jobs", "1"]);
    cmd.args(settings).arg("--out").arg(out);
    cmd
}

/// A tiny grid: relu and sparse-morph × `seeds`, C = 4.
fn grid(out: &Path, seeds: &str, epochs: &str, extra: &[&str]) -> std::process::Command {
    grid_of_width(out, "4", seeds, epochs, extra)
}

fn grid_of_width(out: &Path, channels: &str, seeds: &str, epochs: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = cifar(out, &["--synthetic-train", "600", "--synthetic-test", "100", "--hidden", "16"]);
    cmd.args(["--channels", channels, "--epochs", epochs, "--heads", "relu,sparse-morph", "--seeds", seeds]);
    cmd.args(extra);
    cmd
}

/// A grid of one run long enough to be caught mid-training.
fn long_run(out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = cifar(out, &["--synthetic-train", "1500", "--synthetic-test", "200", "--channels", "8"]);
    cmd.args(["--hidden", "64", "--epochs", "6", "--heads", "sparse-morph", "--seeds", "1"]).args(extra);
    cmd
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn output_of(child: Child) -> (bool, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn shards_running_at_once_plus_report_equal_one_process() {
    let single = tmp("single");
    run_ok(&mut grid(&single, "0-1", "2", &[]));

    let sharded = tmp("sharded");
    // Three shards of a four-run grid, all at once into one folder.
    let shards: Vec<Child> = (0..3)
        .map(|i| grid(&sharded, "0-1", "2", &["--shard", &format!("{i}/3")]).stdout(Stdio::piped()).spawn().unwrap())
        .collect();
    for child in shards {
        let (ok, text) = output_of(child);
        assert!(ok && text.contains("no report written"), "{text}");
    }
    assert!(!sharded.join("results.json").exists(), "a shard must not write the report");
    let text = run_ok(bin().arg("report").arg(&sharded));
    assert!(text.contains("4 runs finished") && text.contains("ReLU (n=2)"), "{text}");
    assert_eq!(strip_timings(results(&sharded)), strip_timings(results(&single)));
    for f in ["results.csv", "table.md", "table.tex", "val_acc.png", "acc_vs_r1.svg", "welch.csv", "weight_hist.png"] {
        assert!(sharded.join(f).exists(), "report must write {f} as reproduce does");
    }
    assert_eq!(
        std::fs::read_to_string(sharded.join("table.md")).unwrap(),
        std::fs::read_to_string(single.join("table.md")).unwrap()
    );
    std::fs::remove_dir_all(single).ok();
    std::fs::remove_dir_all(sharded).ok();
}

#[test]
fn report_lists_missing_runs_and_merges_folders_from_several_machines() {
    let a = tmp("machine-a");
    let b = tmp("machine-b");
    run_ok(&mut grid(&a, "0-1", "1", &["--shard", "0/2"]));
    let partial = run_ok(bin().arg("report").arg(&a));
    assert!(partial.contains("2 runs finished"), "{partial}");
    for missing in ["relu seed 1", "sparse-morph seed 1"] {
        assert!(partial.contains(&format!("{missing}: not started")), "{partial}");
    }
    assert!(std::fs::read_to_string(a.join("table.md")).unwrap().contains("Not finished yet"));
    assert_eq!(results(&a)["missing"].as_array().unwrap().len(), 2);
    let strict = bin().arg("report").arg(&a).arg("--require-complete").output().unwrap();
    let e = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success() && e.contains("2 run(s) are not finished: relu seed 1"), "{e}");

    // The other half on "another machine", reported together into a third folder.
    run_ok(&mut grid(&b, "0-1", "1", &["--shard", "1/2"]));
    let merged = tmp("merged");
    let text = run_ok(bin().arg("report").arg(&a).arg(&b).arg("--out").arg(&merged).arg("--require-complete"));
    assert!(text.contains("4 runs finished"), "{text}");
    assert_eq!(results(&merged)["missing"], serde_json::json!([]));
    assert_eq!(results(&merged)["heads"]["relu"]["seeds"], serde_json::json!([0, 1]));
    for d in [a, b, merged] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn a_shard_killed_with_sigkill_resumes_to_the_result_of_an_uninterrupted_one() {
    let whole = tmp("whole-shard");
    run_ok(&mut long_run(&whole, &["--shard", "0/1"]));
    let killed = tmp("killed-shard");
    let mut child = long_run(&killed, &["--shard", "0/1"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let log = killed.join("runs/sparse-morph-seed0/log.jsonl");
    wait_until("a first epoch", Duration::from_secs(120), || log.exists());
    child.kill().unwrap(); // SIGKILL: no chance to clean up or release anything by itself
    child.wait().unwrap();
    let result = |d: &Path| d.join("runs/sparse-morph-seed0/result.json");
    assert!(!result(&killed).exists(), "finished before the kill: make the run longer");
    let text = run_ok(&mut long_run(&killed, &["--shard", "0/1"]));
    assert!(!text.contains("skipped"), "the dead process's claim must be gone: {text}");
    run_ok(bin().arg("report").arg(&whole));
    run_ok(bin().arg("report").arg(&killed));
    assert_eq!(strip_timings(results(&killed)), strip_timings(results(&whole)));
    std::fs::remove_dir_all(whole).ok();
    std::fs::remove_dir_all(killed).ok();
}

#[test]
fn two_processes_on_one_run_one_trains_it_and_the_other_skips_or_waits() {
    let out = tmp("claimed");
    let claim = out.join("runs/sparse-morph-seed0/claim");
    let trainer = long_run(&out, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = format!("pid {} ", trainer.id());
    wait_until("the first process's claim", Duration::from_secs(60), || {
        std::fs::read_to_string(&claim).is_ok_and(|s| s.starts_with(&pid))
    });
    // A second process skips the run, says who holds it, and trains nothing.
    let text = run_ok(&mut long_run(&out, &["--shard", "0/1"]));
    assert!(text.contains(&format!("sparse-morph seed 0: skipped, claimed by {pid}")), "{text}");
    // A third waits for it; when the holder dies mid-run, the waiter takes the
    // run over from its last checkpoint.
    let waiter = long_run(&out, &["--wait-for-claimed"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let log = out.join("runs/sparse-morph-seed0/log.jsonl");
    wait_until("a first epoch", Duration::from_secs(120), || log.exists());
    let mut trainer = trainer;
    trainer.kill().unwrap();
    trainer.wait().unwrap();
    let (ok, text) = output_of(waiter);
    assert!(ok && !text.contains("skipped") && text.contains("1 runs finished"), "{text}");
    let whole = tmp("claimed-whole");
    run_ok(&mut long_run(&whole, &[]));
    assert_eq!(strip_timings(results(&out)), strip_timings(results(&whole)));
    // Started after the run is finished, a waiter neither waits nor retrains.
    let sealed = out.join("runs/sparse-morph-seed0/result.json");
    let written = std::fs::metadata(&sealed).unwrap().modified().unwrap();
    run_ok(&mut long_run(&out, &["--wait-for-claimed"]));
    assert_eq!(std::fs::metadata(&sealed).unwrap().modified().unwrap(), written);
    std::fs::remove_dir_all(out).ok();
    std::fs::remove_dir_all(whole).ok();
}

fn fails(cmd: &mut std::process::Command) -> String {
    let o = cmd.output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "should fail: {e}");
    e
}

#[test]
fn malformed_grid_requests_and_damaged_runs_get_errors_that_name_the_problem_and_keep_the_runs() {
    let out = tmp("bad");
    for (shard, says) in [
        ("3/2", "shard 3 does not exist among 2"),
        ("-1/4", "--shard takes I/N"),
        ("a/b", "--shard takes I/N"),
        ("0/0", "into 0 shards"),
        ("slurm", "not a task of a Slurm job array"),
    ] {
        let e = fails(grid(&out, "2", "1", &["--shard", shard]).env_remove("SLURM_ARRAY_TASK_ID"));
        assert!(e.contains(says), "--shard {shard}: {e}");
    }
    for (seeds, says) in [("5-2", "write 2-5"), ("0,1,1", "names seed 1 twice"), ("0", "selects no run")] {
        let e = fails(&mut grid(&out, seeds, "1", &[]));
        assert!(e.contains(says), "--seeds {seeds}: {e}");
    }
    let e = fails(bin().arg("report").arg(&out));
    assert!(e.contains("has no protocol.json"), "{e}");

    run_ok(&mut grid(&out, "0-1", "1", &["--shard", "0/2"]));
    let before = std::fs::read_to_string(out.join("runs/relu-seed0/result.json")).unwrap();
    // Another protocol into the same folder: stopped, with the differing settings named.
    let e = fails(&mut grid_of_width(&out, "8", "0-1", "2", &[]));
    assert!(e.contains("channels: 8 in this command, 4 in protocol.json"), "{e}");
    assert!(e.contains("epochs: 2 in this command, 1 in protocol.json"), "{e}");

    // Runs of different protocols in two folders do not make one table.
    let elsewhere = tmp("bad-other");
    run_ok(&mut grid(&elsewhere, "2", "2", &[]));
    let e = fails(bin().arg("report").arg(&out).arg(&elsewhere));
    assert!(e.contains("different protocols") && e.contains("epochs: 1 in"), "{e}");

    // A folder whose runs are all unfinished has nothing to report.
    let empty = tmp("bad-empty");
    std::fs::copy(out.join("protocol.json"), empty.join("protocol.json")).unwrap();
    std::fs::create_dir_all(empty.join("runs/relu-seed0")).unwrap();
    let e = fails(bin().arg("report").arg(&empty));
    assert!(e.contains("no finished run under") && e.contains("relu seed 0 (not started)"), "{e}");

    // A result cut short by a copy, or edited by hand, is refused by name.
    let result = out.join("runs/sparse-morph-seed0/result.json");
    let sealed = std::fs::read_to_string(&result).unwrap();
    std::fs::write(&result, &sealed[..sealed.len() / 2]).unwrap();
    let e = fails(bin().arg("report").arg(&out));
    assert!(e.contains("sparse-morph-seed0/result.json is not valid JSON") && e.contains("delete it"), "{e}");
    let edited = sealed.replacen("\"unpruned_test_acc\": ", "\"unpruned_test_acc\": 9", 1);
    assert_ne!(edited, sealed);
    std::fs::write(&result, edited).unwrap();
    let e = fails(bin().arg("report").arg(&out));
    assert!(e.contains("was changed after it was written"), "{e}");
    std::fs::write(&result, &sealed).unwrap();
    run_ok(bin().arg("report").arg(&out));
    // None of this touched a finished run.
    assert_eq!(std::fs::read_to_string(out.join("runs/relu-seed0/result.json")).unwrap(), before);
    for d in [out, elsewhere, empty] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn the_cifar_dry_run_projects_the_paper_preset_here_and_on_a_cluster() {
    let text = run_ok(bin().args([
        "reproduce",
        "cifar",
        "--preset",
        "paper",
        "--channels",
        "4",
        "--data",
        "cifar10.tar.gz",
        "--dry-run",
        "--machines",
        "10",
        "--cores-per-machine",
        "32",
    ]));
    assert!(text.contains("4 heads × 5 seeds = 20 runs; C = 4, h = 512, 10 epochs, 40000 train / 10000 val"), "{text}");
    assert!(text.contains("--jobs 1: 1 run(s) side by side") && text.contains("for the grid"), "{text}");
    assert!(text.contains("10 machine(s) × 32 cores") && text.contains("16 thread(s) per run"), "{text}");
    assert!(text.contains("export DATA=cifar10.tar.gz OUT=out/cifar ARGS='--preset paper --channels 4'"), "{text}");
    assert!(text.contains("--array=0-19 --cpus-per-task=16") && text.contains("docs/cluster/cifar.sbatch"), "{text}");
}
