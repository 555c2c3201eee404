//! Three heads on two moons: ReLU, Dense-Morph and Sparse-Morph, each
//! `Linear(2, 16) → BatchNorm → (ReLU | MaxPlus(16, 16)) → Linear(16, 2)`.
//! Draws the decision regions after training and, for one unit of each
//! max-plus layer, its *winner map*: which input (or the bias) wins the max
//! at each point of the plane — the only weight that learns from a sample
//! there. Run: `cargo run --release --example toy_2d [-- --fast] [--out DIR]`.

mod common;

use common::{Data, accuracy, grid, head, out_dir, predict, train_epoch, two_moons};
use morphgrad::experiment::plots::{Map, draw_maps};
use morphgrad::kernels::maxplus::{Dims, scalar};
use morphgrad::models::Head;
use morphgrad::optim::Adam;

const X: (f32, f32) = (-1.6, 2.6);
const Y: (f32, f32) = (-1.1, 1.6);
const CELLS: usize = 90;

/// The winner (input index, or `h` for the bias) of every max-plus unit at
/// every point: `[points, h]`, or `None` for a head without a max-plus layer.
fn winners(head: &mut Head, points: &Data) -> Option<(Vec<u32>, usize)> {
    let z = common::maxplus_input(head, points)?;
    let (w, b) = match head {
        Head::DenseMorph { maxplus, .. } => {
            (maxplus.weight.data().to_vec(), maxplus.bias.as_ref().map(|b| b.data().to_vec()))
        }
        Head::SparseMorph { maxplus, .. } => {
            (maxplus.weight.to_dense(f32::NEG_INFINITY).into_raw_vec_and_offset().0, Some(maxplus.bias.data().to_vec()))
        }
        _ => unreachable!("maxplus_input returned a tensor"),
    };
    let h = z.shape()[1];
    let d = Dims { batch: points.len(), n_in: h, n_out: h };
    let (mut y, mut win) = (vec![0.0; d.batch * h], vec![0u32; d.batch * h]);
    scalar::forward(d, z.data(), &w, b.as_deref(), &mut y, &mut win);
    Some((win, h))
}

/// A map of the plane with these cells.
fn map<'a>(title: &'a str, cells: &[usize]) -> Map<'a> {
    let (x_range, y_range) = ((X.0 as f64, X.1 as f64), (Y.0 as f64, Y.1 as f64));
    Map { title, x_range, y_range, nx: CELLS, ny: CELLS, cells: cells.to_vec(), ..Map::default() }
}

fn main() -> anyhow::Result<()> {
    morphgrad::runtime::init();
    let out = out_dir("toy_2d");
    let epochs = if common::fast() { 6 } else { 40 };
    let snapshots = [0, 2, epochs];
    let (train, test) = (two_moons(300, 0.25, 1), two_moons(150, 0.25, 2));
    let plane = grid(X, Y, CELLS);
    let (mut regions, mut winner_maps) = (Vec::new(), Vec::new());
    for name in ["relu", "dense-morph", "sparse-morph"] {
        let mut head = head(name, 2, 16, 2, 0);
        let mut opt = Adam::new(1e-2, 0.0);
        let mut snaps = Vec::new();
        for epoch in 0..=epochs {
            if epoch > 0 {
                train_epoch(&mut head, &mut opt, &train, epoch as u64, |_, _| {});
            }
            if snapshots.contains(&epoch) {
                snaps.extend(winners(&mut head, &plane).map(|w| (epoch, w)));
            }
        }
        let acc = accuracy(&mut head, &test);
        println!("{name:>13}: test accuracy {acc:.1} % after {epochs} epochs");
        let label = head.kind().label();
        let points: Vec<(f64, f64, usize)> =
            test.x.chunks(2).zip(&test.y).map(|(p, &c)| (p[0] as f64, p[1] as f64, c)).collect();
        let cells = predict(&mut head, &plane.tensor());
        regions.push((format!("{label}: {acc:.1} % on test"), cells, points));
        // The unit whose final winner map is richest (most distinct winners).
        let Some((_, (last, h))) = snaps.last() else { continue };
        let distinct = |win: &[u32], j: usize| {
            let mut seen: Vec<u32> = win.chunks(*h).map(|r| r[j]).collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        let j = (0..*h).max_by_key(|&j| (distinct(last, j).len(), std::cmp::Reverse(j))).unwrap();
        for (epoch, (win, h)) in &snaps {
            let cells: Vec<usize> = win.chunks(*h).map(|r| r[j] as usize).collect();
            let present = distinct(win, j);
            let legend: Vec<(usize, String)> = present
                .iter()
                .map(|&c| (c as usize, if c as usize == *h { "bias".into() } else { format!("input {c}") }))
                .collect();
            let n = present.len();
            let title = format!("{label}, unit {j}, epoch {epoch}: {n} winner{}", if n == 1 { "" } else { "s" });
            winner_maps.push((title, cells, legend));
        }
    }
    let panels: Vec<Map> = regions.iter().map(|(t, c, p)| Map { points: p.clone(), ..map(t, c) }).collect();
    draw_maps(
        "Decision regions (colour: predicted class; dots: test points)",
        &panels,
        3,
        &out.join("decision_regions"),
    )?;
    let panels: Vec<Map> = winner_maps.iter().map(|(t, c, l)| Map { legend: l.clone(), ..map(t, c) }).collect();
    draw_maps(
        "Winner maps: which candidate wins one max-plus unit",
        &panels,
        snapshots.len(),
        &out.join("winner_maps"),
    )?;
    println!("pictures in {}", out.display());
    println!("look at: decision_regions.png — the three heads draw their boundaries between the moons.");
    println!(
        "  winner_maps.png — each colour is the one weight (or the bias) that receives the gradient of the samples"
    );
    println!(
        "  there; a dense unit splits the plane among a few of its 16 inputs, a sparse unit can only choose among"
    );
    println!("  its few active inputs (about 2) and its bias.");
    Ok(())
}
