//! End-to-end tests of the `morphgrad` binary: a CIFAR reproduction on a
//! slice of the real JPEG CIFAR-10 archive, kill-and-resume equality,
//! `forward` against the PyTorch whole-net fixtures, and clear errors.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use morphgrad::nn::StateValue;
use morphgrad::nn::checkpoint::{load_npz, save_npz};

#[test]
fn reproduce_cifar_on_a_slice_of_the_real_jpeg_archive() {
    let Some(_) = shared_data("../shared/datasets/cifar10-jpeg.tar.gz") else { return };
    let out = tmp("slice");
    // The data path as a user types it, relative to where the command runs.
    let typed = "../shared/datasets/cifar10-jpeg.tar.gz";
    let text = run_ok(
        bin()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["reproduce", "cifar", "--data", typed])
            .args([
                "--subset-train",
                "640",
                "--subset-test",
                "200",
                "--channels",
                "4",
                "--hidden",
                "32",
                "--epochs",
                "2",
                "--seeds",
                "2",
                "--heads",
                "relu,sparse-morph",
                "--ratios",
                "0.7,0.9",
                "--out",
            ])
            .arg(&out),
    );
    assert!(text.contains("| r2 | r1 | params | ReLU (n=2) | Sparse-Morph (n=2) |"), "{text}");
    let r = results(&out);
    // The data is recorded by what it is, and by the path as typed: never by
    // an absolute path of this machine.
    let data = &r["protocol"]["data"];
    assert_eq!(data["source"], typed);
    assert_eq!(data["counts"], serde_json::json!({"train": 640, "test": 200}));
    let format = data["format"].as_str().unwrap();
    assert!(format.contains(".tar.gz") && format.contains("random 640 of its train images"), "{format}");
    let sha = data["sha256"].as_str().unwrap();
    assert!(sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()), "{sha}");
    let manifest_dir = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    let parent = manifest_dir.parent().unwrap().display().to_string();
    for f in ["results.json", "protocol.json", "runs/relu-seed0/result.json"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!text.contains(&parent), "{f} records a path of this machine ({parent})");
    }
    assert_eq!(r["protocol"]["n_train"], 512);
    assert_eq!(r["protocol"]["n_val"], 128);
    assert_eq!(r["protocol"]["n_test"], 200);
    for head in ["relu", "sparse-morph"] {
        let h = &r["heads"][head];
        assert_eq!(h["seeds"], serde_json::json!([0, 1]), "{head}");
        assert_eq!(h["unpruned_test_acc"].as_array().unwrap().len(), 2);
        let epochs = h["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 2);
        for e in epochs[0].as_array().unwrap() {
            for k in ["epoch", "train_loss", "val_loss", "val_acc", "seconds"] {
                assert!(e[k].is_number(), "{head} epoch entry lacks {k}: {e}");
            }
        }
        let pruned = h["pruned"].as_array().unwrap();
        assert_eq!(pruned.len(), 4, "2 × 2 grid");
        for p in pruned {
            assert!(p["params"].as_u64().unwrap() > 0 && p["test_acc"].as_array().unwrap().len() == 2, "{p}");
            assert!(p["sparsity"]["dense1"].as_f64().unwrap() >= 0.69, "{p}");
        }
    }
    for f in [
        "results.csv",
        "table.md",
        "table.tex",
        "val_acc.svg",
        "val_acc.png",
        "acc_vs_r1.svg",
        "acc_vs_r1.png",
        "acc_vs_r1.csv",
        "welch.csv",
        "weight_hist.svg",
        "weight_hist.png",
    ] {
        let len = std::fs::metadata(out.join(f)).unwrap_or_else(|_| panic!("{f} missing")).len();
        assert!(len > 200, "{f} is nearly empty");
    }
    // Sparse-Morph against ReLU, cell by cell, with Welch's test over the two seeds.
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("Sparse-Morph minus each other head") && table.contains("| r2 | r1 | vs ReLU |"), "{table}");
    let welch = std::fs::read_to_string(out.join("welch.csv")).unwrap();
    assert_eq!(welch.lines().count(), 1 + 1 + 4, "header, unpruned, 2 × 2 grid: {welch}");
    // The figure's numbers: one row per head and grid point, over both seeds.
    let fig = std::fs::read_to_string(out.join("acc_vs_r1.csv")).unwrap();
    assert_eq!(fig.lines().count(), 1 + 2 * 4, "{fig}");
    assert!(fig.lines().skip(1).all(|l| l.split(',').nth(4) == Some("2")), "{fig}");
    // The decoded archive is cached next to the output.
    assert!(std::fs::read_dir(out.join("cache")).unwrap().count() >= 4);
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn a_killed_run_resumes_and_ends_exactly_like_an_uninterrupted_one() {
    let args = |out: &Path| -> Vec<String> {
        [
            "reproduce",
            "cifar",
            "--synthetic-train",
            "1200",
            "--synthetic-test",
            "200",
            "--channels",
            "8",
            "--hidden",
            "64",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(
            ["--epochs", "4", "--seeds", "1", "--heads", "sparse-morph", "--ratios", "0.8", "--jobs", "1", "--out"]
                .map(String::from),
        )
        .chain([out.display().to_string()])
        .collect()
    };
    let whole = tmp("whole");
    run_ok(bin().args(args(&whole)));

    let killed = tmp("killed");
    let mut child = bin().args(args(&killed)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = killed.join("runs/sparse-morph-seed0/checkpoint.npz");
    let t0 = Instant::now();
    while !ckpt.exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("results.json").exists(), "the run finished before it could be killed: make it longer");
    run_ok(bin().args(args(&killed)));
    assert_eq!(strip_timings(results(&killed)), strip_timings(results(&whole)));

    // A finished grid run again only redraws the report: no run is trained or rewritten.
    let before = results(&whole);
    let sealed = whole.join("runs/sparse-morph-seed0/result.json");
    let written = std::fs::metadata(&sealed).unwrap().modified().unwrap();
    run_ok(bin().args(args(&whole)));
    assert_eq!(results(&whole), before);
    assert_eq!(std::fs::metadata(&sealed).unwrap().modified().unwrap(), written);
    std::fs::remove_dir_all(whole).ok();
    std::fs::remove_dir_all(killed).ok();
}

#[test]
fn forward_reproduces_torch_logits_loss_and_gradients() {
    let Some(d) = fixture("cifar_net_lmpl2") else { return };
    let out = tmp("forward");
    // Weights: every fixture file that is a parameter or buffer of the net.
    let mut sd = morphgrad::nn::StateDict::new();
    for entry in std::fs::read_dir(&d).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".npy") else { continue };
        if key.starts_with("blocks.") || key.starts_with("head.") {
            let v = if key.ends_with("num_batches_tracked") {
                StateValue::I64(i64s(&d, key))
            } else {
                StateValue::F32(f32s(&d, key))
            };
            sd.insert(key.to_string(), v);
        }
    }
    save_npz(&out.join("w.npz"), &sd).unwrap();
    run_ok(
        bin()
            .args(["forward", "--head", "sparse-morph", "--channels", "8", "--train-mode", "--weights"])
            .arg(out.join("w.npz"))
            .arg("--input")
            .arg(d.join("x.npy"))
            .arg("--labels")
            .arg(d.join("labels.npy"))
            .arg("--out")
            .arg(out.join("o.npz")),
    );
    let o = load_npz(&out.join("o.npz")).unwrap();
    let get = |k: &str| match &o[k] {
        StateValue::F32(a) => a.clone(),
        StateValue::I64(_) => panic!("{k} is int"),
    };
    assert_close("logits", &get("logits"), &f32s(&d, "output_train"), 1e-5, 1e-3);
    assert_close("loss", &get("loss"), &f32s(&d, "loss_train"), 1e-5, 1e-3);
    let grads: Vec<&String> = o.keys().filter(|k| k.starts_with("grad.")).collect();
    assert_eq!(grads.len(), 27, "{grads:?}");
    for k in grads {
        let atol = if k.ends_with("conv.bias") { 1e-5 } else { 1e-6 };
        assert_close(k, &get(k), &f32s(&d, k), atol, if atol > 1e-6 { 0.0 } else { 1e-3 });
    }
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn forward_accepts_the_authors_parameter_names() {
    let Some(d) = fixture("cifar_net_relu") else { return };
    let out = tmp("authors");
    let mut sd = morphgrad::nn::StateDict::new();
    for entry in std::fs::read_dir(&d).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".npy") else { continue };
        if !(key.starts_with("blocks.") || key.starts_with("head.")) {
            continue;
        }
        let v = if key.ends_with("num_batches_tracked") {
            StateValue::I64(i64s(&d, key))
        } else {
            StateValue::F32(f32s(&d, key))
        };
        // blocks.{i}.* -> layer{i+1}.*, head.bn1 -> bn, head.dense1 -> dense1, ...
        let renamed = if let Some(rest) = key.strip_prefix("blocks.") {
            let (i, tail) = rest.split_once('.').unwrap();
            format!("layer{}.{tail}", i.parse::<usize>().unwrap() + 1)
        } else if let Some(rest) = key.strip_prefix("head.bn1.") {
            format!("bn.{rest}")
        } else {
            key.strip_prefix("head.").unwrap().to_string()
        };
        sd.insert(renamed, v);
    }
    save_npz(&out.join("w.npz"), &sd).unwrap();
    run_ok(
        bin()
            .args(["forward", "--head", "relu", "--channels", "8", "--weights"])
            .arg(out.join("w.npz"))
            .arg("--input")
            .arg(d.join("x.npy"))
            .arg("--out")
            .arg(out.join("o.npz")),
    );
    let StateValue::F32(logits) = &load_npz(&out.join("o.npz")).unwrap()["logits"] else { panic!() };
    assert_close("eval logits", logits, &f32s(&d, "output_eval"), 1e-5, 1e-4);
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn bad_input_gives_errors_that_name_the_problem() {
    let out = tmp("errors");
    let err = |args: &[&str]| {
        let o = bin().args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = err(&["reproduce", "cifar", "--heads", "relu,softmax", "--out", out.to_str().unwrap()]);
    assert!(e.contains("unknown head `softmax`") && e.contains("sparse-morph"), "{e}");
    let e = err(&["reproduce", "cifar", "--ratios", "0.7,1.5", "--out", out.to_str().unwrap()]);
    assert!(e.contains("1.5") && e.contains("[0, 1)"), "{e}");
    let e = err(&["reproduce", "cifar", "--data", "/nonexistent/cifar", "--out", out.to_str().unwrap()]);
    assert!(e.contains("/nonexistent/cifar"), "{e}");
    let e = err(&["reproduce", "cifar", "--heads", "relu", "--no-bn", "--out", out.to_str().unwrap()]);
    assert!(e.contains("--no-bn applies to dense-morph and sparse-morph"), "{e}");
    // A truncated archive.
    let bad = out.join("bad.tar.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00garbage").unwrap();
    let e = err(&["reproduce", "cifar", "--data", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(e.contains("bad.tar.gz") && e.contains("corrupt or truncated"), "{e}");
    // Weights that do not fit the requested net.
    let w = out.join("w.npz");
    let mut sd = morphgrad::nn::StateDict::new();
    sd.insert("head.dense1.weight".into(), StateValue::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[512, 16]))));
    save_npz(&w, &sd).unwrap();
    let x = out.join("x.npy");
    morphgrad::io::write_npy(&x, &ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, 3, 32, 32]))).unwrap();
    let e = err(&[
        "forward",
        "--head",
        "relu",
        "--channels",
        "8",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--out",
        out.join("o.npz").to_str().unwrap(),
    ]);
    assert!(e.contains("missing `blocks.0.conv.weight`") && e.contains("missing `head.dense2.weight`"), "{e}");
    std::fs::remove_dir_all(out).ok();
}
