//! Mean and standard deviation as the paper reports them ("mean ± std").

/// Mean and population standard deviation (`numpy.std`, ddof = 0).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// `"78.98 ± 0.76"` with `digits` decimals.
pub fn fmt_mean_std(v: &[f64], digits: usize) -> String {
    let (m, s) = mean_std(v);
    format!("{m:.digits$} ± {s:.digits$}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn mean_std_matches_numpy_population_std() {
        let (m, s) = super::mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.118_033_988_749_895).abs() < 1e-12);
    }
}
