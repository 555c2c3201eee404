//! `gemm/sgemm_512`: one 512×512×512 single-precision GEMM through our
//! wrapper. Throughput is reported in elements/s where one element = one
//! FLOP, i.e. read "Gelem/s" as GFLOP/s.
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

criterion_group!(benches, sgemm_512, transpose);
criterion_main!(benches);
