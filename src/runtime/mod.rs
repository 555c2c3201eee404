//! What a program opts into once, at the start of `main`, to run the library
//! as fast as the CLI and the benches do — nothing here happens unless asked:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;
//!
//! fn main() {
//!     morphgrad::runtime::init();
//!     // ... build models, train ...
//! }
//! ```
//!
//! * [`LineAligned`] — a global allocator that starts every block of 1 KiB or
//!   more on a cache line, as PyTorch's CPU allocator aligns tensors;
//! * [`init`] — glibc's malloc keeps a training step's large buffers for reuse
//!   ([`alloc::tune_malloc`]), and the calling thread joins rayon's pool and
//!   drives the ops ([`threads`]: its idle workers then poll for work for
//!   `MORPHGRAD_SPIN_US` µs after each op instead of falling asleep).
//!
//! Environment: `RAYON_NUM_THREADS` (threads of the pool; default one per
//! core), `MORPHGRAD_SPIN_US` (default 1000; `0` when other processes need
//! the cores), `MORPHGRAD_ISA=scalar|avx2` (a slower instruction set for every
//! kernel, for comparison),
//! `MORPHGRAD_CONV=gemm|winograd` (force one convolution algorithm),
//! `MORPHGRAD_L1_BYTES=n`, `MORPHGRAD_L2_BYTES=n` (the cache sizes blocking
//! assumes; default: what [`cache`] reads from the system). See docs/performance.md.

pub mod alloc;
pub mod cache;
pub mod threads;

pub use alloc::LineAligned;
pub use threads::{Driving, adopt_calling_thread, drive_from_current_thread, keep_workers_warm, run_tasks};

/// Set the process up for training: [`alloc::tune_malloc`], then
/// [`adopt_calling_thread`]. Call it once, first thing in `main`, before
/// anything uses rayon or spawns threads; later calls change nothing.
/// Returns false if rayon's global pool existed already (then the calling
/// thread could not join it).
pub fn init() -> bool {
    alloc::tune_malloc();
    adopt_calling_thread()
}
