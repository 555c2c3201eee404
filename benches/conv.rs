//! `conv/fwd_64x128x16x16_k128` and `conv/fwd_bwd_64x128x16x16_k128`: a 3×3
//! pad-1 convolution, batch 64, 128 → 128 channels on 16×16 (block 2 of the
//! paper's CIFAR net at C = 128). Throughput: one element = one FLOP
//! (forward 2·N·Cout·Cin·9·H·W; backward twice that), so "Gelem/s" reads as
//! GFLOP/s. Compare with `python3 ../shared/bench/torch_bench.py`.
//!
//! `conv/fwd_bwd_<net>_<layer>`: forward + backward of every convolution of
//! the paper's C = 128 CIFAR net (batch 64) and of the Short-chunk CNN (batch
//! 16, one 59 049-sample chunk = 128 × 231 mel frames), at the shapes the
//! training step runs; the first CIFAR layer's input (the images) needs no
//! gradient, as in training. `python3 benches/torch_conv_layers.py` times the
//! same shapes in PyTorch; `gemm/fma_peak` is the machine's FMA ceiling.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use morphgrad::{Tensor, autograd::no_grad, ops};
use ndarray::{ArrayD, IxDyn};

/// Tensors and buffers of 1 KiB or more start on a cache line (see the type).
#[global_allocator]
static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;

/// Deterministic pseudo-random values in [-0.5, 0.5).
fn input(shape: &[usize], seed: usize) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|i| ((i * 2654435761 + seed * 40503) % 1000) as f32 * 1e-3 - 0.5).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn conv(c: &mut Criterion) {
    morphgrad::runtime::init();
    let (n, ch, hw) = (64, 128, 16);
    let flop = 2 * n * ch * ch * 9 * hw * hw;
    let x = Tensor::param(input(&[n, ch, hw, hw], 1));
    let w = Tensor::param(input(&[ch, ch, 3, 3], 2).mapv(|v| v * 0.05));
    let b = Tensor::param(input(&[ch], 3));
    let gy = input(&[n, ch, hw, hw], 4);
    let mut g = c.benchmark_group("conv");
    g.sample_size(20);
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("fwd_64x128x16x16_k128", |bch| bch.iter(|| no_grad(|| ops::conv2d(&x, &w, Some(&b), 1, 1))));
    g.throughput(Throughput::Elements(3 * flop as u64));
    g.bench_function("fwd_bwd_64x128x16x16_k128", |bch| {
        bch.iter(|| ops::conv2d(&x, &w, Some(&b), 1, 1).backward_with(&gy))
    });
    g.finish();
}

/// `(name, batch, cin, cout, height, width)` of every 3×3 pad-1 convolution
/// of the two networks at the paper's width, from `benches/conv_layers.csv`
/// (which `torch_conv_layers.py` reads too).
fn conv_layers() -> Vec<(String, usize, usize, usize, usize, usize)> {
    include_str!("conv_layers.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |i: usize| f[i].parse::<usize>().expect("conv_layers.csv: a count");
            (f[0].to_string(), num(1), num(2), num(3), num(4), num(5))
        })
        .collect()
}

fn layers(c: &mut Criterion) {
    morphgrad::runtime::init();
    let mut g = c.benchmark_group("conv");
    g.sample_size(10);
    for (name, n, cin, cout, h, w) in conv_layers() {
        let flop = 2 * n * cout * cin * 9 * h * w;
        let xv = input(&[n, cin, h, w], 1);
        // The images entering the CIFAR net need no gradient; every other input does.
        let x = if cin == 3 { Tensor::new(xv) } else { Tensor::param(xv) };
        let wt = Tensor::param(input(&[cout, cin, 3, 3], 2).mapv(|v| v * 0.05));
        let b = Tensor::param(input(&[cout], 3));
        let gy = input(&[n, cout, h, w], 4);
        let backward = if x.requires_grad() { 2 } else { 1 };
        g.throughput(Throughput::Elements(((1 + backward) * flop) as u64));
        g.bench_function(format!("fwd_bwd_{name}"), |bch| {
            bch.iter(|| ops::conv2d(&x, &wt, Some(&b), 1, 1).backward_with(&gy))
        });
    }
    g.finish();
}

criterion_group!(benches, conv, layers);
criterion_main!(benches);
