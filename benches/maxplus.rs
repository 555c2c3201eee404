//! Max-plus layer benches. Throughput counts candidates `batch·out·(in+1)`
//! (one add + one max each), so "Gelem/s" reads as G max-plus ops/s; the
//! sparse bench counts the candidates of the *dense* layer it replaces, to
//! compare with PyTorch's masked-dense formulation, which computes them all.
//!
//! `maxplus/roofline_probe/{avx512,avx2}` measures this CPU's ceiling for the
//! same work with each instruction set it has: independent add+max pairs in
//! registers, no memory traffic, on every rayon thread (a 16- or 8-lane pair
//! counts as 16 or 8 ops). A kernel's efficiency is its rate over the probe
//! of the ISA it ran with.

#[cfg(target_arch = "x86_64")]
mod common {
    pub mod ceiling;
}

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use morphgrad::Tensor;
use morphgrad::autograd::no_grad;
use morphgrad::nn::{Ctx, Forward, MaxPlus, SparseMaxPlus};
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};

/// Tensors and buffers of 1 KiB or more start on a cache line (see the type).
#[global_allocator]
static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;

fn input(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 100_000) as f32 * 4e-5 - 2.0
    })
}

fn dense(c: &mut Criterion) {
    morphgrad::runtime::init();
    let mut g = c.benchmark_group("maxplus");
    let mut ctx = Ctx::eval();
    for batch in [64usize, 16] {
        let mut layer = MaxPlus::new(512, 512, true, &mut Xoshiro256PlusPlus::seed_from_u64(0));
        let x = Tensor::param(input(&[batch, 512], 1));
        let gy = input(&[batch, 512], 2);
        g.throughput(Throughput::Elements((batch * 512 * 513) as u64));
        g.bench_function(format!("dense_fwd_bwd/{batch}x512x512"), |b| {
            b.iter(|| layer.forward(&x, &mut ctx).backward_with(&gy))
        });
        if batch == 64 {
            g.bench_function("dense_fwd/64x512x512", |b| b.iter(|| layer.forward(&x, &mut ctx)));
            g.bench_function("dense_fwd_nograd/64x512x512", |b| b.iter(|| no_grad(|| layer.forward(&x, &mut ctx))));
        }
    }
    let mut layer = SparseMaxPlus::new(512, 512, 1024, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    let x = Tensor::param(input(&[64, 512], 1));
    let gy = input(&[64, 512], 2);
    g.throughput(Throughput::Elements((64 * 512 * 513) as u64));
    g.bench_function("sparse_fwd_bwd/64x512x512_k1024", |b| b.iter(|| layer.forward(&x, &mut ctx).backward_with(&gy)));
    g.bench_function("sparse_fwd/64x512x512_k1024", |b| b.iter(|| layer.forward(&x, &mut ctx)));
    g.finish();
}

#[cfg(target_arch = "x86_64")]
fn roofline(c: &mut Criterion) {
    use common::ceiling::{CHAINS, STEPS, on_every_thread, sum256};
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    fn pairs512(seed: f32) -> f32 {
        let b = _mm512_set1_ps(1e-9);
        let mut a: [__m512; CHAINS] = std::array::from_fn(|i| _mm512_set1_ps(seed + i as f32));
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm512_max_ps(_mm512_add_ps(*v, b), b);
            }
        }
        a.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }
    #[target_feature(enable = "avx2")]
    fn pairs256(seed: f32) -> f32 {
        let b = _mm256_set1_ps(1e-9);
        let mut a: [__m256; CHAINS] = std::array::from_fn(|i| _mm256_set1_ps(seed + i as f32));
        for _ in 0..STEPS {
            for v in a.iter_mut() {
                *v = _mm256_max_ps(_mm256_add_ps(*v, b), b);
            }
        }
        sum256(&a)
    }
    let mut g = c.benchmark_group("maxplus");
    // SAFETY (both): the instruction set was detected just before.
    if std::is_x86_feature_detected!("avx512f") {
        unsafe { on_every_thread(&mut g, "roofline_probe/avx512", 16, pairs512) };
    }
    if std::is_x86_feature_detected!("avx2") {
        unsafe { on_every_thread(&mut g, "roofline_probe/avx2", 8, pairs256) };
    }
    g.finish();
}

#[cfg(not(target_arch = "x86_64"))]
fn roofline(_: &mut Criterion) {}

criterion_group!(benches, dense, roofline);
criterion_main!(benches);
