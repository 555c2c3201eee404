//! Reverse-mode automatic differentiation.
//!
//! Ops record themselves on their output tensor ([`Op`]); [`backward`] walks
//! that graph from a scalar loss and applies the chain rule, one `match` arm
//! per op, collecting the gradients of the leaves in [`Grads`]. Nothing is
//! recorded inside [`no_grad`]. [`gradcheck()`] compares any op's analytic
//! gradient with central finite differences.

mod backward;
pub mod gradcheck;
mod mode;
mod op;

pub(crate) use backward::scalar;
pub use backward::{Grads, backward, backward_with};
pub use gradcheck::{GradcheckReport, gradcheck};
pub use mode::{NoGradGuard, grad_enabled, is_recording, no_grad};
pub use op::{CustomOp, Grad, Op};
