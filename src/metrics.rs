//! Classification and tagging metrics: accuracy, and ROC-AUC and average
//! precision (PR-AUC) computed exactly as scikit-learn does, ties included.

use anyhow::{Result, bail};

/// Area under the ROC curve of one tag: the probability that a random
/// positive scores above a random negative, ties counting one half
/// (= the trapezoidal area of scikit-learn's `roc_auc_score`).
/// `None` when the tag has no positive or no negative.
pub fn roc_auc(truth: &[bool], score: &[f64]) -> Option<f64> {
    let order = sorted_by_score(score);
    let pos = truth.iter().filter(|&&t| t).count();
    let neg = truth.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Mann–Whitney U with mid-ranks for tied scores.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0; // ranks are 1-based, ascending
        rank_sum += mid_rank * order[i..=j].iter().filter(|&&k| truth[k]).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

/// Average precision of one tag, as scikit-learn's
/// `average_precision_score`: `Σ_k (R_k - R_{k-1}) P_k` over the distinct
/// score thresholds, from high to low (tied scores form one step).
/// `None` when the tag has no positive.
pub fn average_precision(truth: &[bool], score: &[f64]) -> Option<f64> {
    let pos = truth.iter().filter(|&&t| t).count();
    if pos == 0 {
        return None;
    }
    let mut order = sorted_by_score(score);
    order.reverse();
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if truth[k] { tp += 1 } else { fp += 1 }
        }
        let recall = tp as f64 / pos as f64;
        ap += (recall - prev_recall) * tp as f64 / (tp + fp) as f64;
        prev_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// Indices of `score` in ascending order (stable).
fn sorted_by_score(score: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    order
}

/// Per-tag and macro-averaged ROC-AUC and PR-AUC of a `[n, tags]` score
/// matrix (row-major) against 0/1 labels.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TagMetrics {
    pub roc_auc_per_tag: Vec<Option<f64>>,
    pub pr_auc_per_tag: Vec<Option<f64>>,
    pub roc_auc: f64,
    pub pr_auc: f64,
    /// Tags left out of the macro averages (one class only in the labels).
    pub skipped_tags: usize,
}

/// Macro metrics over the tags; tags whose labels hold a single class are
/// left out of the averages (scikit-learn would refuse them) and counted.
pub fn tag_metrics(labels: &[f32], scores: &[f32], tags: usize) -> Result<TagMetrics> {
    if tags == 0 || labels.len() != scores.len() || !labels.len().is_multiple_of(tags) {
        bail!("tag metrics: {} labels and {} scores do not form [n, {tags}] matrices", labels.len(), scores.len());
    }
    let n = labels.len() / tags;
    let (mut rocs, mut prs) = (Vec::with_capacity(tags), Vec::with_capacity(tags));
    for t in 0..tags {
        let truth: Vec<bool> = (0..n).map(|i| labels[i * tags + t] > 0.5).collect();
        let score: Vec<f64> = (0..n).map(|i| scores[i * tags + t] as f64).collect();
        rocs.push(roc_auc(&truth, &score));
        prs.push(average_precision(&truth, &score).filter(|_| rocs[t].is_some()));
    }
    let mean = |v: &[Option<f64>]| {
        let ok: Vec<f64> = v.iter().flatten().copied().collect();
        if ok.is_empty() { f64::NAN } else { ok.iter().sum::<f64>() / ok.len() as f64 }
    };
    let skipped_tags = rocs.iter().filter(|r| r.is_none()).count();
    Ok(TagMetrics {
        roc_auc: mean(&rocs),
        pr_auc: mean(&prs),
        roc_auc_per_tag: rocs,
        pr_auc_per_tag: prs,
        skipped_tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_reversed_rankings() {
        let t = [true, false, true, false];
        assert_eq!(roc_auc(&t, &[0.9, 0.1, 0.8, 0.2]), Some(1.0));
        assert_eq!(roc_auc(&t, &[0.1, 0.9, 0.2, 0.8]), Some(0.0));
        assert_eq!(average_precision(&t, &[0.9, 0.1, 0.8, 0.2]), Some(1.0));
    }

    #[test]
    fn all_tied_scores_give_chance_auc_and_prevalence_ap() {
        let t = [true, false, false, false];
        assert_eq!(roc_auc(&t, &[0.5; 4]), Some(0.5));
        assert_eq!(average_precision(&t, &[0.5; 4]), Some(0.25));
    }

    #[test]
    fn single_class_tags_are_undefined() {
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(average_precision(&[false, false], &[0.1, 0.2]), None);
    }
}
