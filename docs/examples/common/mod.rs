//! What the examples share: a 2-D data set, a head trained on it, and where
//! the pictures go. Each example includes this file with `mod common;`.
#![allow(dead_code)] // each example uses a part

use std::path::PathBuf;

use morphgrad::Tensor;
use morphgrad::models::{Head, HeadDims, HeadKind};
use morphgrad::nn::{Ctx, Forward};
use morphgrad::ops;
use morphgrad::optim::{Adam, Optimizer};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// `--fast`: a smaller run for the test suite.
pub fn fast() -> bool {
    std::env::args().any(|a| a == "--fast")
}

/// The folder after `--out`, else `out/examples/<name>`; created.
pub fn out_dir(name: &str) -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    let dir = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).expect("--out needs a folder")),
        None => PathBuf::from("out/examples").join(name),
    };
    std::fs::create_dir_all(&dir).expect("cannot create the output folder");
    dir
}

/// Two interleaved half circles ("moons"), `n` points each, with Gaussian-ish
/// noise of scale `noise`; labels 0 and 1.
pub fn two_moons(n: usize, noise: f32, seed: u64) -> (Vec<[f32; 2]>, Vec<usize>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let jitter = |rng: &mut Xoshiro256PlusPlus| (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * noise;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..2 * n {
        let t = std::f32::consts::PI * rng.random::<f32>();
        let (x, y) = if i % 2 == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        xs.push([x + jitter(&mut rng), y + jitter(&mut rng)]);
        ys.push(i % 2);
    }
    (xs, ys)
}

/// Points as a `[n, 2]` tensor.
pub fn tensor(points: &[[f32; 2]]) -> Tensor {
    Tensor::from_vec(&[points.len(), 2], points.iter().flatten().copied().collect())
}

/// A head for 2-D points and `classes` classes, `h` hidden units, sparse
/// budget `2h` (two active inputs per max-plus unit), no dropout.
pub fn head(kind: &str, h: usize, classes: usize, seed: u64) -> Head {
    let kind: HeadKind = kind.parse().expect("a head name");
    let dims = HeadDims { d: 2, h, classes, sparse_k: 2 * h, dropout: 0.0 };
    Head::new(kind, dims, &mut Xoshiro256PlusPlus::seed_from_u64(seed))
}

/// One epoch of Adam over shuffled mini-batches of 32; returns the mean loss.
/// `on_grads` sees every step's gradients (to watch who learns).
pub fn train_epoch(
    head: &mut Head,
    opt: &mut Adam,
    (xs, ys): (&[[f32; 2]], &[usize]),
    seed: u64,
    mut on_grads: impl FnMut(&Head, &morphgrad::autograd::Grads),
) -> f32 {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut total = 0.0;
    for (step, batch) in order.chunks(32).enumerate() {
        let x: Vec<[f32; 2]> = batch.iter().map(|&i| xs[i]).collect();
        let y: Vec<usize> = batch.iter().map(|&i| ys[i]).collect();
        let loss = ops::cross_entropy(&head.forward(&tensor(&x), &mut Ctx::train(seed * 1000 + step as u64)), &y);
        total += loss.item();
        let grads = loss.backward();
        on_grads(head, &grads);
        opt.step(head, &grads);
    }
    total / order.len().div_ceil(32) as f32
}

/// The predicted class of every point (eval mode).
pub fn predict(head: &mut Head, points: &[[f32; 2]]) -> Vec<usize> {
    let logits = morphgrad::autograd::no_grad(|| head.forward(&tensor(points), &mut Ctx::eval()));
    let k = logits.shape()[1];
    logits.data().chunks(k).map(|r| (0..k).max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a))).unwrap()).collect()
}

/// Percentage of points whose predicted class is the label.
pub fn accuracy(head: &mut Head, (xs, ys): (&[[f32; 2]], &[usize])) -> f64 {
    let hits = predict(head, xs).iter().zip(ys).filter(|(p, y)| p == y).count();
    100.0 * hits as f64 / ys.len() as f64
}

/// The centres of an `n × n` grid of cells over `xr × yr`, row by row from
/// the bottom (the order `plots::Map` draws cells in).
pub fn grid(xr: (f32, f32), yr: (f32, f32), n: usize) -> Vec<[f32; 2]> {
    let (dx, dy) = ((xr.1 - xr.0) / n as f32, (yr.1 - yr.0) / n as f32);
    (0..n * n).map(|k| [xr.0 + ((k % n) as f32 + 0.5) * dx, yr.0 + ((k / n) as f32 + 0.5) * dy]).collect()
}
