//! Mean and standard deviation as the paper reports them ("mean ± std"),
//! and Welch's t-test for whether two heads differ by more than the
//! seed-to-seed spread explains.

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

/// `"78.98 ± 0.76"` with `digits` decimals; one value alone has no spread
/// to show, so it is printed bare.
pub fn fmt_mean_std(v: &[f64], digits: usize) -> String {
    let (m, s) = mean_std(v);
    if v.len() == 1 { format!("{m:.digits$}") } else { format!("{m:.digits$} ± {s:.digits$}") }
}

/// Welch's unequal-variance t-test of `mean(a) - mean(b)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Welch {
    pub diff: f64,
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p value: the chance of a |t| this large if both means were equal.
    pub p: f64,
}

/// Welch's t-test with sample variances (ddof = 1), as
/// `scipy.stats.ttest_ind(a, b, equal_var=False)`. `None` when a side has
/// fewer than two values or both have no spread (t is then undefined).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let var = |v: &[f64]| {
        let (m, sd) = mean_std(v);
        (m, sd * sd * v.len() as f64 / (v.len() - 1) as f64 / v.len() as f64)
    };
    let ((ma, va), (mb, vb)) = (var(a), var(b));
    if va + vb == 0.0 {
        return None;
    }
    let t = (ma - mb) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (a.len() - 1) as f64 + vb * vb / (b.len() - 1) as f64);
    // P(|T| > |t|) for Student's t with df degrees of freedom is I_x(df/2, 1/2), x = df / (df + t²).
    let p = regularized_beta(df / (df + t * t), df / 2.0, 0.5);
    Some(Welch { diff: ma - mb, t, df, p })
}

/// Holm's step-down adjustment of a family of p values (as
/// `statsmodels.stats.multitest.multipletests(p, method="holm")`): sorted
/// ascending, the k-th smallest of m is multiplied by `m - k + 1` (k from 1),
/// the results made non-decreasing in that order and capped at 1. A family
/// member below α after adjustment is significant with the chance of any
/// false positive in the whole family at most α. `None`s (undefined tests)
/// stay `None` and do not count towards `m`.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    order.sort_by(|&a, &b| p[a].unwrap().total_cmp(&p[b].unwrap()));
    let m = order.len();
    let mut out = vec![None; p.len()];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max((p[i].unwrap() * (m - k) as f64).min(1.0));
        out[i] = Some(running);
    }
    out
}

/// The regularized incomplete beta function `I_x(a, b)`, by its continued
/// fraction (evaluated with the modified Lentz method), using the symmetry
/// `I_x(a, b) = 1 - I_{1-x}(b, a)` where the fraction converges slowly.
pub fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - regularized_beta(1.0 - x, b, a);
    }
    let ln_front = a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b);
    ln_front.exp() * beta_fraction(x, a, b) / a
}

/// The continued fraction `1 / (1 + d1 / (1 + d2 / (1 + …)))` of `I_x(a, b)`:
/// `d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1))`, `d_{2m} = m(b-m) x / ((a+2m-1)(a+2m))`.
fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let clamp = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (mut c, mut d) = (1.0, 1.0 / clamp(1.0 - (a + b) * x / (a + 1.0)));
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        for coef in [even, odd] {
            d = 1.0 / clamp(1.0 + coef * d);
            c = clamp(1.0 + coef / c);
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    f
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) - ln Γ(a + b)`.
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// `ln Γ(x)` for `x > 0` by the Lanczos approximation (g = 7, 9 terms;
/// relative error below 1e-15), with the reflection formula below 0.5.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let sum = C[1..].iter().enumerate().fold(C[0], |s, (i, &c)| s + c / (x + i as f64 + 1.0));
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    /// Reference values from `statsmodels.stats.multitest.multipletests(p, method="holm")[1]`.
    #[test]
    fn holm_matches_statsmodels() {
        let close = |got: Vec<Option<f64>>, want: &[Option<f64>]| {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                match (g, w) {
                    (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}"),
                    _ => assert_eq!(g, w),
                }
            }
        };
        close(
            super::holm(&[Some(0.01), Some(0.04), Some(0.03), Some(0.005)]),
            &[Some(0.03), Some(0.06), Some(0.06), Some(0.02)],
        );
        let p = [Some(0.02), Some(0.3), None, Some(0.04), Some(0.04), Some(0.5), Some(0.011)];
        close(super::holm(&p), &[Some(0.1), Some(0.6), None, Some(0.16), Some(0.16), Some(0.6), Some(0.066)]);
    }

    #[test]
    fn mean_std_matches_numpy_population_std() {
        let (m, s) = super::mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.118_033_988_749_895).abs() < 1e-12);
    }

    /// Reference values from scipy 1.x: `stats.ttest_ind(a, b, equal_var=False)`
    /// (t, p) and the Welch–Satterthwaite df computed with numpy.
    #[test]
    fn welch_matches_scipy() {
        /// Two samples, then scipy's t, df and p.
        type Case<'a> = (&'a [f64], &'a [f64], f64, f64, f64);
        let cases: [Case; 4] = [
            (
                &[60.23, 51.21, 55.72],
                &[57.32, 55.33, 53.34],
                0.137_031_468_026_281_55,
                2.750_334_826_118_426,
                0.900_412_776_912_384_5,
            ),
            (
                &[24.35, 10.5, 38.2],
                &[45.13, 41.0, 49.26],
                -2.490_338_397_973_054,
                2.352_890_664_701_161,
                0.111_669_656_624_207_72,
            ),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                &[2.0, 4.0, 6.0],
                -0.738_548_945_875_996_4,
                3.532_846_715_328_467,
                0.506_214_171_652_848_1,
            ),
            (
                &[70.1, 69.3, 71.2, 68.8, 70.5, 69.9, 70.0, 71.0],
                &[74.2, 73.1, 75.0, 72.9, 74.4, 73.8, 74.0, 75.1],
                -9.884_898_071_819_595,
                13.997_458_744_582_085,
                1.079_699_646_130_744_7e-7,
            ),
        ];
        for (a, b, t, df, p) in cases {
            let w = super::welch(a, b).unwrap();
            assert!((w.t - t).abs() < 1e-9 * t.abs(), "t {} vs {t}", w.t);
            assert!((w.df - df).abs() < 1e-9 * df, "df {} vs {df}", w.df);
            assert!((w.p - p).abs() < 1e-9 * p, "p {} vs {p}", w.p);
        }
    }

    #[test]
    fn the_incomplete_beta_matches_scipy() {
        // scipy.stats.beta.cdf(0.3, 2.5, 0.5) and 2 * scipy.stats.t.sf(2.5, 3.7).
        assert!((super::regularized_beta(0.3, 2.5, 0.5) - 0.018_927_124_071_945_658).abs() < 1e-13);
        let x = 3.7 / (3.7 + 2.5 * 2.5);
        assert!((super::regularized_beta(x, 3.7 / 2.0, 0.5) - 0.071_822_022_911_826_78).abs() < 1e-13);
    }

    #[test]
    fn welch_is_undefined_without_spread_or_with_one_seed() {
        assert_eq!(super::welch(&[10.0, 10.0], &[10.0, 10.0]), None);
        assert_eq!(super::welch(&[1.0], &[2.0, 3.0]), None);
    }
}
