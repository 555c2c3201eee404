//! `gemm/sgemm_512`: one 512×512×512 single-precision GEMM through our
//! wrapper. Throughput is reported in elements/s where one element = one
//! FLOP, i.e. read "Gelem/s" as GFLOP/s.
//!
//! `gemm/fma_peak/{avx512,avx2}`: the FMA ceiling of this machine on every
//! thread of the pool — independent fused multiply-add chains in registers,
//! no memory traffic; one element = one FLOP (an FMA lane is two).
//!
//! `transpose/64x512`: the batch-major ↔ feature-major transpose the sparse
//! max-plus layer runs five times per step (128 KB, about L2-sized work);
//! throughput in bytes moved (read once, written once) per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use morphgrad::kernels::gemm::{MatRef, gemm_into};

/// Tensors and buffers of 1 KiB or more start on a cache line (see the type).
#[global_allocator]
static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;

fn sgemm_512(c: &mut Criterion) {
    morphgrad::runtime::init();
    let n = 512;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.2).collect();
    let mut out = vec![0.0f32; n * n];
    let mut g = c.benchmark_group("gemm");
    g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    g.bench_function("sgemm_512", |bch| {
        bch.iter(|| gemm_into(1.0, MatRef::new(&a, n, n), MatRef::new(&b, n, n), 0.0, &mut out))
    });
    g.finish();
}

#[cfg(target_arch = "x86_64")]
fn fma_peak(c: &mut Criterion) {
    use rayon::prelude::*;
    use std::arch::x86_64::*;
    const STEPS: usize = 1 << 20;
    // 12 independent chains per thread: enough to cover the FMA latency on
    // two pipes, so the FMA units are the only limit.
    #[target_feature(enable = "avx512f")]
    fn chains512(seed: f32) -> f32 {
        let (m, k) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut a: [__m512; 12] = std::array::from_fn(|i| _mm512_set1_ps(seed + i as f32));
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, k);
            }
        }
        a.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }
    #[target_feature(enable = "avx2,fma")]
    fn chains256(seed: f32) -> f32 {
        let (m, k) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut a: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(seed + i as f32));
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, k);
            }
        }
        let s = a.iter().fold(_mm256_setzero_ps(), |s, v| _mm256_add_ps(s, *v));
        let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let q = _mm_hadd_ps(q, q);
        _mm_cvtss_f32(_mm_hadd_ps(q, q))
    }
    morphgrad::runtime::init();
    let threads = rayon::current_num_threads();
    let mut g = c.benchmark_group("gemm");
    if std::is_x86_feature_detected!("avx512f") {
        g.throughput(Throughput::Elements((threads * STEPS * 12 * 16 * 2) as u64));
        g.bench_function("fma_peak/avx512", |b| {
            // SAFETY: AVX-512F was detected above.
            b.iter(|| (0..threads).into_par_iter().map(|t| unsafe { chains512(t as f32) }).sum::<f32>())
        });
    }
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        g.throughput(Throughput::Elements((threads * STEPS * 12 * 8 * 2) as u64));
        g.bench_function("fma_peak/avx2", |b| {
            // SAFETY: AVX2 and FMA were detected above.
            b.iter(|| (0..threads).into_par_iter().map(|t| unsafe { chains256(t as f32) }).sum::<f32>())
        });
    }
    g.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak(_: &mut Criterion) {}

fn transpose(c: &mut Criterion) {
    let (rows, cols) = (64, 512);
    let a: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let mut out = vec![0.0f32; rows * cols];
    let mut g = c.benchmark_group("transpose");
    g.throughput(Throughput::Bytes(2 * 4 * (rows * cols) as u64));
    g.bench_function("64x512", |b| b.iter(|| morphgrad::kernels::transpose_into(&a, rows, cols, &mut out)));
    g.bench_function("512x64", |b| b.iter(|| morphgrad::kernels::transpose_into(&a, cols, rows, &mut out)));
    g.finish();
}

criterion_group!(benches, sgemm_512, fma_peak, transpose);
criterion_main!(benches);
