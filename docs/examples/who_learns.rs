//! Who learns in a max-plus layer? Dense-Morph and Sparse-Morph heads of the
//! same width (`Linear(2, 64) → BatchNorm → MaxPlus(64, 64) → Linear(64, 2)`)
//! on two moons. After every epoch: the share of the max-plus layer's active
//! weights that have received any gradient so far. After training: how many
//! wins each weight collects over the training set — the rich-get-richer
//! effect, measured. Run: `cargo run --release --example who_learns [-- --fast]`.

mod common;

use common::{Data, head, out_dir, train_epoch, two_moons};
use morphgrad::experiment::plots::{Chart, Series, draw_panels};
use morphgrad::models::Head;
use morphgrad::optim::Adam;
use morphgrad::{Tensor, ops};
use ndarray::ArrayD;

const H: usize = 64;
const BUCKETS: [&str; 4] = ["0", "1-9", "10-99", "100 or more"];

/// The max-plus layer's learnable weight values: the dense matrix, or the
/// active entries of the sparse one.
fn weights(head: &Head) -> &Tensor {
    match head {
        Head::DenseMorph { maxplus, .. } => &maxplus.weight,
        Head::SparseMorph { maxplus, .. } => &maxplus.weight.values,
        _ => unreachable!("a morph head"),
    }
}

/// Wins of every weight over `points`: the weight gradient of the max-plus
/// layer when every output sends back a gradient of 1 (each output of each
/// sample routes its 1 to its winner, so the gradient counts the wins).
fn wins(head: &mut Head, points: &Data) -> Vec<f32> {
    let z = common::maxplus_input(head, points).expect("a morph head");
    let y = match head {
        Head::DenseMorph { maxplus, .. } => ops::maxplus(&z, &maxplus.weight, maxplus.bias.as_ref()),
        Head::SparseMorph { maxplus, .. } => {
            ops::sparse_maxplus(&z, &maxplus.weight.pattern, &maxplus.weight.values, &maxplus.bias)
        }
        _ => unreachable!(),
    };
    let grads = y.backward_with(&ArrayD::ones(y.shape()));
    grads.get(weights(head)).map_or_else(|| vec![0.0; weights(head).numel()], |g| g.iter().copied().collect())
}

fn main() -> anyhow::Result<()> {
    morphgrad::runtime::init();
    let out = out_dir("who_learns");
    let epochs = if common::fast() { 4 } else { 20 };
    let train = two_moons(300, 0.25, 1);
    let (mut learned, mut histograms) = (Vec::new(), Vec::new());
    let mut shares = Vec::new();
    for name in ["dense-morph", "sparse-morph"] {
        let mut head = head(name, 2, H, 2, 0);
        let mut opt = Adam::new(1e-2, 0.0);
        let mut received = vec![false; weights(&head).numel()];
        let mut curve = vec![(0.0, 0.0)];
        for epoch in 1..=epochs {
            train_epoch(&mut head, &mut opt, &train, epoch as u64, |head, grads| {
                if let Some(g) = grads.get(weights(head)) {
                    received.iter_mut().zip(g.iter()).for_each(|(r, &g)| *r |= g != 0.0);
                }
            });
            let share = 100.0 * received.iter().filter(|&&r| r).count() as f64 / received.len() as f64;
            curve.push((epoch as f64, share));
        }
        let label = head.kind().label();
        let share = curve.last().unwrap().1;
        let mut w = wins(&mut head, &train);
        let total: f32 = w.iter().sum();
        w.sort_by(|a, b| b.total_cmp(a));
        let top = w[..w.len().div_ceil(10)].iter().sum::<f32>() / total * 100.0;
        println!(
            "{label:>13}: {} active max-plus weights, {share:.1} % received gradient in {epochs} epochs; \
             the top 10 % of weights take {top:.1} % of the wins",
            w.len()
        );
        let mut counts = [0usize; BUCKETS.len()];
        for &v in &w {
            counts[if v < 1.0 { 0 } else { (v.log10().floor() as usize + 1).min(BUCKETS.len() - 1) }] += 1;
        }
        let points = counts.iter().enumerate().map(|(b, &c)| (b as f64, 100.0 * c as f64 / w.len() as f64)).collect();
        histograms.push(Series { name: label.clone(), points, line: true, ..Series::default() });
        learned.push(Series { name: label, points: curve, line: true, ..Series::default() });
        shares.push(share);
    }
    let charts = [
        Chart {
            title: "Weights that have learned",
            x_label: "epoch",
            y_label: "% of active max-plus weights with any gradient so far",
            series: learned,
            y_range: Some((0.0, 100.0)),
            ..Chart::default()
        },
        Chart {
            title: "Wins per weight over the training set (after training)",
            x_label: "training samples (of 600) whose max the weight wins",
            y_label: "% of active weights",
            series: histograms,
            x_categories: BUCKETS.map(String::from).to_vec(),
            y_range: Some((0.0, 100.0)),
            ..Chart::default()
        },
    ];
    draw_panels("Who learns in a max-plus layer of width 64", &charts, 2, &out.join("who_learns"))?;
    println!("pictures in {}", out.display());
    println!("look at: who_learns.png — left, the share of weights that ever received a gradient: a dense unit");
    println!("  hands each sample's gradient to one of its 64 inputs, so most weights never win and never learn;");
    println!("  a sparse unit has ~2 inputs and its bias to choose from, and most of them win some samples.");
    println!("  Right: how the wins are spread over the weights after training.");
    println!("sparse - dense share of weights that learned: {:.1} points", shares[1] - shares[0]);
    Ok(())
}
