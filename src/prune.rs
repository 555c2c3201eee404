//! L1 unstructured pruning after training, no fine-tuning — the paper's
//! rules, and its count of the head parameters that remain.
//!
//! * Linear rule `(r, extra)`: `k = floor(r·numel) + extra` (at most numel);
//!   the threshold is the k-th smallest `|w|`; every `|w| <= threshold`
//!   becomes 0 (ties at the threshold all go, so more than k may).
//! * MaxPlus rule `(r)`: the same on raw `w`; every `w <= threshold`
//!   becomes `-∞` (inactive: it can never win a max again).
//!
//! Per head (`r1` for the first head layer, `r2` for the last):
//! relu — dense1 (r1), dense2 (r2); maxout — each branch `1-(1-r1)/2` with
//! `extra = out/2`, dense2 (r2); dense-morph — dense1 and the MaxPlus with
//! `1-(1-r1)/2`, dense2 (r2); sparse-morph — dense1 with r1 and
//! `extra = 2h`, MaxPlus untouched, dense2 (r2). Remaining parameters =
//! Σ over pruned layers of `numel + bias - k`, plus `3h` for the sparse
//! MaxPlus (about two active weights and a bias per neuron).

use anyhow::{Result, bail};
use ndarray::ArrayD;
use serde::Serialize;

use crate::models::{Head, HeadKind};
use crate::nn::{Linear, MaxPlus};
use crate::tensor::Tensor;

/// What pruning did to one layer.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerPrune {
    pub layer: String,
    pub ratio: f64,
    pub extra: usize,
    /// Weights the rule asked to remove.
    pub k: usize,
    pub threshold: f32,
    /// Measured fraction of inactive weights after pruning (0 for linear, -∞ for max-plus).
    pub sparsity: f64,
}

/// The result of pruning a head.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HeadPrune {
    /// Remaining head parameters by the paper's accounting.
    pub params: usize,
    pub layers: Vec<LayerPrune>,
}

impl HeadPrune {
    /// Measured sparsity by layer name.
    pub fn sparsity(&self) -> std::collections::BTreeMap<String, f64> {
        self.layers.iter().map(|l| (l.layer.clone(), l.sparsity)).collect()
    }
}

/// `k = min(floor(r·numel) + extra, numel)`, rejecting ratios outside [0, 1].
pub fn count(ratio: f64, extra: usize, numel: usize) -> Result<usize> {
    if !(0.0..=1.0).contains(&ratio) {
        bail!("pruning ratio {ratio} is not in [0, 1]");
    }
    Ok(((ratio * numel as f64).floor() as usize + extra).min(numel))
}

/// The k-th smallest (1-based) of `keys`; `-∞` when `k == 0`.
fn kth_smallest(mut keys: Vec<f32>, k: usize) -> f32 {
    if k == 0 {
        return f32::NEG_INFINITY;
    }
    let (_, kth, _) = keys.select_nth_unstable_by(k - 1, f32::total_cmp);
    *kth
}

/// The linear rule on `w` in place; returns `(k, threshold)`.
pub fn prune_linear(w: &mut ArrayD<f32>, ratio: f64, extra: usize) -> Result<(usize, f32)> {
    let k = count(ratio, extra, w.len())?;
    let thr = kth_smallest(w.iter().map(|v| v.abs()).collect(), k);
    w.mapv_inplace(|v| if v.abs() <= thr { 0.0 } else { v });
    Ok((k, thr))
}

/// The max-plus rule on `w` in place; returns `(k, threshold)`.
pub fn prune_maxplus(w: &mut ArrayD<f32>, ratio: f64) -> Result<(usize, f32)> {
    let k = count(ratio, 0, w.len())?;
    let thr = kth_smallest(w.iter().copied().collect(), k);
    w.mapv_inplace(|v| if v <= thr { f32::NEG_INFINITY } else { v });
    Ok((k, thr))
}

fn fraction(w: &Tensor, inactive: impl Fn(f32) -> bool) -> f64 {
    w.data().iter().filter(|&&v| inactive(v)).count() as f64 / w.numel().max(1) as f64
}

fn linear(name: &str, layer: &mut Linear, ratio: f64, extra: usize, params: &mut usize) -> Result<LayerPrune> {
    let mut res = Ok((0, 0.0));
    layer.weight.update(|w| res = prune_linear(w, ratio, extra));
    let (k, threshold) = res?;
    *params += layer.weight.numel() + layer.bias.as_ref().map_or(0, Tensor::numel) - k;
    Ok(LayerPrune { layer: name.into(), ratio, extra, k, threshold, sparsity: fraction(&layer.weight, |v| v == 0.0) })
}

fn maxplus(name: &str, layer: &mut MaxPlus, ratio: f64, params: &mut usize) -> Result<LayerPrune> {
    let mut res = Ok((0, 0.0));
    layer.weight.update(|w| res = prune_maxplus(w, ratio));
    let (k, threshold) = res?;
    *params += layer.weight.numel() + layer.bias.as_ref().map_or(0, Tensor::numel) - k;
    let sparsity = fraction(&layer.weight, |v| v == f32::NEG_INFINITY);
    Ok(LayerPrune { layer: name.into(), ratio, extra: 0, k, threshold, sparsity })
}

/// Prune a trained head in place by the paper's rules for its kind.
pub fn prune_head(head: &mut Head, r1: f64, r2: f64) -> Result<HeadPrune> {
    let mut params = 0;
    let half = 1.0 - (1.0 - r1) / 2.0;
    let layers = match head {
        Head::Relu { dense1, dense2, .. } => {
            vec![linear("dense1", dense1, r1, 0, &mut params)?, linear("dense2", dense2, r2, 0, &mut params)?]
        }
        Head::Maxout { maxout, dense2, .. } => {
            let mut v = Vec::new();
            for (i, (lin, _)) in maxout.branches.iter_mut().enumerate() {
                let extra = lin.d_out() / 2;
                v.push(linear(&format!("maxout.branches.{i}.linear"), lin, half, extra, &mut params)?);
            }
            v.push(linear("dense2", dense2, r2, 0, &mut params)?);
            v
        }
        Head::DenseMorph { dense1, maxplus: mp, dense2, .. } => vec![
            linear("dense1", dense1, half, 0, &mut params)?,
            maxplus("maxplus", mp, half, &mut params)?,
            linear("dense2", dense2, r2, 0, &mut params)?,
        ],
        Head::SparseMorph { dense1, maxplus: mp, dense2, .. } => {
            let h = dense1.d_out();
            let first = linear("dense1", dense1, r1, 2 * h, &mut params)?;
            params += 3 * h;
            let [out, inp] = mp.weight.shape();
            let untouched = LayerPrune {
                layer: "maxplus".into(),
                ratio: 0.0,
                extra: 0,
                k: 0,
                threshold: f32::NEG_INFINITY,
                sparsity: 1.0 - mp.weight.pattern.nnz() as f64 / (out * inp) as f64,
            };
            vec![first, untouched, linear("dense2", dense2, r2, 0, &mut params)?]
        }
        Head::Zhang { .. } => bail!("the paper defines no pruning rule for the {} head", HeadKind::Zhang.id()),
    };
    Ok(HeadPrune { params, layers })
}
