//! Stochastic gradient descent as `torch.optim.SGD` (dampening 0):
//!
//! ```text
//! d ← g + wd·p
//! buf ← d (first step) | μ·buf + d
//! p ← p - lr · (d + μ·buf)   (Nesterov)   or   p - lr·buf   (classical)
//! ```

use std::collections::BTreeMap;

use anyhow::Result;
use ndarray::{ArrayD, Zip};

use super::{Optimizer, for_each_param_with_grad};
use crate::autograd::Grads;
use crate::nn::{Module, StateDict, StateValue};

pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    momentum_buffer: BTreeMap<String, ArrayD<f32>>,
}

impl Sgd {
    pub fn new(lr: f32, momentum: f32, nesterov: bool, weight_decay: f32) -> Sgd {
        assert!(!nesterov || momentum > 0.0, "Nesterov momentum requires momentum > 0");
        Sgd { lr, momentum, nesterov, weight_decay, momentum_buffer: BTreeMap::new() }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Module, grads: &Grads) {
        let (lr, mu, wd, nesterov) = (self.lr, self.momentum, self.weight_decay, self.nesterov);
        for_each_param_with_grad(model, grads, |name, p, g| {
            let mut d = g.clone();
            if wd != 0.0 {
                Zip::from(&mut d).and(&*p).for_each(|d, &p| *d += wd * p);
            }
            if mu != 0.0 {
                match self.momentum_buffer.get_mut(name) {
                    None => {
                        self.momentum_buffer.insert(name.to_string(), d.clone());
                    }
                    Some(buf) => Zip::from(&mut *buf).and(&d).for_each(|b, &d| *b = *b * mu + d),
                }
                let buf = &self.momentum_buffer[name];
                if nesterov {
                    Zip::from(&mut d).and(buf).for_each(|d, &b| *d += mu * b);
                } else {
                    d.assign(buf);
                }
            }
            Zip::from(p).and(&d).for_each(|p, &d| *p += -lr * d);
        });
    }

    fn lr(&self) -> f32 {
        self.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn state_dict(&self) -> StateDict {
        self.momentum_buffer
            .iter()
            .map(|(name, b)| (format!("{name}.momentum_buffer"), StateValue::F32(b.clone())))
            .collect()
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let mut buffers = BTreeMap::new();
        for (key, v) in sd {
            if let (Some(name), StateValue::F32(a)) = (key.strip_suffix(".momentum_buffer"), v) {
                buffers.insert(name.to_string(), a.clone());
            }
        }
        self.momentum_buffer = buffers;
        Ok(())
    }
}
