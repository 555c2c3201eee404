//! What the ceiling probes of the benches share (`maxplus/roofline_probe/*`,
//! `gemm/fma_peak/*`): each probe runs `CHAINS` independent chains of
//! `STEPS` vector operations in registers — enough chains to cover the
//! latencies, so the vector units are the only limit — on every thread of
//! the pool at once.

use std::arch::x86_64::*;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Throughput};
use rayon::prelude::*;

pub const STEPS: usize = 1 << 20;
pub const CHAINS: usize = 12;

/// Bench `probe` on every thread of the pool at once; one call of `probe`
/// counts `ops_per_chain_step · CHAINS · STEPS` elements.
///
/// # Safety
/// The CPU must have the instruction set `probe` is compiled for.
pub unsafe fn on_every_thread(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    ops_per_chain_step: usize,
    probe: unsafe fn(f32) -> f32,
) {
    let threads = rayon::current_num_threads();
    g.throughput(Throughput::Elements((threads * STEPS * CHAINS * ops_per_chain_step) as u64));
    g.bench_function(name, |b| {
        // SAFETY: the caller checked the instruction set.
        b.iter(|| (0..threads).into_par_iter().map(|t| unsafe { probe(t as f32) }).sum::<f32>())
    });
}

/// The sum of the chains' lanes, so that the compiler cannot drop them.
#[target_feature(enable = "avx")]
pub fn sum256(a: &[__m256]) -> f32 {
    let s = a.iter().fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v));
    let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let q = _mm_hadd_ps(q, q);
    _mm_cvtss_f32(_mm_hadd_ps(q, q))
}
