//! One training step of the paper's CIFAR net (forward, backward, Adam),
//! batch 64: `train_step/cifar_c{128,32}_b64_{head}`. Throughput is in
//! images/s (criterion's "elem/s"). Compare with
//! `python3 ../shared/bench/torch_bench.py` (PyTorch, 2 threads).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use morphgrad::data::mtat::CHUNK;
use morphgrad::models::{CifarConfig, CifarNet, HeadKind, ShortChunkCnn, ShortChunkConfig};
use morphgrad::nn::{Ctx, Forward};
use morphgrad::optim::{Adam, Optimizer};
use morphgrad::{Tensor, ops};
use ndarray::{ArrayD, IxDyn};

/// Tensors and buffers of 1 KiB or more start on a cache line (see the type).
#[global_allocator]
static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;

fn batch() -> (Tensor, Vec<usize>) {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let x = ArrayD::from_shape_simple_fn(IxDyn(&[64, 3, 32, 32]), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 2000) as f32 * 1e-3 - 1.0
    });
    (Tensor::new(x), (0..64).map(|i| i % 10).collect())
}

fn train_step(c: &mut Criterion) {
    morphgrad::runtime::init();
    let (x, labels) = batch();
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(64));
    for channels in [128, 32] {
        for head in
            [HeadKind::Relu, HeadKind::SparseMorph { bn: true }, HeadKind::DenseMorph { bn: true }, HeadKind::Maxout]
        {
            if channels == 128 && matches!(head, HeadKind::DenseMorph { .. } | HeadKind::Maxout) {
                continue;
            }
            let mut model = CifarNet::new(CifarConfig::paper(head, channels), 0);
            let mut opt = Adam::new(1e-3, 0.0);
            let name = format!("cifar_c{channels}_b64_{}", head.id().replace('-', "_"));
            g.bench_function(name, |b| {
                b.iter(|| {
                    // The graph is dropped before the step (see `Optimizer::step`).
                    let grads = ops::cross_entropy(&model.forward(&x, &mut Ctx::train(1)).unwrap(), &labels).backward();
                    opt.step(&mut model, &grads);
                })
            });
        }
    }
    g.finish();
}

/// `train_step/short_chunk_b16_{head}`: the MTAT model at C = 128, batch 16
/// of 59 049-sample chunks, BCE, Adam with L2 — mel front end included.
/// Throughput in clips/s.
fn short_chunk_step(c: &mut Criterion) {
    morphgrad::runtime::init();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let wav = ArrayD::from_shape_simple_fn(IxDyn(&[16, CHUNK]), || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 2000) as f32 * 1e-4 - 0.1
    });
    let wav = Tensor::new(wav);
    let target = Tensor::new(ArrayD::from_shape_fn(IxDyn(&[16, 50]), |i| ((i[0] + i[1]) % 7 == 0) as u8 as f32));
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(16));
    for head in [HeadKind::Relu, HeadKind::SparseMorph { bn: true }] {
        let mut model = ShortChunkCnn::new(ShortChunkConfig::paper(head, 128), 0);
        let mut opt = Adam::new(1e-4, 1e-4);
        g.bench_function(format!("short_chunk_b16_{}", head.id().replace('-', "_")), |b| {
            b.iter(|| {
                // The graph is dropped before the step (see `Optimizer::step`).
                let grads =
                    ops::binary_cross_entropy(&model.forward(&wav, &mut Ctx::train(1)).unwrap(), &target).backward();
                opt.step(&mut model, &grads);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, train_step, short_chunk_step);
criterion_main!(benches);
