//! Helpers for tests that compare against the PyTorch reference fixtures in
//! `../shared/fixtures/torch/` (override with `MORPHGRAD_FIXTURES`), and for
//! tests that run the `morphgrad` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use morphgrad::io::read_npy;
use ndarray::ArrayD;

/// The fixture folder of `case`, or `None` (after printing why) when the
/// fixtures are not on this machine — except under `CI`, where a missing
/// fixture fails the test instead of letting it pass without checking.
pub fn fixture(case: &str) -> Option<PathBuf> {
    let dir = fixtures_root().join(case);
    if dir.is_dir() {
        return Some(dir);
    }
    skip(&format!("fixture folder {} is absent (set MORPHGRAD_FIXTURES to run this test)", dir.display()));
    None
}

/// The shared data file or folder `rel` (relative to the crate), or `None`
/// (after printing why) when it is absent; under `CI`, absence fails.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if path.exists() {
        return Some(path);
    }
    skip(&format!("{} is absent", path.display()));
    None
}

/// Say why a test does not run; under `CI` that is a failure.
pub fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "CI must run every test, but {why}");
    eprintln!("SKIP: {why}");
}

fn fixtures_root() -> PathBuf {
    std::env::var_os("MORPHGRAD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/torch"))
}

/// The `params` object of a case in the fixtures' `manifest.json` (call
/// after `fixture(..)` has confirmed the fixtures are present).
pub fn manifest_params(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures_root().join("manifest.json")).expect("manifest.json");
    let m: serde_json::Value = serde_json::from_str(&text).expect("manifest parses");
    m["cases"].as_array().unwrap().iter().find(|c| c["name"] == case).expect("case listed")["params"].clone()
}

pub fn f32s(dir: &Path, name: &str) -> ArrayD<f32> {
    read_npy::<f32>(&dir.join(format!("{name}.npy"))).unwrap()
}

pub fn i64s(dir: &Path, name: &str) -> ArrayD<i64> {
    read_npy::<i64>(&dir.join(format!("{name}.npy"))).unwrap()
}

pub fn u8s(dir: &Path, name: &str) -> ArrayD<u8> {
    read_npy::<u8>(&dir.join(format!("{name}.npy"))).unwrap()
}

/// Assert `|actual - expected| <= atol + rtol * max|expected|` element-wise
/// (tolerance relative to the tensor's scale, the fixtures' convention).
pub fn assert_close(what: &str, actual: &ArrayD<f32>, expected: &ArrayD<f32>, atol: f32, rtol: f32) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tol = atol + rtol * scale;
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let d = (a - e).abs();
        if d > worst || d.is_nan() {
            worst = d;
            at = i;
        }
    }
    assert!(
        worst <= tol,
        "{what}: max |diff| {worst:.3e} at flat index {at} (actual {}, expected {}) exceeds {tol:.3e} (atol {atol:e} + rtol {rtol:e} × scale {scale:.3e})",
        actual.iter().nth(at).unwrap(),
        expected.iter().nth(at).unwrap()
    );
}

/// The `morphgrad` binary of this build.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_morphgrad"))
}

/// A fresh, empty temporary folder private to this test binary and process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("morphgrad-{}-{name}-{}", env!("CARGO_CRATE_NAME"), std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `cmd`, assert it succeeded, and return its stdout and stderr.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "command failed:\n{text}");
    text
}

/// The `results.json` a reproduction wrote into `dir`.
pub fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
}

/// A `results.json` without the fields that measure time (the training
/// time, and each epoch's seconds and throughput): what two runs of the same
/// grid must agree on.
pub fn strip_timings(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().unwrap().remove("train_seconds");
    for (_, h) in v["heads"].as_object_mut().unwrap().iter_mut() {
        for run in h["epochs"].as_array_mut().unwrap() {
            for e in run.as_array_mut().unwrap() {
                for k in ["seconds", "images_per_s", "clips_per_s"] {
                    e.as_object_mut().unwrap().remove(k);
                }
            }
        }
    }
    v
}

/// Run the named tests of this test binary again in a child process with
/// the environment variable `key=value`, and fail unless every one of them
/// ran and passed there. For settings the library reads once per process
/// (`MORPHGRAD_CONV`, `MORPHGRAD_ISA`), which one process cannot switch.
pub fn rerun_with_env(key: &str, value: &str, tests: &[&str]) {
    let exe = std::env::current_exe().expect("path of this test binary");
    let out = std::process::Command::new(exe)
        .args(tests)
        .args(["--exact", "--test-threads=1", "--nocapture"])
        .env(key, value)
        .output()
        .expect("run this test binary again");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "with {key}={value}:\n{text}");
    let want = format!("test result: ok. {} passed", tests.len());
    assert!(text.contains(&want), "with {key}={value}, expected `{want}`:\n{text}");
    if text.contains("SKIP:") {
        eprintln!("with {key}={value}, a test skipped:\n{text}");
    }
}

/// Under `MORPHGRAD_CONV=winograd`, check that it is in effect (a 3×3
/// stride-1 convolution of few channels takes Winograd).
pub fn assert_conv_setting_in_effect() {
    use morphgrad::ops::conv::{ConvAlgorithm, conv2d_algorithm};
    if std::env::var("MORPHGRAD_CONV").as_deref() == Ok("winograd") {
        assert_eq!(conv2d_algorithm(&[1, 1, 4, 4], &[8, 1, 3, 3], 1, 1), ConvAlgorithm::Winograd);
    }
}
