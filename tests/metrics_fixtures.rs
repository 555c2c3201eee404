//! ROC-AUC and PR-AUC against scikit-learn (`metrics_*` fixtures, ties
//! included): per tag and macro, to 1e-6.

mod common;

use common::*;
use morphgrad::metrics::tag_metrics;

#[test]
fn tag_metrics_match_scikit_learn() {
    for case in ["metrics_0", "metrics_1", "metrics_2", "metrics_ties"] {
        let Some(d) = fixture(case) else { return };
        let (y, s) = (f32s(&d, "y_true"), f32s(&d, "y_score"));
        let m = tag_metrics(y.as_slice().unwrap(), s.as_slice().unwrap(), y.shape()[1]).unwrap();
        let roc = morphgrad::io::read_npy::<f64>(&d.join("roc_auc_per_tag.npy")).unwrap();
        let pr = morphgrad::io::read_npy::<f64>(&d.join("pr_auc_per_tag.npy")).unwrap();
        for t in 0..y.shape()[1] {
            assert!((m.roc_auc_per_tag[t].unwrap() - roc[t]).abs() < 1e-6, "{case} roc tag {t}");
            assert!((m.pr_auc_per_tag[t].unwrap() - pr[t]).abs() < 1e-6, "{case} pr tag {t}");
        }
        let p = manifest_params(case);
        assert!((m.roc_auc - p["roc_auc_macro"].as_f64().unwrap()).abs() < 1e-6, "{case} macro roc {}", m.roc_auc);
        assert!((m.pr_auc - p["pr_auc_macro"].as_f64().unwrap()).abs() < 1e-6, "{case} macro pr {}", m.pr_auc);
        assert_eq!(m.skipped_tags, 0);
    }
}
