//! MTAT results: `results.json`, `results.csv`, `table.md` (unpruned ROC-AUC
//! and PR-AUC per head, then the pruning grid) and the convergence figure
//! (validation ROC-AUC and PR-AUC per epoch, mean over seeds, 90 % band,
//! log epoch axis — the paper's figure).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::RunId;
use super::mtat::{MtatEpochLog, MtatProtocol, MtatRun};
use super::plots::{Chart, Series, draw};
use super::stats::{fmt_mean_std, mean_std};
use crate::io::write_text_atomic;
use crate::models::HeadKind;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatPrunedPoint {
    pub r1: f64,
    pub r2: f64,
    pub params: usize,
    pub roc_auc: Vec<f64>,
    pub pr_auc: Vec<f64>,
    pub sparsity: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatHeadResults {
    pub seeds: Vec<u64>,
    pub test_roc_auc: Vec<f64>,
    pub test_pr_auc: Vec<f64>,
    pub best_epoch: Vec<usize>,
    pub epochs: Vec<Vec<MtatEpochLog>>,
    pub pruned: Vec<MtatPrunedPoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MtatResults {
    pub protocol: MtatProtocol,
    /// Finished runs by head id, seeds ascending.
    pub heads: BTreeMap<String, MtatHeadResults>,
    /// Runs of the grid that have a folder but no result yet.
    pub missing: Vec<RunId>,
    /// Training time summed over every epoch of every run.
    pub train_seconds: f64,
}

impl MtatResults {
    /// Gather runs (sorted by head, then seed) per head.
    pub fn from_runs(protocol: MtatProtocol, runs: &[MtatRun], missing: &[RunId]) -> MtatResults {
        let mut heads: BTreeMap<String, MtatHeadResults> = BTreeMap::new();
        for r in runs {
            let h = heads.entry(r.head.clone()).or_insert_with(|| MtatHeadResults {
                seeds: vec![],
                test_roc_auc: vec![],
                test_pr_auc: vec![],
                best_epoch: vec![],
                epochs: vec![],
                pruned: r
                    .pruned
                    .iter()
                    .map(|p| MtatPrunedPoint {
                        r1: p.r1,
                        r2: p.r2,
                        params: p.params,
                        roc_auc: vec![],
                        pr_auc: vec![],
                        sparsity: BTreeMap::new(),
                    })
                    .collect(),
            });
            h.seeds.push(r.seed);
            h.test_roc_auc.push(r.test_roc_auc);
            h.test_pr_auc.push(r.test_pr_auc);
            h.best_epoch.push(r.best_epoch);
            h.epochs.push(r.epochs.clone());
            for (agg, p) in h.pruned.iter_mut().zip(&r.pruned) {
                agg.roc_auc.push(p.roc_auc);
                agg.pr_auc.push(p.pr_auc);
                for (layer, s) in &p.sparsity {
                    *agg.sparsity.entry(layer.clone()).or_default() += s;
                }
            }
        }
        for h in heads.values_mut() {
            let n = h.seeds.len() as f64;
            for p in &mut h.pruned {
                p.sparsity.values_mut().for_each(|s| *s /= n);
            }
        }
        let train_seconds = runs.iter().flat_map(|r| &r.epochs).map(|e| e.seconds).sum();
        MtatResults { protocol, heads, missing: missing.to_vec(), train_seconds }
    }

    /// Heads in the paper's order.
    fn ordered(&self) -> Vec<(HeadKind, &MtatHeadResults)> {
        let mut v: Vec<(HeadKind, &MtatHeadResults)> =
            self.heads.iter().filter_map(|(id, h)| Some((id.parse().ok()?, h))).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Unpruned test metrics per head, then the pruning grid.
    pub fn table_md(&self) -> String {
        let heads = self.ordered();
        let mut s = String::from("| head | seeds | ROC-AUC | PR-AUC | best epoch |\n|---|---|---|---|---|\n");
        for (k, h) in &heads {
            let best: Vec<String> = h.best_epoch.iter().map(|e| e.to_string()).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                k.label(),
                h.seeds.len(),
                fmt_mean_std(&h.test_roc_auc, 4),
                fmt_mean_std(&h.test_pr_auc, 4),
                best.join(", ")
            );
        }
        let pruned: Vec<&(HeadKind, &MtatHeadResults)> = heads.iter().filter(|(_, h)| !h.pruned.is_empty()).collect();
        if let Some((_, first)) = pruned.first() {
            let names: Vec<String> = pruned.iter().map(|(k, _)| format!("{} ROC / PR", k.label())).collect();
            let _ = writeln!(s, "\nAfter pruning (test, mean ± std):\n\n| r2 | r1 | params | {} |", names.join(" | "));
            let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(pruned.len()));
            for point in &first.pruned {
                let cells: Vec<String> = pruned
                    .iter()
                    .map(|(_, h)| {
                        h.pruned.iter().find(|q| q.r1 == point.r1 && q.r2 == point.r2).map_or("–".into(), |q| {
                            format!("{} / {}", fmt_mean_std(&q.roc_auc, 4), fmt_mean_std(&q.pr_auc, 4))
                        })
                    })
                    .collect();
                let _ = writeln!(s, "| {} | {} | {} | {} |", point.r2, point.r1, point.params, cells.join(" | "));
            }
        }
        if !self.missing.is_empty() {
            let list: Vec<String> = self.missing.iter().map(|m| m.to_string()).collect();
            let _ = writeln!(s, "\nNot finished yet, so not in these tables: {}.", list.join(", "));
        }
        s
    }

    pub fn csv(&self) -> String {
        let mut s = String::from("head,seed,r1,r2,params,roc_auc,pr_auc\n");
        for (k, h) in self.ordered() {
            for (i, seed) in h.seeds.iter().enumerate() {
                let _ = writeln!(s, "{},{seed},0,0,,{:.6},{:.6}", k.id(), h.test_roc_auc[i], h.test_pr_auc[i]);
                for p in &h.pruned {
                    let _ = writeln!(
                        s,
                        "{},{seed},{},{},{},{:.6},{:.6}",
                        k.id(),
                        p.r1,
                        p.r2,
                        p.params,
                        p.roc_auc[i],
                        p.pr_auc[i]
                    );
                }
            }
        }
        s
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        write_text_atomic(&dir.join("results.json"), &serde_json::to_string_pretty(self)?)?;
        write_text_atomic(&dir.join("results.csv"), &self.csv())?;
        write_text_atomic(&dir.join("table.md"), &self.table_md())?;
        let roc: fn(&MtatEpochLog) -> f64 = |e| e.val_roc_auc;
        let pr: fn(&MtatEpochLog) -> f64 = |e| e.val_pr_auc;
        for (metric, name, stem) in
            [(roc, "validation ROC-AUC", "convergence_roc_auc"), (pr, "validation PR-AUC", "convergence_pr_auc")]
        {
            let series = self
                .ordered()
                .into_iter()
                .map(|(k, h)| {
                    let n = h.epochs.iter().map(Vec::len).min().unwrap_or(0);
                    let stats: Vec<(f64, f64, f64)> = (0..n)
                        .map(|e| {
                            let (m, sd) = mean_std(&h.epochs.iter().map(|run| metric(&run[e])).collect::<Vec<_>>());
                            ((e + 1) as f64, m, 1.645 * sd)
                        })
                        .collect();
                    Series {
                        name: k.label(),
                        points: stats.iter().map(|&(x, m, _)| (x, m)).collect(),
                        band: stats.iter().map(|&(x, m, b)| (x, m - b, m + b)).collect(),
                        line: true,
                        ..Series::default()
                    }
                })
                .collect();
            let title = format!("{name} per epoch (mean over seeds, 90% band)");
            draw(
                &Chart {
                    title: &title,
                    x_label: "epoch (log scale)",
                    y_label: name,
                    log_x: true,
                    series,
                    ..Chart::default()
                },
                &dir.join(stem),
            )?;
        }
        Ok(())
    }
}
