//! Adam (Kingma & Ba) exactly as `torch.optim.Adam(foreach=False)` computes
//! it in f32, with L2 weight decay added to the gradient:
//!
//! ```text
//! g ← g + wd·p
//! m ← m + (1-β1)(g - m)            v ← β2·v + (1-β2)·g·g
//! p ← p - (lr / (1-β1^t)) · m / (√v / √(1-β2^t) + ε)
//! ```

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::{Optimizer, for_each_param_with_grad};
use crate::autograd::Grads;
use crate::kernels::{PAR_MIN, simd_dispatch};
use crate::nn::checkpoint::get_f32;
use crate::nn::{Module, StateDict, StateValue};

pub struct Adam {
    pub lr: f32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f32,
    pub weight_decay: f32,
    state: BTreeMap<String, AdamState>,
}

struct AdamState {
    step: i64,
    exp_avg: ArrayD<f32>,
    exp_avg_sq: ArrayD<f32>,
}

impl Adam {
    /// Adam with β = (0.9, 0.999), ε = 1e-8.
    pub fn new(lr: f32, weight_decay: f32) -> Adam {
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, state: BTreeMap::new() }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut dyn Module, grads: &Grads) {
        let (lr, b1, b2, eps, wd) = (self.lr as f64, self.beta1, self.beta2, self.eps, self.weight_decay);
        for_each_param_with_grad(model, grads, |name, p, g| {
            let st = self.state.entry(name.to_string()).or_insert_with(|| AdamState {
                step: 0,
                exp_avg: ArrayD::zeros(p.raw_dim()),
                exp_avg_sq: ArrayD::zeros(p.raw_dim()),
            });
            st.step += 1;
            let t = st.step as i32;
            let step_size = (lr / (1.0 - b1.powi(t))) as f32;
            let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
            let k =
                Consts { wd, w1: (1.0 - b1) as f32, b2: b2 as f32, w2: (1.0 - b2) as f32, bc2_sqrt, eps, step_size };
            // Parameters and the state are kept in standard layout (`Tensor::update`,
            // `load_state_dict`); a gradient in another layout is copied into it.
            let g = g.as_standard_layout();
            let p = p.as_slice_mut().expect("parameters are kept in standard layout");
            let g = g.as_slice().expect("standard layout");
            let m = st.exp_avg.as_slice_mut().expect("kept in standard layout");
            let v = st.exp_avg_sq.as_slice_mut().expect("kept in standard layout");
            assert!(
                g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
                "Adam: parameter `{name}` has {} values but its gradient {}, its state {} and {} \
                 (a checkpoint of another model?)",
                p.len(),
                g.len(),
                m.len(),
                v.len()
            );
            // Element by element, so runs in parallel give the same bits.
            if p.len() >= PAR_MIN {
                p.par_chunks_mut(RUN)
                    .zip(g.par_chunks(RUN))
                    .zip(m.par_chunks_mut(RUN))
                    .zip(v.par_chunks_mut(RUN))
                    .for_each(|(((p, g), m), v)| update(p, g, m, v, k));
            } else {
                update(p, g, m, v, k);
            }
        });
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for (name, st) in &self.state {
            sd.insert(format!("{name}.step"), StateValue::I64(ArrayD::from_elem(IxDyn(&[]), st.step)));
            sd.insert(format!("{name}.exp_avg"), StateValue::F32(st.exp_avg.clone()));
            sd.insert(format!("{name}.exp_avg_sq"), StateValue::F32(st.exp_avg_sq.clone()));
        }
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let mut state = BTreeMap::new();
        for key in sd.keys() {
            let Some(name) = key.strip_suffix(".step") else { continue };
            let step = match &sd[key] {
                StateValue::I64(a) => *a.iter().next().unwrap_or(&0),
                StateValue::F32(_) => bail!("Adam state `{key}` must be int64"),
            };
            // Standard layout whatever the file's order (`step` slices the state).
            let exp_avg = get_f32(sd, &format!("{name}.exp_avg"))?.as_standard_layout().into_owned();
            let exp_avg_sq = get_f32(sd, &format!("{name}.exp_avg_sq"))?.as_standard_layout().into_owned();
            state.insert(name.to_string(), AdamState { step, exp_avg, exp_avg_sq });
        }
        self.state = state;
        Ok(())
    }
}

/// Parameters per parallel run of the update.
const RUN: usize = 1 << 14;

/// What one step's update of one parameter tensor multiplies and adds.
#[derive(Clone, Copy)]
struct Consts {
    wd: f32,
    /// `1 − β1`, `β2`, `1 − β2`.
    w1: f32,
    b2: f32,
    w2: f32,
    /// `√(1 − β2^t)`.
    bc2_sqrt: f32,
    eps: f32,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
}

simd_dispatch!(
    /// The update of the module docs for every element of `p` (the loop
    /// vectorises: the branches are selects on constants).
    fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Consts) => update_generic
);

#[inline(always)]
fn update_generic(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Consts) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if k.wd != 0.0 { g + k.wd * *p } else { g };
        *m = lerp(*m, g, k.w1);
        *v = *v * k.b2 + k.w2 * g * g;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += -k.step_size * (*m / denom);
    }
}

/// `torch.lerp`: `a + w(b - a)` for `w < 0.5`, else `b - (b - a)(1 - w)`.
#[inline(always)]
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w < 0.5 { a + w * (b - a) } else { b - (b - a) * (1.0 - w) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorised_update_gives_the_bits_of_the_formula() {
        let n = 1000;
        let vals = |seed: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 2003.0 - 0.5) * scale).collect()
        };
        // With and without weight decay, and both branches of `lerp`.
        for (wd, w1) in [(0.0, 0.1), (1e-4, 0.1), (1e-2, 0.7)] {
            let k = Consts { wd, w1, b2: 0.999, w2: 0.001, bc2_sqrt: 0.0447, eps: 1e-8, step_size: 1e-3 };
            let (g, p0, m0, v0) =
                (vals(1, 2.0), vals(2, 1.0), vals(3, 0.1), vals(4, 0.01).iter().map(|v| v.abs()).collect::<Vec<f32>>());
            let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
            update(&mut p, &g, &mut m, &mut v, k);
            let (mut pr, mut mr, mut vr): (Vec<f32>, Vec<f32>, Vec<f32>) = (p0, m0, v0);
            for i in 0..n {
                let gi = if wd != 0.0 { g[i] + wd * pr[i] } else { g[i] };
                mr[i] = if w1 < 0.5 { mr[i] + w1 * (gi - mr[i]) } else { gi - (gi - mr[i]) * (1.0 - w1) };
                vr[i] = vr[i] * k.b2 + k.w2 * gi * gi;
                pr[i] += -k.step_size * (mr[i] / (vr[i].sqrt() / k.bc2_sqrt + k.eps));
            }
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!((bits(&p), bits(&m), bits(&v)), (bits(&pr), bits(&mr), bits(&vr)), "wd {wd}, w1 {w1}");
        }
    }
}
