//! Pruning against the reference: thresholds, pruned weights and counts of
//! the `prune_*` fixtures exactly, and the remaining-parameter accounting of
//! every head, both widths, the whole r1 × r2 grid (`prune_param_counts`),
//! plus the paper's own table column.

mod common;

use common::*;
use morphgrad::models::{CifarConfig, CifarNet, HeadKind};
use morphgrad::prune::{prune_head, prune_linear, prune_maxplus};

#[test]
fn pruning_rules_match_the_reference_exactly() {
    for case in [
        "prune_linear_r0.7",
        "prune_linear_r0.9",
        "prune_linear_r0.9_extra",
        "prune_linear_r0.7_ties",
        "prune_linear_r0.85_extra_half",
        "prune_maxplus_r0.7",
        "prune_maxplus_r0.9",
    ] {
        let Some(d) = fixture(case) else { return };
        let p = manifest_params(case);
        let mut w = f32s(&d, "w_before");
        let (r, extra) = (p["r"].as_f64().unwrap(), p["extra"].as_u64().unwrap() as usize);
        let (k, thr) =
            if p["rule"] == "linear" { prune_linear(&mut w, r, extra) } else { prune_maxplus(&mut w, r) }.unwrap();
        assert_eq!(k as u64, p["k"].as_u64().unwrap(), "{case} k");
        assert_eq!(thr, p["threshold"].as_f64().unwrap() as f32, "{case} threshold");
        let expected = f32s(&d, "w_after");
        // The reference writes -1e9 for pruned max-plus weights; we write -inf (same meaning).
        let ours = w.mapv(|v| if v == f32::NEG_INFINITY { -1e9 } else { v });
        assert_eq!(ours, expected, "{case} pruned weights");
        let removed = if p["rule"] == "linear" {
            w.iter().filter(|&&v| v == 0.0).count()
        } else {
            w.iter().filter(|&&v| v == f32::NEG_INFINITY).count()
        };
        assert_eq!(removed as u64, p["n_pruned"].as_u64().unwrap(), "{case} pruned count (ties included)");
    }
}

#[test]
fn remaining_head_parameters_match_the_reference_accounting() {
    if fixture("prune_linear_r0.7").is_none() {
        return;
    }
    let counts = manifest_params("prune_param_counts")["counts"].clone();
    let mut checked = 0;
    for (key, expected) in counts.as_object().unwrap() {
        // e.g. "C128_lmpl2_r1=0.7_r2=0.95"
        let parts: Vec<&str> = key.split('_').collect();
        let c: usize = parts[0][1..].parse().unwrap();
        let head: HeadKind = parts[1].parse().unwrap();
        let r1: f64 = parts[2].trim_start_matches("r1=").parse().unwrap();
        let r2: f64 = parts[3].trim_start_matches("r2=").parse().unwrap();
        let mut net = CifarNet::new(CifarConfig::paper(head, c), 7);
        let report = prune_head(&mut net.head, r1, r2).unwrap();
        assert_eq!(report.params as u64, expected.as_u64().unwrap(), "{key}");
        checked += 1;
    }
    assert_eq!(checked, 128);
}

#[test]
fn paper_table_parameter_column_is_reproduced() {
    // PAPER.md: (r2, r1) -> remaining head parameters at C = 128, any head.
    for (r2, r1, params) in [
        (0.7, 0.7, 41380),
        (0.7, 0.9, 15166),
        (0.8, 0.7, 40868),
        (0.9, 0.7, 40356),
        (0.95, 0.7, 40100),
        (0.95, 0.95, 7332),
    ] {
        let mut net = CifarNet::new(CifarConfig::paper(HeadKind::SparseMorph { bn: true }, 128), 1);
        assert_eq!(prune_head(&mut net.head, r1, r2).unwrap().params, params, "r1 {r1} r2 {r2}");
    }
}

#[test]
fn pruned_maxplus_weights_never_win_again_and_sparsity_is_measured() {
    let mut net = CifarNet::new(CifarConfig::paper(HeadKind::DenseMorph { bn: true }, 8), 3);
    let report = prune_head(&mut net.head, 0.9, 0.9).unwrap();
    let mp = report.layers.iter().find(|l| l.layer == "maxplus").unwrap();
    assert!((mp.sparsity - 0.95).abs() < 0.01, "{mp:?}");
    let d1 = report.layers.iter().find(|l| l.layer == "dense1").unwrap();
    assert!((d1.sparsity - 0.95).abs() < 0.01, "{d1:?}");
}

#[test]
fn bad_ratios_and_the_zhang_head_are_errors() {
    let mut net = CifarNet::new(CifarConfig::paper(HeadKind::Relu, 8), 3);
    let err = prune_head(&mut net.head, 1.5, 0.9).unwrap_err().to_string();
    assert!(err.contains("1.5") && err.contains("[0, 1]"), "{err}");
    let mut z = CifarNet::new(CifarConfig::paper(HeadKind::Zhang, 8), 3);
    assert!(prune_head(&mut z.head, 0.9, 0.9).unwrap_err().to_string().contains("zhang"));
}
