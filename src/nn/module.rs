//! The `Module` trait: a layer or model exposes its parameters and buffers
//! under stable dotted names (PyTorch `state_dict` style, e.g.
//! `blocks.0.conv.weight`, `head.bn1.running_mean`), and everything else —
//! optimisers, checkpoints, pruning, weight import — works through that pair
//! of visitors (`visit` to read, `visit_mut` to change). Every layer and
//! model also has one forward signature, [`Forward`].

use std::collections::BTreeMap;

use ndarray::ArrayD;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::morph::SparseWeight;
use crate::tensor::Tensor;

/// One named piece of state, handed out by [`Module::visit`].
pub enum Entry<'a> {
    /// A learnable leaf tensor (created with [`Tensor::param`]).
    Param(&'a Tensor),
    /// A non-learnable array such as a BatchNorm running mean.
    Buffer(&'a ArrayD<f32>),
    /// An integer counter such as `num_batches_tracked`.
    Counter(&'a i64),
    /// A sparse max-plus weight: learnable values of its active entries.
    /// In a state dict it appears dense, `[out, in]`, `-∞` where inactive.
    Sparse(&'a SparseWeight),
}

/// The same entries as [`Entry`], handed out mutably by [`Module::visit_mut`].
pub enum EntryMut<'a> {
    Param(&'a mut Tensor),
    Buffer(&'a mut ArrayD<f32>),
    Counter(&'a mut i64),
    Sparse(&'a mut SparseWeight),
}

/// A value of a state dict.
#[derive(Clone, Debug, PartialEq)]
pub enum StateValue {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl StateValue {
    pub fn shape(&self) -> &[usize] {
        match self {
            StateValue::F32(a) => a.shape(),
            StateValue::I64(a) => a.shape(),
        }
    }
}

/// Named state, sorted by name: parameters, buffers, counters.
pub type StateDict = BTreeMap<String, StateValue>;

/// Anything with named parameters and buffers.
///
/// The two visitors list the same entries under the same names in the same
/// order (`tests/checkpoint.rs` checks it for every model); they are written
/// out twice because Rust has no way to be generic over `&` and `&mut`.
pub trait Module {
    /// Call `f` once for every parameter and buffer, with its dotted name, in
    /// a fixed order.
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>));
    /// [`Module::visit`] with mutable access, for optimisers and loading.
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>));
}

/// Visit `child`'s state with every name prefixed by `prefix.`.
pub fn visit_child(prefix: &str, child: &(impl Module + ?Sized), f: &mut dyn FnMut(&str, Entry<'_>)) {
    child.visit(&mut |name, e| f(&format!("{prefix}.{name}"), e));
}

/// [`visit_child`] with mutable access.
pub fn visit_child_mut(prefix: &str, child: &mut (impl Module + ?Sized), f: &mut dyn FnMut(&str, EntryMut<'_>)) {
    child.visit_mut(&mut |name, e| f(&format!("{prefix}.{name}"), e));
}

/// The forward pass, with one signature for every layer and model: the
/// module mutably (BatchNorm updates its running statistics in training
/// mode), the input, and the [`Ctx`] (train or eval mode, the random stream
/// dropout draws from). Layers return a [`Tensor`]; models, which check the
/// shape of what a user hands them, return a `Result`.
pub trait Forward {
    type Output;
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Self::Output;
}

/// Why a state dict does not fit a model: every offending entry, in the
/// model's order, then the unexpected ones — what a caller needs to rename,
/// reshape or drop entries (as `morphgrad forward` does with the authors'
/// names).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("state dict does not fit the model:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
pub struct StateDictError(pub Vec<Misfit>);

/// One entry of a [`StateDictError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Misfit {
    #[error("missing `{name}` (shape {shape:?})")]
    Missing { name: String, shape: Vec<usize> },
    #[error("unexpected `{name}` (shape {shape:?})")]
    Unexpected { name: String, shape: Vec<usize> },
    #[error("`{name}` holds {found} values, expected {expected}")]
    Dtype { name: String, found: &'static str, expected: &'static str },
    #[error("`{name}` has shape {found:?}, the model expects {expected:?}")]
    Shape { name: String, found: Vec<usize>, expected: Vec<usize> },
}

/// Conveniences every [`Module`] gets.
pub trait ModuleExt: Module {
    /// A copy of every parameter and buffer, keyed by name.
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        self.visit(&mut |name, e| {
            let v = match e {
                Entry::Param(t) => StateValue::F32(t.value().clone()),
                Entry::Buffer(a) => StateValue::F32(a.clone()),
                Entry::Counter(c) => StateValue::I64(ArrayD::from_elem(ndarray::IxDyn(&[]), *c)),
                Entry::Sparse(w) => StateValue::F32(w.to_dense(f32::NEG_INFINITY)),
            };
            sd.insert(name.to_string(), v);
        });
        sd
    }

    /// Replace every parameter and buffer with the entry of the same name.
    /// Strict: a missing name, an unexpected name, a wrong shape or a wrong
    /// dtype is an error listing all offenders ([`StateDictError`]); on
    /// error nothing changes. A sparse weight takes its pattern from the
    /// dense matrix it is given (entries `<= -1e8` or `-∞` are inactive).
    fn load_state_dict(&mut self, sd: &StateDict) -> Result<(), StateDictError> {
        let mut misfits = Vec::new();
        let mut expected = Vec::new();
        self.visit(&mut |name, e| {
            expected.push(name.to_string());
            let want: Vec<usize> = match &e {
                Entry::Param(t) => t.shape().to_vec(),
                Entry::Buffer(a) => a.shape().to_vec(),
                Entry::Counter(_) => vec![],
                Entry::Sparse(w) => w.shape().to_vec(),
            };
            let name = name.to_string();
            match (sd.get(&name), &e) {
                (None, _) => misfits.push(Misfit::Missing { name, shape: want }),
                (Some(StateValue::I64(_)), Entry::Param(_) | Entry::Buffer(_) | Entry::Sparse(_)) => {
                    misfits.push(Misfit::Dtype { name, found: "int64", expected: "float32" })
                }
                (Some(StateValue::F32(_)), Entry::Counter(_)) => {
                    misfits.push(Misfit::Dtype { name, found: "float32", expected: "an int64 counter" })
                }
                (Some(v), _) if v.shape() != want.as_slice() && !(want.is_empty() && v.shape() == [1]) => {
                    misfits.push(Misfit::Shape { name, found: v.shape().to_vec(), expected: want })
                }
                _ => {}
            }
        });
        for name in sd.keys() {
            if !expected.contains(name) {
                misfits.push(Misfit::Unexpected { name: name.clone(), shape: sd[name].shape().to_vec() });
            }
        }
        if !misfits.is_empty() {
            return Err(StateDictError(misfits));
        }
        self.visit_mut(&mut |name, e| match (e, &sd[name]) {
            (EntryMut::Param(t), StateValue::F32(a)) => *t = Tensor::param(a.clone()),
            (EntryMut::Buffer(b), StateValue::F32(a)) => *b = a.clone(),
            (EntryMut::Counter(c), StateValue::I64(a)) => *c = *a.iter().next().expect("one value"),
            (EntryMut::Sparse(w), StateValue::F32(a)) => *w = SparseWeight::from_dense(a).expect("shape checked"),
            _ => unreachable!("checked above"),
        });
        Ok(())
    }

    /// Number of learnable scalars (active entries only, for sparse weights).
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |_, e| match e {
            Entry::Param(t) => n += t.numel(),
            Entry::Sparse(w) => n += w.values.numel(),
            _ => {}
        });
        n
    }

    /// Names of the learnable parameters, in visiting order.
    fn param_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.visit(&mut |name, e| {
            if let Entry::Param(_) | Entry::Sparse(_) = e {
                names.push(name.to_string());
            }
        });
        names
    }
}

impl<M: Module + ?Sized> ModuleExt for M {}

/// What a forward pass needs besides its input: train or eval mode, and the
/// random stream dropout draws from.
pub struct Ctx {
    pub train: bool,
    pub rng: Xoshiro256PlusPlus,
}

impl Ctx {
    /// Training mode (batch statistics, dropout on), dropout seeded by `seed`.
    pub fn train(seed: u64) -> Ctx {
        Ctx { train: true, rng: Xoshiro256PlusPlus::seed_from_u64(seed) }
    }

    /// Evaluation mode (running statistics, dropout off).
    pub fn eval() -> Ctx {
        Ctx { train: false, rng: Xoshiro256PlusPlus::seed_from_u64(0) }
    }
}

/// An optional layer (e.g. a head's BatchNorm that a variant leaves out):
/// no state when absent.
impl<M: Module> Module for Option<M> {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        if let Some(m) = self {
            m.visit(f);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        if let Some(m) = self {
            m.visit_mut(f);
        }
    }
}

/// An absent layer is the identity.
impl<M: Forward<Output = Tensor>> Forward for Option<M> {
    type Output = Tensor;
    fn forward(&mut self, x: &Tensor, ctx: &mut Ctx) -> Tensor {
        match self {
            Some(m) => m.forward(x, ctx),
            None => x.clone(),
        }
    }
}
