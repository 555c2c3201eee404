//! Layers with named parameters, the [`Module`] trait and checkpoints.

pub mod checkpoint;
pub mod layers;
pub mod module;
pub mod morph;

pub use layers::{BatchNorm, Conv2d, ConvBlock, Dropout, Linear};
pub use module::{Ctx, Entry, Module, ModuleExt, StateDict, StateValue, visit_child};
pub use morph::{MaxPlus, Maxout, SparseMaxPlus, SparseWeight};
