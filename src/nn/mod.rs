//! Layers with named parameters, the [`Module`] trait and checkpoints.

pub mod checkpoint;
pub mod layers;
pub mod module;

pub use layers::{BatchNorm, Conv2d, ConvBlock, Dropout, Linear};
pub use module::{Ctx, Entry, Module, ModuleExt, StateDict, StateValue, visit_child};
