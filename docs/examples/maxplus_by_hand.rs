//! The worked example of the subgradient tutorial (docs/subgradients.md §3),
//! computed by the library and printed step by step: every candidate
//! `x[i] + W[j, i]` and the bias, the winner of each output, and where each
//! output's upstream gradient goes. Draws the candidates of each output with
//! its winner marked. Run: `cargo run --release --example maxplus_by_hand`.

mod common;

use morphgrad::experiment::plots::{Chart, Series, draw_panels};
use morphgrad::kernels::maxplus::{Dims, scalar};
use morphgrad::{Tensor, ops};
use ndarray::{arr1, arr2};

fn main() -> anyhow::Result<()> {
    let out = common::out_dir("maxplus_by_hand");
    let (x, b) = ([1.0f32, 3.0], [0.0f32, 1.0, 1.5]);
    let w = [[0.5f32, -1.0], [2.0, f32::NEG_INFINITY], [-3.0, -2.0]];
    let g = [1.0f32, 10.0, 100.0];

    // The forward pass and the winners, by the reference kernel (the definition).
    let d = Dims { batch: 1, n_in: 2, n_out: 3 };
    let (mut y, mut winners) = ([0.0f32; 3], [0u32; 3]);
    scalar::forward(d, &x, w.as_flattened(), Some(&b), &mut y, &mut winners);
    println!("x = {x:?}, b = {b:?}");
    let mut charts = Vec::new();
    let mut names = Vec::new();
    for j in 0..3 {
        let candidates = [x[0] + w[j][0], x[1] + w[j][1], b[j]];
        let winner = winners[j] as usize;
        let who = if winner == 2 { "the bias".to_string() } else { format!("input {winner}") };
        println!("output {j}: candidates x+W = {:?}, bias {}  ->  max {} won by {who}", &candidates[..2], b[j], y[j]);
        let label = |i: usize| match i {
            2 => format!("b[{j}]"),
            _ if candidates[i] == f32::NEG_INFINITY => format!("x[{i}] + W[{j},{i}] = −∞"),
            _ => format!("x[{i}] + W[{j},{i}]"),
        };
        let finite = |i: &usize| candidates[*i].is_finite();
        let all = (0..3).filter(finite).map(|i| (i as f64, candidates[i] as f64)).collect();
        let won = vec![(winner as f64, y[j] as f64)];
        charts.push(Chart {
            x_label: "candidate (a −∞ candidate is not drawn)",
            y_label: "value",
            series: vec![
                Series { name: "candidates".into(), points: all, ..Series::default() },
                Series { name: format!("winner: {who}"), points: won, ..Series::default() },
            ],
            x_categories: (0..3).map(label).collect(),
            y_range: Some((-3.0, 5.0)),
            legend_top: true,
            ..Chart::default()
        });
        names.push(format!("output {j}: max = {}", y[j]));
    }

    // The same layer through autograd: the gradient of each output goes to its winner only.
    let xt = Tensor::param(arr2(&[x]).into_dyn());
    let wt = Tensor::param(arr2(&w).into_dyn());
    let bt = Tensor::param(arr1(&b).into_dyn());
    let yt = ops::maxplus(&xt, &wt, Some(&bt));
    assert_eq!(yt.data(), &y, "the op and the reference kernel agree");
    let grads = yt.backward_with(&arr2(&[g]).into_dyn());
    println!("upstream gradient g = {g:?}; each g[j] goes, whole, to the winner of output j:");
    for j in 0..3 {
        match winners[j] as usize {
            2 => println!("  g[{j}] = {:>5} -> db[{j}]", g[j]),
            i => println!("  g[{j}] = {:>5} -> dx[{i}] and dW[{j},{i}]", g[j]),
        }
    }
    let show = |t: &Tensor| grads.get(t).map(|a| a.iter().copied().collect::<Vec<f32>>()).unwrap_or_default();
    println!("dx = {:?}\ndW = {:?} (row by row)\ndb = {:?}", show(&xt), show(&wt), show(&bt));

    let titled: Vec<Chart> = charts.into_iter().zip(&names).map(|(c, t)| Chart { title: t, ..c }).collect();
    draw_panels("max-plus by hand: x = [1, 3], one output per panel", &titled, 3, &out.join("candidates"))?;
    println!("pictures in {}", out.display());
    println!("look at: candidates.png — one panel per output; the winner (orange) is the largest candidate,");
    println!("  and it is the only one whose input, weight or bias receives that output's gradient.");
    Ok(())
}
