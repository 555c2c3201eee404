//! Layers with named parameters, the [`Module`] trait and checkpoints, and
//! the mel front end of the audio model.

pub mod checkpoint;
pub mod layers;
pub mod mel;
pub mod module;
pub mod morph;

pub use layers::{BatchNorm, Conv2d, ConvBlock, Dropout, Linear};
pub use module::{
    Ctx, Entry, EntryMut, Forward, Misfit, Module, ModuleExt, StateDict, StateDictError, StateValue, visit_child,
    visit_child_mut,
};
pub use morph::{MaxPlus, Maxout, SparseMaxPlus, SparseWeight};
