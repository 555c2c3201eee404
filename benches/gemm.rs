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

#[cfg(target_arch = "x86_64")]
mod common {
    pub mod ceiling;
}

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
    use common::ceiling::{CHAINS, STEPS, on_every_thread, sum256};
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    fn chains512(seed: f32) -> f32 {
        let (m, k) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut a: [__m512; CHAINS] = std::array::from_fn(|i| _mm512_set1_ps(seed + i as f32));
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
        let mut a: [__m256; CHAINS] = std::array::from_fn(|i| _mm256_set1_ps(seed + i as f32));
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, k);
            }
        }
        sum256(&a)
    }
    morphgrad::runtime::init();
    let mut g = c.benchmark_group("gemm");
    // SAFETY (both): the instruction sets were detected just before. An FMA lane is two FLOPs.
    if std::is_x86_feature_detected!("avx512f") {
        unsafe { on_every_thread(&mut g, "fma_peak/avx512", 16 * 2, chains512) };
    }
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        unsafe { on_every_thread(&mut g, "fma_peak/avx2", 8 * 2, chains256) };
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
