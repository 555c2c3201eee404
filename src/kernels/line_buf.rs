//! Buffers that start on a cache line.
//!
//! The lanes-over-batch kernels load 16 floats (one 64-byte register) at
//! offsets that are multiples of 16 elements. malloc only promises 16-byte
//! alignment, so in a buffer where it happened to put the start 16, 32 or 48
//! bytes into a line, every such load would straddle two lines.
//!
//! [`LineBuf`] is a buffer a kernel owns. The global allocator
//! [`runtime::LineAligned`](crate::runtime::LineAligned) puts every large
//! block on a line, tensors included; under it the kernels skip the aligned
//! copies they otherwise make of their inputs.

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
pub struct LineBuf<E> {
    buf: Vec<E>,
    at: usize,
    len: usize,
}

impl<E> LineBuf<E> {
    /// An empty buffer (allocates nothing).
    pub const fn new() -> LineBuf<E> {
        LineBuf { buf: Vec::new(), at: 0, len: 0 }
    }
}

impl<E: Copy> LineBuf<E> {
    /// `len` copies of `v`.
    pub fn filled(len: usize, v: E) -> LineBuf<E> {
        let buf = vec![v; len + LINE / size_of::<E>().max(1)];
        let at = line_start(&buf);
        LineBuf { buf, at, len }
    }
}

impl<E> Deref for LineBuf<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.buf[self.at..self.at + self.len]
    }
}

impl<E> DerefMut for LineBuf<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.buf[self.at..self.at + self.len]
    }
}

impl<E> Default for LineBuf<E> {
    fn default() -> LineBuf<E> {
        LineBuf::new()
    }
}

/// A clone is aligned again (a plain copy of the `Vec` need not be).
impl<E: Copy + Default> Clone for LineBuf<E> {
    fn clone(&self) -> LineBuf<E> {
        let mut c = LineBuf::filled(self.len, E::default());
        c.copy_from_slice(self);
        c
    }
}

impl<E: PartialEq> PartialEq for LineBuf<E> {
    fn eq(&self, other: &LineBuf<E>) -> bool {
        **self == **other
    }
}

impl<E: Eq> Eq for LineBuf<E> {}

impl<E: fmt::Debug> fmt::Debug for LineBuf<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buffer_and_its_clones_start_on_a_line() {
        for len in [0, 1, 15, 16, 1000] {
            // Allocations of other sizes in between move malloc's choices.
            let mut keep = Vec::new();
            for pad in 0..8 {
                keep.push(vec![0u8; 8 * pad + 1]);
                let b = LineBuf::filled(len, 7u32);
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
