//! CIFAR-10 results: `results.json` (every number, per seed), `results.csv`,
//! the paper's table as `table.md` (with the paper's own numbers beside ours
//! for a run of its protocol, [`super::paper`]) and `table.tex`, and the plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::RunId;
use super::cifar::{CifarProtocol, CifarRun, EpochLog, Histogram};
use super::plots::{Chart, Series, draw, draw_panels};
use super::stats::{Welch, fmt_mean_std, holm, mean_std, welch};
use crate::io::write_text_atomic;
use crate::models::HeadKind;

/// One grid point of a head, over seeds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrunedPoint {
    pub r1: f64,
    pub r2: f64,
    pub params: usize,
    /// Percent, one per seed.
    pub test_acc: Vec<f64>,
    /// Mean measured sparsity per layer.
    pub sparsity: BTreeMap<String, f64>,
}

/// One head over seeds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HeadResults {
    pub seeds: Vec<u64>,
    pub unpruned_test_acc: Vec<f64>,
    pub best_epoch: Vec<usize>,
    pub epochs: Vec<Vec<EpochLog>>,
    pub pruned: Vec<PrunedPoint>,
    pub first_layer_abs_weights: Vec<Histogram>,
}

/// One head against another in one cell of the table (`r2`, `r1` = `None`: unpruned).
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub head: String,
    pub other: String,
    pub r2: Option<f64>,
    pub r1: Option<f64>,
    /// `None` when the test is undefined (fewer than two seeds, or no spread).
    pub welch: Option<Welch>,
    /// Welch's p adjusted by Holm's method over the cells of this pair of
    /// heads (the family of tests a reader scans for "any difference").
    pub p_holm: Option<f64>,
}

/// A p value to two significant digits (`< 0.0001` below that).
fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".into()
    } else if p < 0.01 {
        format!("{p:.4}")
    } else {
        format!("{p:.2}")
    }
}

/// The whole reproduction (`results.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CifarResults {
    pub protocol: CifarProtocol,
    /// Finished runs by head id, seeds ascending.
    pub heads: BTreeMap<String, HeadResults>,
    /// Runs of the grid that have a folder but no result yet.
    pub missing: Vec<RunId>,
    /// Training time summed over every epoch of every run.
    pub train_seconds: f64,
}

impl CifarResults {
    /// Gather runs (sorted by head, then seed) per head.
    pub fn from_runs(protocol: CifarProtocol, runs: &[CifarRun], missing: &[RunId]) -> CifarResults {
        let mut heads: BTreeMap<String, HeadResults> = BTreeMap::new();
        for r in runs {
            let h = heads.entry(r.head.clone()).or_insert_with(|| HeadResults {
                seeds: vec![],
                unpruned_test_acc: vec![],
                best_epoch: vec![],
                epochs: vec![],
                pruned: r
                    .pruned
                    .iter()
                    .map(|p| PrunedPoint {
                        r1: p.r1,
                        r2: p.r2,
                        params: p.params,
                        test_acc: vec![],
                        sparsity: BTreeMap::new(),
                    })
                    .collect(),
                first_layer_abs_weights: vec![],
            });
            h.seeds.push(r.seed);
            h.unpruned_test_acc.push(r.unpruned_test_acc);
            h.best_epoch.push(r.best_epoch);
            h.epochs.push(r.epochs.clone());
            h.first_layer_abs_weights.push(r.first_layer_abs_weights.clone());
            for (agg, p) in h.pruned.iter_mut().zip(&r.pruned) {
                agg.test_acc.push(p.test_acc);
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
        CifarResults { protocol, heads, missing: missing.to_vec(), train_seconds }
    }

    /// Heads in the paper's order.
    fn ordered(&self) -> Vec<(HeadKind, &HeadResults)> {
        let mut v: Vec<(HeadKind, &HeadResults)> =
            self.heads.iter().filter_map(|(id, h)| Some((id.parse().ok()?, h))).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Column names: the head and the number of seeds its cells average.
    fn columns(&self) -> Vec<String> {
        self.ordered().iter().map(|(k, h)| format!("{} (n={})", k.label(), h.seeds.len())).collect()
    }

    /// The paper's layout: rows (r2, r1, params), a column per head, mean ± std.
    pub fn table_md(&self) -> String {
        let heads = self.ordered();
        let mut s = String::new();
        let _ = writeln!(s, "| r2 | r1 | params | {} |", self.columns().join(" | "));
        let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(heads.len()));
        let cells: Vec<String> = heads.iter().map(|(_, h)| fmt_mean_std(&h.unpruned_test_acc, 2)).collect();
        let _ = writeln!(s, "| – | – | unpruned | {} |", cells.join(" | "));
        for (r2, r1, params) in self.grid_rows() {
            let cells: Vec<String> = heads
                .iter()
                .map(|(_, h)| {
                    h.pruned
                        .iter()
                        .find(|p| p.r1 == r1 && p.r2 == r2)
                        .map_or("–".into(), |p| fmt_mean_std(&p.test_acc, 2))
                })
                .collect();
            let _ = writeln!(s, "| {r2} | {r1} | {params} | {} |", cells.join(" | "));
        }
        for note in self.param_notes() {
            let _ = writeln!(s, "\n{note}");
        }
        if !self.missing.is_empty() {
            let list: Vec<String> = self.missing.iter().map(|m| m.to_string()).collect();
            let _ = writeln!(s, "\nNot finished yet, so not in this table: {}.", list.join(", "));
        }
        s.push_str(&self.comparison_md());
        s.push_str(&super::paper::cifar_against_paper(self));
        s
    }

    /// Sparse-Morph against every other head, cell by cell: the difference
    /// of mean test accuracy and Welch's t-test over seeds (empty without a
    /// Sparse-Morph head and another one).
    pub fn comparisons(&self) -> Vec<Comparison> {
        let heads = self.ordered();
        let Some((sparse, s)) = heads.iter().find(|(k, _)| matches!(k, HeadKind::SparseMorph { .. })) else {
            return vec![];
        };
        let mut out = Vec::new();
        for (other, o) in heads.iter().filter(|(k, _)| k != sparse) {
            let mut family = Vec::new();
            let mut cell = |r2: Option<f64>, r1: Option<f64>, a: &[f64], b: &[f64]| {
                family.push(Comparison {
                    head: sparse.id(),
                    other: other.id(),
                    r2,
                    r1,
                    welch: welch(a, b),
                    p_holm: None,
                });
            };
            cell(None, None, &s.unpruned_test_acc, &o.unpruned_test_acc);
            for p in &s.pruned {
                if let Some(q) = o.pruned.iter().find(|q| q.r1 == p.r1 && q.r2 == p.r2) {
                    cell(Some(p.r2), Some(p.r1), &p.test_acc, &q.test_acc);
                }
            }
            let adjusted = holm(&family.iter().map(|c| c.welch.map(|w| w.p)).collect::<Vec<_>>());
            for (c, p) in family.iter_mut().zip(adjusted) {
                c.p_holm = p;
            }
            out.extend(family);
        }
        out
    }

    /// [`comparisons`](Self::comparisons) as a Markdown table.
    fn comparison_md(&self) -> String {
        let rows = self.comparisons();
        let Some(first) = rows.first() else { return String::new() };
        let others: Vec<String> = rows.iter().map(|c| c.other.clone()).fold(vec![], |mut v, o| {
            if !v.contains(&o) {
                v.push(o);
            }
            v
        });
        let label = |id: &str| id.parse::<HeadKind>().map_or(id.to_string(), |k| k.label());
        let mut s = format!(
            "\n{} minus each other head: difference of mean test accuracy (points), Welch's two-sided p over \
             seeds (sample variances), and that p adjusted by Holm's method over the {} cells of the pair (below \
             0.05: a difference at the 5 % level with the family-wise error held there; `–`: fewer than two seeds \
             or no spread on either side).\n\n| r2 | r1 | {} |\n|---|---|{}\n",
            label(&first.head),
            rows.iter().filter(|c| c.other == first.other).count(),
            others.iter().map(|o| format!("vs {}", label(o))).collect::<Vec<_>>().join(" | "),
            "---|".repeat(others.len())
        );
        let mut cells: Vec<(Option<f64>, Option<f64>)> = rows.iter().map(|c| (c.r2, c.r1)).collect();
        cells.dedup();
        cells.sort_by(|a, b| {
            a.0.unwrap_or(-1.0)
                .total_cmp(&b.0.unwrap_or(-1.0))
                .then(a.1.unwrap_or(-1.0).total_cmp(&b.1.unwrap_or(-1.0)))
        });
        cells.dedup();
        for (r2, r1) in cells {
            let text: Vec<String> = others
                .iter()
                .map(|o| {
                    rows.iter()
                        .find(|c| &c.other == o && c.r2 == r2 && c.r1 == r1)
                        .and_then(|c| Some((c.welch?, c.p_holm?)))
                        .map_or("–".into(), |(w, h)| {
                            let p = if w.p < 1e-4 { "p < 0.0001".to_string() } else { format!("p = {}", fmt_p(w.p)) };
                            format!("{:+.2} ({p}, Holm {})", w.diff, fmt_p(h))
                        })
                })
                .collect();
            let show = |r: Option<f64>| r.map_or("–".to_string(), |r| r.to_string());
            let _ = writeln!(s, "| {} | {} | {} |", show(r2), show(r1), text.join(" | "));
        }
        s
    }

    /// The same table for LaTeX (booktabs).
    pub fn table_tex(&self) -> String {
        let heads = self.ordered();
        let mut s = String::new();
        let _ = writeln!(s, "\\begin{{tabular}}{{rrr{}}}\n\\toprule", "c".repeat(heads.len()));
        let _ = writeln!(s, "$r_2$ & $r_1$ & params & {} \\\\\n\\midrule", self.columns().join(" & "));
        let pm = |v: &[f64]| {
            let (m, sd) = mean_std(v);
            format!("${m:.2} \\pm {sd:.2}$")
        };
        let cells: Vec<String> = heads.iter().map(|(_, h)| pm(&h.unpruned_test_acc)).collect();
        let _ = writeln!(s, "\\multicolumn{{3}}{{l}}{{unpruned}} & {} \\\\\n\\midrule", cells.join(" & "));
        for (r2, r1, params) in self.grid_rows() {
            let cells: Vec<String> = heads
                .iter()
                .map(|(_, h)| {
                    h.pruned.iter().find(|p| p.r1 == r1 && p.r2 == r2).map_or("--".into(), |p| pm(&p.test_acc))
                })
                .collect();
            let _ = writeln!(s, "{r2} & {r1} & {params} & {} \\\\", cells.join(" & "));
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n");
        s
    }

    /// `(r2, r1, params)` rows, sorted like the paper; `params` of the first
    /// head that has the point.
    fn grid_rows(&self) -> Vec<(f64, f64, usize)> {
        let mut rows: Vec<(f64, f64, usize)> = Vec::new();
        for (_, h) in self.ordered() {
            for p in &h.pruned {
                if !rows.iter().any(|r| r.0 == p.r2 && r.1 == p.r1) {
                    rows.push((p.r2, p.r1, p.params));
                }
            }
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        rows
    }

    /// Heads whose remaining-parameter count differs from the params column.
    fn param_notes(&self) -> Vec<String> {
        let rows = self.grid_rows();
        self.ordered()
            .into_iter()
            .filter(|(_, h)| {
                h.pruned.iter().any(|p| rows.iter().any(|r| r.0 == p.r2 && r.1 == p.r1 && r.2 != p.params))
            })
            .map(|(k, h)| {
                let counts: Vec<String> =
                    h.pruned.iter().map(|p| format!("({}, {}) {}", p.r2, p.r1, p.params)).collect();
                format!(
                    "{} keeps a different number of head parameters (r2, r1 → params): {}.",
                    k.label(),
                    counts.join(", ")
                )
            })
            .collect()
    }

    /// Long format: one row per head, seed and grid point (r1 = r2 = 0: unpruned).
    pub fn csv(&self) -> String {
        let mut s = String::from("head,seed,r1,r2,params,test_acc\n");
        for (kind, h) in self.ordered() {
            for (i, seed) in h.seeds.iter().enumerate() {
                let _ = writeln!(s, "{},{seed},0,0,,{:.4}", kind.id(), h.unpruned_test_acc[i]);
                for p in &h.pruned {
                    let _ = writeln!(s, "{},{seed},{},{},{},{:.4}", kind.id(), p.r1, p.r2, p.params, p.test_acc[i]);
                }
            }
        }
        s
    }

    /// Write every output file into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_text_atomic(&dir.join("results.json"), &serde_json::to_string_pretty(self)?)?;
        write_text_atomic(&dir.join("results.csv"), &self.csv())?;
        let mut welch_csv = String::from("head,other,r2,r1,diff,t,df,p,p_holm\n");
        for c in self.comparisons() {
            let show = |r: Option<f64>| r.map_or(String::new(), |r| r.to_string());
            let w = c.welch.map_or(",,,,".to_string(), |w| {
                format!("{:.4},{:.4},{:.3},{:.6},{:.6}", w.diff, w.t, w.df, w.p, c.p_holm.unwrap_or(f64::NAN))
            });
            let _ = writeln!(welch_csv, "{},{},{},{},{w}", c.head, c.other, show(c.r2), show(c.r1));
        }
        write_text_atomic(&dir.join("welch.csv"), &welch_csv)?;
        write_text_atomic(&dir.join("table.md"), &self.table_md())?;
        write_text_atomic(&dir.join("table.tex"), &self.table_tex())?;
        self.plots(dir)
    }

    fn plots(&self, dir: &Path) -> Result<()> {
        let heads = self.ordered();
        let val_acc: Vec<Series> = heads
            .iter()
            .map(|(k, h)| {
                let epochs = h.epochs.iter().map(Vec::len).min().unwrap_or(0);
                let stats: Vec<(f64, f64, f64)> = (0..epochs)
                    .map(|e| {
                        let (m, s) = mean_std(&h.epochs.iter().map(|run| run[e].val_acc).collect::<Vec<_>>());
                        ((e + 1) as f64, m, s)
                    })
                    .collect();
                Series {
                    name: k.label(),
                    points: stats.iter().map(|&(x, m, _)| (x, m)).collect(),
                    band: stats.iter().map(|&(x, m, s)| (x, m - s, m + s)).collect(),
                    line: true,
                    ..Series::default()
                }
            })
            .collect();
        let title = "Validation accuracy per epoch (mean ± std over seeds)";
        let chart =
            Chart { title, x_label: "epoch", y_label: "validation accuracy (%)", series: val_acc, ..Chart::default() };
        draw(&chart, &dir.join("val_acc"))?;
        self.pruning_figure(dir)?;

        let hist: Vec<Series> = heads
            .iter()
            .filter_map(|(k, h)| {
                let hg = h.first_layer_abs_weights.first()?;
                let total = hg.counts.iter().sum::<usize>().max(1) as f64;
                let width = hg.max as f64 / hg.counts.len() as f64;
                let points = hg
                    .counts
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| ((i as f64 + 0.5) * width, 100.0 * c as f64 / total))
                    .collect();
                Some(Series { name: k.label(), points, line: true, ..Series::default() })
            })
            .collect();
        let title = "|w| of the first head layer (first seed): induced sparsity";
        let chart = Chart { title, x_label: "|w|", y_label: "share of weights (%)", series: hist, ..Chart::default() };
        draw(&chart, &dir.join("weight_hist"))
    }

    /// The paper's pruning table as a figure: one panel per r2, test accuracy
    /// against r1, a line per head with mean ± std error bars; the numbers
    /// behind it in `acc_vs_r1.csv`.
    fn pruning_figure(&self, dir: &Path) -> Result<()> {
        let heads: Vec<(HeadKind, &HeadResults)> =
            self.ordered().into_iter().filter(|(_, h)| !h.pruned.is_empty()).collect();
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        };
        let points = || heads.iter().flat_map(|(_, h)| &h.pruned);
        let (r2s, r1s) = (sorted(points().map(|p| p.r2).collect()), sorted(points().map(|p| p.r1).collect()));
        if r1s.is_empty() {
            return Ok(());
        }
        let mut csv = String::from("head,r2,r1,params,seeds,mean_test_acc,std_test_acc\n");
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let titles: Vec<String> = r2s.iter().map(|r2| format!("last layer pruned: r2 = {r2}")).collect();
        let mut panels: Vec<Chart> = Vec::new();
        for (r2, title) in r2s.iter().zip(&titles) {
            let mut series = Vec::new();
            for (i, (kind, h)) in heads.iter().enumerate() {
                // Heads side by side around each r1, so that their error bars do not overlap.
                let dodge = (i as f64 - (heads.len() as f64 - 1.0) / 2.0) * 0.06;
                let mut s = Series { name: kind.label(), line: true, bars: true, ..Series::default() };
                for (x, p) in r1s
                    .iter()
                    .enumerate()
                    .filter_map(|(x, r1)| Some((x as f64, h.pruned.iter().find(|p| p.r2 == *r2 && p.r1 == *r1)?)))
                {
                    let (m, sd) = mean_std(&p.test_acc);
                    let _ = writeln!(
                        csv,
                        "{},{},{},{},{},{m:.4},{sd:.4}",
                        kind.id(),
                        p.r2,
                        p.r1,
                        p.params,
                        p.test_acc.len()
                    );
                    (lo, hi) = (lo.min(m - sd), hi.max(m + sd));
                    s.points.push((x + dodge, m));
                    s.band.push((x + dodge, m - sd, m + sd));
                }
                series.push(s);
            }
            panels.push(Chart {
                title,
                x_label: "r1: fraction of the first head layer pruned",
                y_label: "test accuracy (%)",
                series,
                x_categories: r1s.iter().map(|r| r.to_string()).collect(),
                ..Chart::default()
            });
        }
        // One y range for every panel, so that panels compare at a glance.
        let range = Some((((lo - 1.0) / 5.0).floor() * 5.0, ((hi + 1.0) / 5.0).ceil() * 5.0));
        panels.iter_mut().for_each(|c| c.y_range = range);
        write_text_atomic(&dir.join("acc_vs_r1.csv"), &csv)?;
        let title = "Test accuracy after pruning, mean ± std over seeds (n per head in table.md)";
        draw_panels(title, &panels, 2, &dir.join("acc_vs_r1"))
    }
}
