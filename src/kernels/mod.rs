//! The hot loops, free of autograd: plain functions on `f32` slices.
//!
//! Ops in `crate::ops` decide *what* to compute and record it on the graph;
//! the functions here only compute. SIMD intrinsics live here and nowhere else.

/// Define `fn $name(args)` that runs the `#[inline(always)]` function
/// `$generic` compiled for the best instruction set this CPU has (AVX-512,
/// AVX2 or the portable baseline): the same source, auto-vectorised three
/// ways, chosen at run time.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernels::maxplus::Isa;
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
                match Isa::detect() {
                    // SAFETY: `Isa::detect` only reports features this CPU has.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Scalar => {}
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use simd_dispatch;

pub mod gemm;
pub mod im2col;
pub(crate) mod line_buf;
pub mod maxplus;
pub mod moments;
pub mod pool2x2;
mod transpose;
pub mod winograd;

pub use transpose::{transpose_block_into, transpose_into};

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Below this many elements an elementwise loop stays on the calling thread:
/// handing it to rayon costs more than the work.
pub const PAR_MIN: usize = 1 << 15;

/// Planes of `len` floats that one call (and one task) takes at a time when
/// a kernel walks a stack of planes: enough that small planes (the deep
/// layers' 4×4 and 2×2) are worth the call, few enough that a run of 16 KiB
/// stays in L1. Depends on the shape only, so results never depend on the
/// thread count.
pub fn planes_per_run(len: usize) -> usize {
    (4096 / len.max(1)).max(1)
}

/// Elements per rayon task in elementwise loops (fixed, so results never
/// depend on the thread count).
const PAR_CHUNK: usize = 1 << 14;

/// `f` applied to every element, in parallel for large inputs. (Collecting
/// writes the output once; no zero-filled buffer first.)
pub fn map(src: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    if src.len() < PAR_MIN {
        src.iter().map(|&x| f(x)).collect()
    } else {
        src.par_iter().with_min_len(PAR_CHUNK).map(|&x| f(x)).collect()
    }
}

/// `f(a[i], b[i])` for equally long slices, in parallel for large inputs.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: lengths differ");
    if a.len() < PAR_MIN {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    } else {
        a.par_iter().zip(b).with_min_len(PAR_CHUNK).map(|(&x, &y)| f(x, y)).collect()
    }
}

/// A vector of `len` values written by `fill`, which is handed the vector's
/// uninitialised storage: one pass over memory, where `vec![0.0; len]` and
/// then writing would be two (the allocator clears recycled memory).
///
/// # Safety
/// `fill` must initialise every one of the `len` elements it is handed.
pub unsafe fn fresh<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's contract: `fill` initialised all `len` elements.
    unsafe { v.set_len(len) };
    v
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
        f(front(&mut buf, len))
    })
}

/// The first `len` floats of a reused buffer, grown if it is shorter
/// (contents unspecified: whatever its last user left).
pub(crate) fn front(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
