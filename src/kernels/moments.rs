//! Per-channel sums for BatchNorm, accumulated in f64.
//!
//! A single running f64 sum waits for each addition to finish before the
//! next (a chain of dependent adds the compiler may not reorder). These
//! kernels keep eight partial sums, value `k` going to lane `k mod 8`, and
//! add the lanes in a fixed order at the end: the same result on every
//! machine and thread count, and eight independent chains that vectorise.

/// Partial sums per lane.
const LANES: usize = 8;

simd_dispatch!(
    /// `Σ x` of one plane.
    pub fn sum(x: &[f32]) -> f64 => sum_generic
);

#[inline(always)]
fn sum_generic(x: &[f32]) -> f64 {
    let mut s = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            s[l] += c[l] as f64;
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        s[l] += v as f64;
    }
    fold(s)
}

simd_dispatch!(
    /// `[Σ x, Σ x²]` of one plane.
    pub fn sum_and_squares(x: &[f32]) -> [f64; 2] => sum_and_squares_generic
);

#[inline(always)]
fn sum_and_squares_generic(x: &[f32]) -> [f64; 2] {
    let (mut s, mut q) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let v = c[l] as f64;
            s[l] += v;
            q[l] += v * v;
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        s[l] += v as f64;
        q[l] += v as f64 * v as f64;
    }
    [fold(s), fold(q)]
}

simd_dispatch!(
    /// `[Σ g, Σ g·(x − mean)]` of one plane of gradients `g` and inputs `x`.
    pub fn grad_sums(g: &[f32], x: &[f32], mean: f32) -> [f64; 2] => grad_sums_generic
);

#[inline(always)]
fn grad_sums_generic(g: &[f32], x: &[f32], mean: f32) -> [f64; 2] {
    assert_eq!(g.len(), x.len(), "grad_sums: planes differ in length");
    let (mut s, mut p) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (gc, xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    let (gt, xt) = (gc.remainder(), xc.remainder());
    for (g, x) in gc.zip(xc) {
        for l in 0..LANES {
            let gv = g[l] as f64;
            s[l] += gv;
            p[l] += gv * (x[l] - mean) as f64;
        }
    }
    for (l, (&gv, &xv)) in gt.iter().zip(xt).enumerate() {
        s[l] += gv as f64;
        p[l] += gv as f64 * (xv - mean) as f64;
    }
    [fold(s), fold(p)]
}

/// The lanes added pairwise, in a fixed order.
#[inline(always)]
fn fold(a: [f64; LANES]) -> f64 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_sums_equal_the_exact_sums_of_small_integers() {
        // Small integers sum exactly in f64, in any order.
        for len in [0, 1, 7, 8, 9, 100] {
            let x: Vec<f32> = (0..len).map(|i| (i % 13) as f32 - 6.0).collect();
            let g: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
            let s: f64 = x.iter().map(|&v| v as f64).sum();
            let q: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
            assert_eq!(sum_and_squares(&x), [s, q], "len {len}");
            assert_eq!(sum(&x), s, "len {len}");
            // Values that do not sum exactly: `sum` adds in the same order as
            // `sum_and_squares`.
            let r: Vec<f32> = (0..len).map(|i| 1.0 / (i as f32 + 0.3)).collect();
            assert_eq!(sum(&r), sum_and_squares(&r)[0], "len {len}");
            let gs: f64 = g.iter().map(|&v| v as f64).sum();
            let gp: f64 = g.iter().zip(&x).map(|(&a, &b)| a as f64 * (b - 1.0) as f64).sum();
            assert_eq!(grad_sums(&g, &x, 1.0), [gs, gp], "len {len}");
        }
    }
}
