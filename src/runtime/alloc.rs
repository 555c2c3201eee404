//! Memory: the global allocator that puts large blocks on cache lines, and
//! glibc's malloc settings for a training loop's large, short-lived buffers.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::kernels::line_buf::LINE;

/// The system allocator, with every block of [`LineAligned::FROM`] bytes
/// or more starting on a cache line. Install it in a binary with
/// `#[global_allocator] static ALLOC: morphgrad::runtime::LineAligned = morphgrad::runtime::LineAligned;` (the CLI
/// and the benches do). Smaller blocks are left to malloc as they are.
///
/// Under it, the input of a max-plus forward starts on a line and the
/// kernel reads it in place instead of copying it, and every 64-byte load of
/// a large tensor is one cache line, as under PyTorch's CPU allocator.
pub struct LineAligned;

impl LineAligned {
    /// Blocks at least this large start on a line.
    pub const FROM: usize = 1024;

    fn layout(l: Layout) -> Layout {
        if l.size() >= Self::FROM && l.align() < LINE {
            // (Left as it is in the one case this cannot be: a size within
            // a line of isize::MAX.)
            Layout::from_size_align(l.size(), LINE).unwrap_or(l)
        } else {
            l
        }
    }
}

// SAFETY: every block is allocated and freed by `System` with the same
// layout (`LineAligned::layout` of the caller's), which meets the caller's.
unsafe impl GlobalAlloc for LineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, for a layout at least as aligned.
        unsafe { System.alloc(Self::layout(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(Self::layout(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with the same caller's layout.
        unsafe { System.dealloc(ptr, Self::layout(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that the new size, at the old
        // alignment, is a valid layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old_ours, new_ours) = (Self::layout(layout), Self::layout(new));
        if old_ours.align() == new_ours.align() {
            // SAFETY: the block was allocated with `old_ours`; the system
            // allocator keeps its alignment.
            return unsafe { System.realloc(ptr, old_ours, new_size) };
        }
        // Across the threshold the alignment changes: move the block (what
        // the trait's default `realloc` does, which an override cannot call).
        // SAFETY: both blocks are valid for the bytes copied, and `ptr`
        // came from `alloc` with the caller's old layout.
        unsafe {
            let moved = self.alloc(new);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

/// Keep freed tensor buffers in the process instead of returning them to the
/// kernel after every op; a no-op off glibc.
///
/// glibc serves allocations above its mmap threshold with fresh `mmap`s and
/// gives them back with `munmap`; with a training step allocating and freeing
/// tens of MB of activations, each `munmap` costs page faults on the next
/// allocation and TLB-shootdown interrupts to every core. Disabling mmap and
/// raising the trim threshold makes those buffers stay in the heap for
/// reuse. Threads other than the main one get their own arenas, whose heaps
/// are capped at 64 MB, so larger blocks would be mmapped whatever the
/// settings on a run trained by a worker thread (the run grid); a single
/// arena avoids that, and a training loop's allocations are few and large,
/// so its lock is not contended. Part of [`super::init`]; call it before
/// spawning threads that allocate, to cover them too.
pub fn tune_malloc() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_puts_large_blocks_on_a_line_and_keeps_contents_through_realloc() {
        let a = LineAligned;
        let mut keep = Vec::new();
        for size in [1usize, 15, 100, LineAligned::FROM - 1, LineAligned::FROM, 4096, 100_003] {
            for align in [1usize, 4, 16, 128] {
                // Small blocks in between move malloc's choices.
                keep.push(vec![0u8; size % 97 + 1]);
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a nonzero size; every block is freed with its layout.
                unsafe {
                    let p = if size % 2 == 0 { a.alloc_zeroed(l) } else { a.alloc(l) };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                    if size >= LineAligned::FROM {
                        assert_eq!(p as usize % LINE, 0, "size {size}, align {align}");
                    }
                    if size % 2 == 0 {
                        assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    }
                    for k in 0..size {
                        *p.add(k) = (k % 251) as u8;
                    }
                    // Grow and shrink across the threshold: contents kept, alignment met.
                    let (mut q, mut len) = (p, size);
                    for new_size in [size * 3 + 1, LineAligned::FROM - 7, size] {
                        q = a.realloc(q, Layout::from_size_align(len, align).unwrap(), new_size);
                        assert!(!q.is_null());
                        let kept = len.min(new_size);
                        assert!((0..kept).all(|k| *q.add(k) == (k % 251) as u8), "{len} -> {new_size}");
                        assert_eq!(q as usize % align, 0);
                        if new_size >= LineAligned::FROM {
                            assert_eq!(q as usize % LINE, 0, "{len} -> {new_size}");
                        }
                        for k in kept..new_size {
                            *q.add(k) = (k % 251) as u8;
                        }
                        len = new_size;
                    }
                    a.dealloc(q, Layout::from_size_align(len, align).unwrap());
                }
            }
        }
    }
}
