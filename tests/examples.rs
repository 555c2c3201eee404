//! The teaching examples (docs/examples/) run in their fast mode, and what
//! they print and draw is checked: files written, numbers in the range the
//! lesson depends on.

use std::path::PathBuf;
use std::process::Command;

/// Run example `name` with `--fast --out <tmp>`; its stdout and the folder.
fn run(name: &str) -> (String, PathBuf) {
    // `cargo test` builds the examples next to the test binaries' folder.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(bin.exists(), "{} not built: run the tests with `cargo test` (which builds examples)", bin.display());
    let out = std::env::temp_dir().join(format!("morphgrad-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let res = Command::new(&bin).args(["--fast", "--out"]).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout).to_string();
    assert!(res.status.success(), "{name} failed:\n{stdout}\n{}", String::from_utf8_lossy(&res.stderr));
    (stdout, out)
}

fn assert_pictures(out: &PathBuf, stems: &[&str]) {
    for stem in stems {
        for ext in ["png", "svg"] {
            let f = out.join(format!("{stem}.{ext}"));
            let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            assert!(len > 2000, "{} missing or empty ({len} bytes)", f.display());
        }
    }
    let _ = std::fs::remove_dir_all(out);
}

/// Every number that follows `key` in `text`, in order.
fn numbers_after(text: &str, key: &str) -> Vec<f64> {
    text.match_indices(key)
        .map(|(i, _)| {
            let rest = text[i + key.len()..].trim_start();
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(rest.len());
            rest[..end].parse().unwrap_or_else(|_| panic!("no number after {key:?} in {rest:.40}"))
        })
        .collect()
}

#[test]
fn maxplus_by_hand_routes_each_gradient_to_its_winner() {
    let (text, out) = run("maxplus_by_hand");
    assert!(text.contains("dx = [10.0, 1.0]"), "{text}");
    assert!(text.contains("dW = [0.0, 1.0, 10.0, 0.0, 0.0, 0.0]"), "{text}");
    assert!(text.contains("db = [0.0, 0.0, 100.0]"), "{text}");
    assert!(text.contains("max 1.5 won by the bias"), "{text}");
    assert_pictures(&out, &["candidates"]);
}

#[test]
fn toy_2d_heads_learn_the_moons_and_draw_their_winner_maps() {
    let (text, out) = run("toy_2d");
    let acc = numbers_after(&text, "test accuracy");
    assert_eq!(acc.len(), 3, "{text}");
    assert!(acc.iter().all(|&a| a > 80.0), "every head beats 80 % on the moons: {acc:?}");
    assert_pictures(&out, &["decision_regions", "winner_maps"]);
}

#[test]
fn who_learns_shows_that_more_sparse_weights_learn() {
    let (text, out) = run("who_learns");
    let learned = numbers_after(&text, "weights, ");
    assert_eq!(learned.len(), 2, "{text}");
    let (dense, sparse) = (learned[0], learned[1]);
    assert!(dense < 50.0 && sparse > 70.0 && sparse - dense > 30.0, "dense {dense} %, sparse {sparse} %");
    let top = numbers_after(&text, "weights take");
    assert!(top[0] > top[1], "wins concentrate more in the dense layer: {top:?}");
    assert_pictures(&out, &["who_learns"]);
}

#[test]
fn prune_and_look_loses_accuracy_as_the_first_layer_is_pruned() {
    let (text, out) = run("prune_and_look");
    let acc = numbers_after(&text, "test accuracy");
    assert_eq!(acc.len(), 4 * 7, "{text}");
    for head in acc.chunks(7) {
        assert!(head[0] > 85.0, "unpruned heads learn the task: {head:?}");
        assert!(head[6] < head[0], "pruning 98 % of the first layer costs accuracy: {head:?}");
    }
    let params = numbers_after(&text, "%, ");
    assert!(params.chunks(7).all(|p| p.windows(2).all(|w| w[1] <= w[0])), "fewer parameters as r1 grows: {params:?}");
    assert_pictures(&out, &["accuracy_vs_r1", "weight_hist"]);
}
