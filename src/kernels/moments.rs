//! Per-channel sums for BatchNorm, accumulated in f64.
//!
//! A single running f64 sum waits for each addition to finish before the
//! next (a chain of dependent adds the compiler may not reorder). These
//! kernels keep eight partial sums, value `k` going to lane `k mod 8`, and
//! add the lanes in a fixed order at the end: the same result on every
//! machine, instruction set and thread count, and eight independent chains
//! that fill one AVX-512 register of f64 (two AVX2 ones).
//!
//! All three sums are one kernel, `[Σ g, Σ g·(x − m)]`: the statistics of a
//! plane are that of `g = x` with `m = 0` (`x − 0` is `x` exactly), and a
//! plain sum its first half. The compiler vectorises the lane loop badly
//! (scalar loads and shuffles around each f64 add), so the AVX2 and
//! AVX-512 versions are written out; they do the same operations in the
//! same order as the portable loop, so all give the same bits.
//!
//! [`per_channel`] applies such a plane kernel to every plane of an
//! `[N, C, …]` tensor and adds each channel's results in image order.

use rayon::prelude::*;

use super::maxplus::Isa;
use super::planes_per_run;

/// Partial sums per lane.
const LANES: usize = 8;

/// `Σ x` of one plane.
pub fn sum(x: &[f32]) -> f64 {
    grad_sums(x, x, 0.0)[0]
}

/// `[Σ x, Σ x²]` of one plane.
pub fn sum_and_squares(x: &[f32]) -> [f64; 2] {
    grad_sums(x, x, 0.0)
}

/// `[Σ g, Σ g·(x − mean)]` of one plane of gradients `g` and inputs `x`.
pub fn grad_sums(g: &[f32], x: &[f32], mean: f32) -> [f64; 2] {
    grad_sums_isa(Isa::detect(), g, x, mean)
}

/// [`grad_sums`] with the kernel of `isa` (which the CPU must have).
pub fn grad_sums_isa(isa: Isa, g: &[f32], x: &[f32], mean: f32) -> [f64; 2] {
    assert_eq!(g.len(), x.len(), "grad_sums: planes differ in length");
    assert!(isa.is_available(), "grad_sums: this CPU has no {isa:?}");
    let whole = g.len() / LANES * LANES;
    let (gw, xw) = (&g[..whole], &x[..whole]);
    let [mut s, mut p] = match isa {
        Isa::Scalar => lanes(gw, xw, mean),
        // SAFETY: the CPU has the feature (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::lanes_avx2(gw, xw, mean) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::lanes_avx512(gw, xw, mean) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => lanes(gw, xw, mean),
    };
    for (l, (&gv, &xv)) in g[whole..].iter().zip(&x[whole..]).enumerate() {
        s[l] += gv as f64;
        p[l] += gv as f64 * (xv - mean) as f64;
    }
    [fold(s), fold(p)]
}

/// The lane sums of `g` and `g·(x − mean)` over slices of whole chunks.
fn lanes(g: &[f32], x: &[f32], mean: f32) -> [[f64; LANES]; 2] {
    let (mut s, mut p) = ([0.0f64; LANES], [0.0f64; LANES]);
    for (g, x) in g.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            let gv = g[l] as f64;
            s[l] += gv;
            p[l] += gv * (x[l] - mean) as f64;
        }
    }
    [s, p]
}

/// `Σ over samples i of plane(ch, i)` for every channel of an `[n, c, …]`
/// stack of planes `len` floats each, samples added in order.
/// `sums(first, out)` computes `out[j] = plane(first + j)` (flat plane index
/// `i·c + ch`) for a run of [`planes_per_run`] consecutive planes, runs in
/// parallel when `parallel`. The planes are visited in memory order and
/// their results kept, then added up per channel: visiting channel by
/// channel would jump `c` planes ahead at every step, and small planes would
/// each cost a cache miss the prefetcher cannot hide.
pub fn per_channel(
    n: usize,
    c: usize,
    len: usize,
    parallel: bool,
    sums: impl Fn(usize, &mut [[f64; 2]]) + Sync,
) -> Vec<[f64; 2]> {
    if len == 0 {
        return vec![[0.0; 2]; c];
    }
    let mut planes = vec![[0.0f64; 2]; n * c];
    let run = planes_per_run(len);
    if parallel {
        planes.par_chunks_mut(run).enumerate().for_each(|(r, out)| sums(r * run, out));
    } else {
        planes.chunks_mut(run).enumerate().for_each(|(r, out)| sums(r * run, out));
    }
    (0..c)
        .map(|ch| {
            let mut acc = [0.0f64; 2];
            for r in planes[ch..].iter().step_by(c.max(1)) {
                acc[0] += r[0];
                acc[1] += r[1];
            }
            acc
        })
        .collect()
}

/// [`per_channel`] of a plane kernel `f` applied to every plane of `x` (an
/// `[n, c, …]` stack of planes `len` floats each), in parallel for large `x`.
pub fn per_channel_of(
    x: &[f32],
    n: usize,
    c: usize,
    len: usize,
    f: impl Fn(&[f32]) -> [f64; 2] + Sync,
) -> Vec<[f64; 2]> {
    per_channel(n, c, len, x.len() >= super::PAR_MIN, |first, out| {
        for (o, plane) in out.iter_mut().zip(x[first * len..].chunks_exact(len)) {
            *o = f(plane);
        }
    })
}

/// The lanes added pairwise, in a fixed order.
#[inline(always)]
fn fold(a: [f64; LANES]) -> f64 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// [`super::lanes`] with lanes 0–7 in one register (no FMA: the
    /// product is rounded before the add, as in the portable loop).
    ///
    /// # Safety
    /// AVX-512F; `g` and `x` equally long, a multiple of 8.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lanes_avx512(g: &[f32], x: &[f32], mean: f32) -> [[f64; LANES]; 2] {
        let m = _mm256_set1_ps(mean);
        let (mut s, mut p) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for i in (0..g.len()).step_by(LANES) {
            // SAFETY: 8 floats from `i` on, in both slices.
            let (gv, xv) = unsafe { (_mm256_loadu_ps(g.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i))) };
            let gd = _mm512_cvtps_pd(gv);
            s = _mm512_add_pd(s, gd);
            p = _mm512_add_pd(p, _mm512_mul_pd(gd, _mm512_cvtps_pd(_mm256_sub_ps(xv, m))));
        }
        let mut out = [[0.0; LANES]; 2];
        // SAFETY: each array holds 8 f64.
        unsafe {
            _mm512_storeu_pd(out[0].as_mut_ptr(), s);
            _mm512_storeu_pd(out[1].as_mut_ptr(), p);
        }
        out
    }

    /// [`super::lanes`] with lanes 0–3 and 4–7 in two registers each.
    ///
    /// # Safety
    /// AVX2; `g` and `x` equally long, a multiple of 8.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lanes_avx2(g: &[f32], x: &[f32], mean: f32) -> [[f64; LANES]; 2] {
        let m = _mm256_set1_ps(mean);
        let zero = _mm256_setzero_pd();
        let (mut s, mut p) = ([zero; 2], [zero; 2]);
        for i in (0..g.len()).step_by(LANES) {
            // SAFETY: 8 floats from `i` on, in both slices.
            let (gv, xv) = unsafe { (_mm256_loadu_ps(g.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i))) };
            let d = _mm256_sub_ps(xv, m);
            let gd = [_mm256_cvtps_pd(_mm256_castps256_ps128(gv)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(gv))];
            let dd = [_mm256_cvtps_pd(_mm256_castps256_ps128(d)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(d))];
            for h in 0..2 {
                s[h] = _mm256_add_pd(s[h], gd[h]);
                p[h] = _mm256_add_pd(p[h], _mm256_mul_pd(gd[h], dd[h]));
            }
        }
        let mut out = [[0.0; LANES]; 2];
        // SAFETY: each array holds 8 f64, two halves of 4.
        unsafe {
            for h in 0..2 {
                _mm256_storeu_pd(out[0].as_mut_ptr().add(4 * h), s[h]);
                _mm256_storeu_pd(out[1].as_mut_ptr().add(4 * h), p[h]);
            }
        }
        out
    }
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
            let gs: f64 = g.iter().map(|&v| v as f64).sum();
            let gp: f64 = g.iter().zip(&x).map(|(&a, &b)| a as f64 * (b - 1.0) as f64).sum();
            assert_eq!(grad_sums(&g, &x, 1.0), [gs, gp], "len {len}");
        }
    }

    #[test]
    fn every_isa_adds_in_the_same_order_bit_for_bit() {
        // Values whose sums round: any change of order would show.
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1023, 4096] {
            let x: Vec<f32> = (0..len).map(|i| 1.0 / (i as f32 + 0.3) - 0.7).collect();
            let g: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 * 1.37e-3 - 0.5).collect();
            // The lane order, written out: value k to lane k mod 8.
            let (mut s, mut p, mut q) = ([0.0f64; LANES], [0.0f64; LANES], [0.0f64; LANES]);
            for k in 0..len {
                s[k % LANES] += g[k] as f64;
                p[k % LANES] += g[k] as f64 * (x[k] - 0.25) as f64;
                q[k % LANES] += x[k] as f64 * x[k] as f64;
            }
            let want = [fold(s), fold(p)].map(f64::to_bits);
            let squares = fold(q).to_bits();
            for isa in Isa::available() {
                assert_eq!(grad_sums_isa(isa, &g, &x, 0.25).map(f64::to_bits), want, "{isa:?}, len {len}");
                // The statistics' form: Σ x² with `x − 0`.
                assert_eq!(grad_sums_isa(isa, &x, &x, 0.0)[1].to_bits(), squares, "{isa:?}, len {len}");
            }
        }
    }
}
