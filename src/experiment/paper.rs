//! The paper's own CIFAR-10 numbers (its Table 1, as `PAPER.md` gives
//! them), and a reproduction's table set beside them, cell by cell.
//!
//! Only a run of the paper's protocol is compared: at another width or
//! schedule the paper's numbers are a different experiment's.

use std::fmt::Write;

use super::cifar::CifarProtocol;
use super::cifar_report::CifarResults;
use super::stats::{fmt_mean_std, mean_std};
use crate::models::HeadKind;

/// The paper's four heads, in its column order.
const HEADS: [HeadKind; 4] =
    [HeadKind::Relu, HeadKind::Maxout, HeadKind::DenseMorph { bn: true }, HeadKind::SparseMorph { bn: true }];

/// Unpruned test accuracy (%), mean ± std of 5 seeds, per head of [`HEADS`].
const UNPRUNED: [(f64, f64); 4] = [(78.98, 0.76), (78.17, 0.86), (77.78, 0.72), (78.32, 0.50)];

/// The pruned rows: `(r2, r1, remaining head parameters, mean test accuracy
/// per head of [`HEADS`])`; the paper gives no spread for these.
const PRUNED: [(f64, f64, usize, [f64; 4]); 6] = [
    (0.7, 0.7, 41380, [69.57, 34.89, 29.83, 74.13]),
    (0.7, 0.9, 15166, [27.78, 15.41, 17.14, 34.16]),
    (0.8, 0.7, 40868, [62.36, 34.42, 24.83, 72.40]),
    (0.9, 0.7, 40356, [44.77, 35.34, 19.61, 70.31]),
    (0.95, 0.7, 40100, [36.49, 32.21, 22.11, 67.36]),
    (0.95, 0.95, 7332, [11.31, 14.20, 12.65, 14.69]),
];

/// Does `p` train the paper's models the paper's way (the data may differ)?
fn is_papers(p: &CifarProtocol) -> bool {
    let paper = CifarProtocol::paper();
    (p.channels, p.hidden, p.sparse_k, p.epochs, p.batch_size)
        == (paper.channels, paper.hidden, paper.sparse_k, paper.epochs, paper.batch_size)
        && p.lr == paper.lr
        && p.dropout == paper.dropout
}

/// The reproduction beside the paper: for the unpruned row and each of the
/// paper's six pruned rows, every head's mean ± std over seeds, the paper's
/// value and the difference (ours − paper). Empty unless `results` follow
/// the paper's protocol.
pub fn cifar_against_paper(results: &CifarResults) -> String {
    if !is_papers(&results.protocol) {
        return String::new();
    }
    let mut s = String::from(
        "\n## Against the paper\n\nTest accuracy (%), ours as mean ± std over our seeds (n), the paper's as the \
         mean of its 5 seeds (± std where it gives one), and ours − paper in points. Params: remaining head \
         parameters, ours and the paper's.\n\n| r2 | r1 | params, ours | params, paper | head | ours | paper | ours − paper \
         |\n|---|---|---|---|---|---|---|---|\n",
    );
    // `cell`: r2, r1, our params and the paper's.
    let row = |s: &mut String, cell: [&str; 4], head: HeadKind, ours: Option<&[f64]>, paper: String, p: f64| {
        let [r2, r1, params, paper_params] = cell;
        let (ours, diff) = match ours.filter(|v| !v.is_empty()) {
            Some(v) => (format!("{} (n={})", fmt_mean_std(v, 2), v.len()), format!("{:+.2}", mean_std(v).0 - p)),
            None => ("–".into(), "–".into()),
        };
        let _ =
            writeln!(s, "| {r2} | {r1} | {params} | {paper_params} | {} | {ours} | {paper} | {diff} |", head.label());
    };
    for (k, head) in HEADS.iter().enumerate() {
        let ours = results.heads.get(&head.id()).map(|h| h.unpruned_test_acc.as_slice());
        let (m, sd) = UNPRUNED[k];
        row(&mut s, ["–", "–", "unpruned", "unpruned"], *head, ours, format!("{m:.2} ± {sd:.2}"), m);
    }
    for (r2, r1, paper_params, accs) in PRUNED {
        for (k, head) in HEADS.iter().enumerate() {
            let point = results.heads.get(&head.id()).and_then(|h| h.pruned.iter().find(|p| p.r2 == r2 && p.r1 == r1));
            let params = point.map_or("–".to_string(), |p| p.params.to_string());
            let (r2s, r1s, paper_params) = (r2.to_string(), r1.to_string(), paper_params.to_string());
            row(
                &mut s,
                [&r2s, &r1s, &params, &paper_params],
                *head,
                point.map(|p| p.test_acc.as_slice()),
                format!("{:.2}", accs[k]),
                accs[k],
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::experiment::cifar_report::{HeadResults, PrunedPoint};

    fn head(unpruned: Vec<f64>, at_07_07: Vec<f64>) -> HeadResults {
        HeadResults {
            seeds: (0..unpruned.len() as u64).collect(),
            unpruned_test_acc: unpruned,
            best_epoch: vec![],
            epochs: vec![],
            pruned: vec![PrunedPoint {
                r1: 0.7,
                r2: 0.7,
                params: 41380,
                test_acc: at_07_07,
                sparsity: BTreeMap::new(),
            }],
            first_layer_abs_weights: vec![],
        }
    }

    #[test]
    fn a_paper_protocol_run_is_set_beside_the_papers_cells_and_others_are_not() {
        let mut heads = BTreeMap::new();
        heads.insert("relu".to_string(), head(vec![76.0, 78.0], vec![60.0, 70.0]));
        heads.insert("maxout".to_string(), head(vec![75.5], vec![40.0]));
        let mut results = CifarResults { protocol: CifarProtocol::paper(), heads, missing: vec![], train_seconds: 0.0 };
        let md = cifar_against_paper(&results);
        assert!(
            md.contains("| – | – | unpruned | unpruned | ReLU | 77.00 ± 1.00 (n=2) | 78.98 ± 0.76 | -1.98 |"),
            "{md}"
        );
        assert!(md.contains("| 0.7 | 0.7 | 41380 | 41380 | ReLU | 65.00 ± 5.00 (n=2) | 69.57 | -4.57 |"), "{md}");
        assert!(
            md.contains("| – | – | unpruned | unpruned | Maxout | 75.50 (n=1) | 78.17 ± 0.86 | -2.67 |"),
            "one seed, no spread: {md}"
        );
        // Heads or cells without runs stay in the table, empty.
        assert!(md.contains("| 0.95 | 0.95 | – | 7332 | Sparse-Morph | – | 14.69 | – |"), "{md}");
        assert_eq!(md.matches("\n| ").count(), 1 + 4 * 7, "the header and 4 heads × 7 rows");
        for line in md.lines().filter(|l| l.starts_with('|')) {
            assert_eq!(line.matches('|').count(), 9, "every row has the header's 8 cells: {line}");
        }
        results.protocol.channels = 32;
        assert_eq!(cifar_against_paper(&results), "", "another width is another experiment");
    }
}
