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
pub mod maxplus;

use rayon::prelude::*;

/// Below this many elements an elementwise loop stays on the calling thread:
/// handing it to rayon costs more than the work.
pub const PAR_MIN: usize = 1 << 15;

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
/// CPU time in the conv backward bench). Disabling mmap and raising the trim
/// threshold makes those buffers stay in the heap for reuse. Threads other
/// than the main one get their own arenas, whose heaps are capped at 64 MB:
/// larger blocks are mmapped whatever the settings, so a training run on a
/// worker thread (the run grid) paid it all again (Short-chunk CNN step
/// 2.5 s instead of 1.6 s); a single arena avoids that, and our allocations
/// are few and large, so its lock is not contended. Runs once, the first
/// time an op produces a tensor — call it earlier, before spawning threads
/// that allocate, to cover them too; a no-op off glibc.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only adjusts allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    });
}

simd_dispatch! {
    /// `a [rows, cols]` (row-major) transposed to `[cols, rows]`, in 8×8 tiles:
    /// small enough that the 8 source and 8 destination lines of a tile stay
    /// in L1 even when the row strides alias to the same cache sets.
    pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> => transpose_generic
}

#[inline(always)]
fn transpose_generic(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(a.len(), rows * cols, "transpose: {} values for {rows}×{cols}", a.len());
    const T: usize = 8;
    let mut t = vec![0.0f32; a.len()];
    let (full_r, full_c) = (rows / T * T, cols / T * T);
    for r0 in (0..full_r).step_by(T) {
        for c0 in (0..full_c).step_by(T) {
            // A whole 8×8 tile through registers: fixed sizes let the compiler unroll it.
            let mut tile = [[0.0f32; T]; T];
            for (k, row) in tile.iter_mut().enumerate() {
                row.copy_from_slice(&a[(r0 + k) * cols + c0..][..T]);
            }
            for c in 0..T {
                let out: &mut [f32; T] = (&mut t[(c0 + c) * rows + r0..][..T]).try_into().expect("8 values");
                for k in 0..T {
                    out[k] = tile[k][c];
                }
            }
        }
    }
    // The ragged right and bottom edges, one element at a time.
    for r in 0..rows {
        let c_start = if r < full_r { full_c } else { 0 };
        for c in c_start..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_handles_ragged_edges() {
        for (r, c) in [(1, 1), (3, 17), (16, 8), (9, 33), (64, 512)] {
            let a: Vec<f32> = (0..r * c).map(|i| i as f32).collect();
            let t = super::transpose(&a, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], a[i * c + j], "{r}x{c} at ({i},{j})");
                }
            }
        }
    }
}
