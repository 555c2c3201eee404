//! Whether operations record a graph: PyTorch's `no_grad` / inference mode.
//!
//! The switch is per thread. Ops are issued from the thread that drives the
//! model (rayon workers only run kernels), so a thread-local flag is exact.

use std::cell::Cell;

use crate::tensor::Tensor;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether new ops on this thread record the graph.
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Whether an op with these inputs must record itself for `backward`.
pub fn is_recording(inputs: &[&Tensor]) -> bool {
    grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// Run `f` without recording anything: no graph, no saved activations, no
/// winner indices. Use it for evaluation; nesting is fine.
///
/// ```
/// use morphgrad::{autograd::no_grad, Tensor};
/// use ndarray::arr1;
/// let w = Tensor::param(arr1(&[1.0f32, 2.0]).into_dyn());
/// let y = no_grad(|| w.relu());
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Disables recording until dropped (restores the previous state, also on panic).
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> NoGradGuard {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        NoGradGuard::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}
