//! Optimisers matching `torch.optim` step for step (single-tensor CPU path):
//! [`Adam`] and [`Sgd`] (momentum, Nesterov). Both keep per-parameter state
//! keyed by the parameter's dotted name, so it survives checkpoints and
//! reloads.
//!
//! `zero_grad`: gradients are not stored on parameters here. Every
//! `backward()` returns a fresh [`Grads`] — the
//! equivalent of zeroing before each step. To accumulate over several
//! backward passes, `merge` them into one `Grads` and `clear` it after the step.

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use anyhow::Result;

use crate::autograd::Grads;
use crate::nn::{EntryMut, Module, StateDict};

/// A gradient-descent rule with per-parameter state.
pub trait Optimizer {
    /// Update every parameter of `model` that has a gradient in `grads`
    /// (parameters the loss did not reach are left alone, as PyTorch does
    /// for `grad is None`). Drop the graph first — the loss and every tensor
    /// computed from the parameters: while a recorded graph still holds a
    /// parameter, the step cannot change it in place and copies it
    /// ([`crate::Tensor::update`]).
    fn step(&mut self, model: &mut dyn Module, grads: &Grads);
    fn lr(&self) -> f32;
    fn set_lr(&mut self, lr: f32);
    /// The per-parameter state as `<param name>.<slot>` entries.
    fn state_dict(&self) -> StateDict;
    /// Restore what [`Optimizer::state_dict`] produced.
    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()>;
}

/// Call `update(name, value, grad)` for every parameter with a gradient.
fn for_each_param_with_grad(
    model: &mut dyn Module,
    grads: &Grads,
    mut update: impl FnMut(&str, &mut ndarray::ArrayD<f32>, &ndarray::ArrayD<f32>),
) {
    model.visit_mut(&mut |name, e| {
        let t = match e {
            EntryMut::Param(t) => t,
            EntryMut::Sparse(w) => &mut w.values,
            EntryMut::Buffer(_) | EntryMut::Counter(_) => return,
        };
        if let Some(g) = grads.get(t) {
            crate::runtime::keep_workers_warm();
            t.update(|w| update(name, w, g));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;
    use crate::nn::{Ctx, Forward, Linear};
    use rand::SeedableRng;

    #[test]
    fn a_step_after_the_graph_is_dropped_changes_the_parameters_in_place() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
        let mut model = Linear::new(4, 3, true, &mut rng);
        let x = Tensor::new(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, 4]), 0.5));
        let mut opt = Adam::new(1e-2, 0.0);
        let id = model.weight.id();
        let before = model.weight.value().clone();
        let grads = model.forward(&x, &mut Ctx::train(0)).sum_all().backward();
        opt.step(&mut model, &grads);
        assert_eq!(model.weight.id(), id, "updated in place");
        assert_ne!(model.weight.value(), &before, "and updated");
        // With the graph alive the step must leave the graph's copy alone.
        let loss = model.forward(&x, &mut Ctx::train(0)).sum_all();
        opt.step(&mut model, &loss.backward());
        assert_ne!(model.weight.id(), id, "copied while a graph holds it");
    }
}
