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
use ndarray::{ArrayD, IxDyn, Zip};

use super::{Optimizer, for_each_param_with_grad};
use crate::autograd::Grads;
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
            let (w1, b2f, w2) = ((1.0 - b1) as f32, b2 as f32, (1.0 - b2) as f32);
            Zip::from(p).and(g).and(&mut st.exp_avg).and(&mut st.exp_avg_sq).for_each(|p, &g, m, v| {
                let g = if wd != 0.0 { g + wd * *p } else { g };
                *m = lerp(*m, g, w1);
                *v = *v * b2f + w2 * g * g;
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p += -step_size * (*m / denom);
            });
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
            let exp_avg = get_f32(sd, &format!("{name}.exp_avg"))?.clone();
            let exp_avg_sq = get_f32(sd, &format!("{name}.exp_avg_sq"))?.clone();
            state.insert(name.to_string(), AdamState { step, exp_avg, exp_avg_sq });
        }
        self.state = state;
        Ok(())
    }
}

/// `torch.lerp`: `a + w(b - a)` for `w < 0.5`, else `b - (b - a)(1 - w)`.
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w < 0.5 { a + w * (b - a) } else { b - (b - a) * (1.0 - w) }
}
