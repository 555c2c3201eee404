//! Buffers that start on a cache line.
//!
//! The lanes-over-batch kernels load 16 floats (one 64-byte register) at
//! offsets that are multiples of 16 elements. malloc only promises 16-byte
//! alignment, so in a buffer where it happened to put the start 16, 32 or 48
//! bytes into a line, every such load straddled two lines: the max-plus
//! forward at batch 16 ran 103–106 µs with its packed `x` where malloc put
//! it against 78–79 µs with it aligned (docs/performance.md, item 18).
//!
//! [`Lined`] is a buffer a kernel owns. [`LineAligned`] is a global
//! allocator that puts every large block on a line, tensors included, as
//! PyTorch's CPU allocator does (64-byte alignment): the CLI and the benches
//! install it, and the kernels then skip the aligned copies they otherwise
//! make of their inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Bytes per cache line.
pub const LINE: usize = 64;

/// Whether `v` starts on a cache line.
pub fn on_a_line<E>(v: &[E]) -> bool {
    v.as_ptr().cast::<u8>().align_offset(LINE) == 0
}

/// The first index of `v` on a cache-line boundary (at most one line in).
fn line_start<E>(v: &[E]) -> usize {
    v.as_ptr().align_offset(LINE).min(LINE / size_of::<E>())
}

/// `len` elements from a cache-line boundary on, in an owned buffer.
pub struct Lined<E> {
    buf: Vec<E>,
    at: usize,
    len: usize,
}

impl<E> Lined<E> {
    /// An empty buffer (allocates nothing).
    pub const fn new() -> Lined<E> {
        Lined { buf: Vec::new(), at: 0, len: 0 }
    }
}

impl<E: Copy> Lined<E> {
    /// `len` copies of `v`.
    pub fn filled(len: usize, v: E) -> Lined<E> {
        let buf = vec![v; len + LINE / size_of::<E>().max(1)];
        let at = line_start(&buf);
        Lined { buf, at, len }
    }
}

impl<E> Deref for Lined<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.buf[self.at..self.at + self.len]
    }
}

impl<E> DerefMut for Lined<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.buf[self.at..self.at + self.len]
    }
}

impl<E> Default for Lined<E> {
    fn default() -> Lined<E> {
        Lined::new()
    }
}

/// A clone is aligned again (a plain copy of the `Vec` need not be).
impl<E: Copy + Default> Clone for Lined<E> {
    fn clone(&self) -> Lined<E> {
        let mut c = Lined::filled(self.len, E::default());
        c.copy_from_slice(self);
        c
    }
}

impl<E: PartialEq> PartialEq for Lined<E> {
    fn eq(&self, other: &Lined<E>) -> bool {
        **self == **other
    }
}

impl<E: Eq> Eq for Lined<E> {}

impl<E: fmt::Debug> fmt::Debug for Lined<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// The system allocator, with every block of [`LineAligned::FROM`] bytes
/// or more starting on a cache line. Install it in a binary with
/// `#[global_allocator] static ALLOC: LineAligned = LineAligned;` (the CLI
/// and the benches do). Smaller blocks are left to malloc as they are.
///
/// Measured in the max-plus fwd+bwd loop (x then starts on a line and the
/// forward skips its aligned copy of it): medians ~1.5 µs a step faster at
/// batch 16, ~7 µs at batch 64; transposes up to 40 % faster
/// (docs/performance.md, item 22).
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

    #[test]
    fn every_buffer_and_its_clones_start_on_a_line() {
        for len in [0, 1, 15, 16, 1000] {
            // Allocations of other sizes in between move malloc's choices.
            let mut keep = Vec::new();
            for pad in 0..8 {
                keep.push(vec![0u8; 8 * pad + 1]);
                let b = Lined::filled(len, 7u32);
                assert_eq!(b.as_ptr() as usize % LINE, 0);
                assert_eq!(b.len(), len);
                assert!(b.iter().all(|&v| v == 7));
                let c = b.clone();
                assert_eq!(c.as_ptr() as usize % LINE, 0);
                assert_eq!(c, b);
            }
        }
    }
}
