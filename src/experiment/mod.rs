//! Training protocols and reports: resumable runs, the CIFAR-10 and MTAT
//! reproductions, tables and plots.

pub mod cifar;
pub mod cifar_report;
pub mod forward;
pub mod grid;
pub mod mtat;
pub mod mtat_report;
pub mod plots;
pub mod run_dir;
pub mod stats;
