//! The hot loops, free of autograd: plain functions on `f32` slices.
//!
//! Ops in `crate::ops` decide *what* to compute and record it on the graph;
//! the functions here only compute. SIMD intrinsics live here and nowhere else.

pub mod gemm;
pub mod im2col;
pub mod maxplus;

use rayon::prelude::*;

/// Below this many elements an elementwise loop stays on the calling thread:
/// handing it to rayon costs more than the work.
pub const PAR_MIN: usize = 1 << 15;

/// Elements per rayon task in elementwise loops (fixed, so results never
/// depend on the thread count).
const PAR_CHUNK: usize = 1 << 14;

/// `f` applied to every element, in parallel for large inputs.
pub fn map(src: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0; src.len()];
    if src.len() < PAR_MIN {
        out.iter_mut().zip(src).for_each(|(o, &x)| *o = f(x));
    } else {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(o, &x)| *o = f(x)));
    }
    out
}

/// `f(a[i], b[i])` for equally long slices, in parallel for large inputs.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: lengths differ");
    let mut out = vec![0.0; a.len()];
    if a.len() < PAR_MIN {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    } else {
        out.par_chunks_mut(PAR_CHUNK).zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK))).for_each(
            |(o, (x, y))| {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    *o = f(x, y);
                }
            },
        );
    }
    out
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer of at least `len` floats
/// (contents unspecified). Reusing one buffer per thread keeps large
/// temporaries (im2col matrices) out of the allocator in hot loops.
/// `f` must not call `with_scratch` itself.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Keep freed tensor buffers in the process instead of returning them to the
/// kernel after every op.
///
/// glibc serves allocations above its mmap threshold with fresh `mmap`s and
/// gives them back with `munmap`; with a training step allocating and freeing
/// tens of MB of activations, each `munmap` costs page faults on the next
/// allocation and TLB-shootdown interrupts to every core (measured: ~20% of
/// CPU time in the conv backward bench). Raising the mmap threshold and the
/// trim threshold makes those buffers stay in the heap for reuse. Runs once,
/// the first time an op produces a tensor; a no-op off glibc.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only adjusts allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    });
}
