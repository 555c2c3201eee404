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

/// Labelled points of `d` coordinates, stored row by row.
pub struct Data {
    pub d: usize,
    pub x: Vec<f32>,
    pub y: Vec<usize>,
}

impl Data {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// The rows `idx` as a `[idx.len(), d]` tensor, and their labels.
    pub fn batch(&self, idx: &[usize]) -> (Tensor, Vec<usize>) {
        let x = idx.iter().flat_map(|&i| self.x[i * self.d..(i + 1) * self.d].iter().copied()).collect();
        (Tensor::from_vec(&[idx.len(), self.d], x), idx.iter().map(|&i| self.y[i]).collect())
    }

    /// All points as a `[n, d]` tensor.
    pub fn tensor(&self) -> Tensor {
        Tensor::from_vec(&[self.len(), self.d], self.x.clone())
    }
}

/// Two interleaved half circles ("moons"), `n` points each, with noise of
/// scale `noise` (a sum of four uniforms); labels 0 and 1.
pub fn two_moons(n: usize, noise: f32, seed: u64) -> Data {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let jitter = |rng: &mut Xoshiro256PlusPlus| (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * noise;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..2 * n {
        let t = std::f32::consts::PI * rng.random::<f32>();
        let (a, b) = if i % 2 == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        x.extend([a + jitter(&mut rng), b + jitter(&mut rng)]);
        y.push(i % 2);
    }
    Data { d: 2, x, y }
}

/// A head for `d` inputs and `classes` classes, `h` hidden units, sparse
/// budget `2h` (about two active inputs per max-plus unit), no dropout.
pub fn head(kind: &str, d: usize, h: usize, classes: usize, seed: u64) -> Head {
    let kind: HeadKind = kind.parse().expect("a head name");
    let dims = HeadDims { d, h, classes, sparse_k: 2 * h, dropout: 0.0 };
    Head::new(kind, dims, &mut Xoshiro256PlusPlus::seed_from_u64(seed))
}

/// One epoch of Adam over shuffled mini-batches of 32; returns the mean loss.
/// `on_grads` sees every step's gradients (to watch who learns).
pub fn train_epoch(
    head: &mut Head,
    opt: &mut Adam,
    data: &Data,
    seed: u64,
    mut on_grads: impl FnMut(&Head, &morphgrad::autograd::Grads),
) -> f32 {
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut total = 0.0;
    for (step, idx) in order.chunks(32).enumerate() {
        let (x, y) = data.batch(idx);
        let loss = ops::cross_entropy(&head.forward(&x, &mut Ctx::train(seed * 1000 + step as u64)), &y);
        total += loss.item();
        let grads = loss.backward();
        on_grads(head, &grads);
        opt.step(head, &grads);
    }
    total / order.len().div_ceil(32) as f32
}

/// What the max-plus layer of a Dense-Morph or Sparse-Morph head sees for
/// `data`: `BatchNorm(Linear(x))` in eval mode, `[n, h]`; `None` for a head
/// without a max-plus layer.
pub fn maxplus_input(head: &mut Head, data: &Data) -> Option<Tensor> {
    let (Head::DenseMorph { dense1, bn1, .. } | Head::SparseMorph { dense1, bn1, .. }) = head else { return None };
    let mut ctx = Ctx::eval();
    Some(morphgrad::autograd::no_grad(|| {
        let h = dense1.forward(&data.tensor(), &mut ctx);
        bn1.forward(&h, &mut ctx)
    }))
}

/// The predicted class of every row of `x` (eval mode).
pub fn predict(head: &mut Head, x: &Tensor) -> Vec<usize> {
    let logits = morphgrad::autograd::no_grad(|| head.forward(x, &mut Ctx::eval()));
    let k = logits.shape()[1];
    logits.data().chunks(k).map(|r| (0..k).max_by(|&a, &b| r[a].total_cmp(&r[b]).then(b.cmp(&a))).unwrap()).collect()
}

/// Percentage of points whose predicted class is the label.
pub fn accuracy(head: &mut Head, data: &Data) -> f64 {
    let hits = predict(head, &data.tensor()).iter().zip(&data.y).filter(|(p, y)| p == y).count();
    100.0 * hits as f64 / data.len() as f64
}

/// The centres of an `n × n` grid of cells over `xr × yr`, row by row from
/// the bottom (the order `plots::Map` draws cells in), as 2-D points.
pub fn grid(xr: (f32, f32), yr: (f32, f32), n: usize) -> Data {
    let (dx, dy) = ((xr.1 - xr.0) / n as f32, (yr.1 - yr.0) / n as f32);
    let x = (0..n * n).flat_map(|k| [xr.0 + ((k % n) as f32 + 0.5) * dx, yr.0 + ((k / n) as f32 + 0.5) * dy]).collect();
    Data { d: 2, x, y: vec![0; n * n] }
}
