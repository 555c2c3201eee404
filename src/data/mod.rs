//! Datasets: CIFAR-10 in every usual form, the MTAT layout, and seeded
//! synthetic generators that stand in for both on a fresh clone.

pub mod cifar;
pub mod identity;
pub mod mtat;
pub mod preprocess;
pub mod synthetic;
