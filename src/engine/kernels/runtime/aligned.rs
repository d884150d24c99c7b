//! Growable buffers of plain numbers whose first element sits on a 64-byte boundary. AMX tile
//! loads and stores read 64-byte rows; a row that straddles two cache lines costs two accesses,
//! which cut `tdpbf16ps` throughput to a third here (1.1 vs 3.0 TFLOP/s on one core, L1-resident
//! operands). `Vec` only promises the element's own alignment.

use std::ops::{Deref, DerefMut};

/// One cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Element types for which every bit pattern is a value and all-zero bytes are zero.
///
/// # Safety
/// Implementors must be plain old data of size 1, 2, 4 or 8 without padding or invalid bit
/// patterns.
pub unsafe trait Plain: Copy + 'static {}
// SAFETY: 4-byte integers and floats: every bit pattern is valid, zero bytes are 0 / +0.0.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}
// SAFETY: single bytes: every bit pattern is valid, zero is 0.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for i8 {}

/// A `Vec<T>`-like buffer aligned to 64 bytes.
pub struct AlignedBuf<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Plain> Default for AlignedBuf<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Plain> AlignedBuf<T> {
    pub const fn new() -> Self {
        AlignedBuf {
            lines: Vec::new(),
            len: 0,
            _t: std::marker::PhantomData,
        }
    }

    /// `len` zeros, asking the kernel for huge pages first (large weights: fewer TLB misses).
    pub fn zeroed_huge(len: usize) -> Self {
        let lines = (len * size_of::<T>()).div_ceil(64);
        let mut v: Vec<Line> = Vec::with_capacity(lines);
        super::mmap::advise_huge_pages(v.as_mut_ptr().cast(), lines * 64);
        v.resize(lines, Line([0; 64]));
        AlignedBuf {
            lines: v,
            len,
            _t: std::marker::PhantomData,
        }
    }

    /// The contents as 4-byte words (for AMX tile operands); the byte length must be a multiple
    /// of 4.
    pub fn as_words(&self) -> &[u32] {
        let bytes = self.len * size_of::<T>();
        assert!(bytes.is_multiple_of(4), "{bytes} bytes are not whole words");
        // SAFETY: the buffer is 64-byte aligned and holds `bytes` initialised bytes; u32 accepts
        // any bit pattern; the view borrows `self`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u32>(), bytes / 4) }
    }

    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        let mut b = Self::new();
        b.resize_zeroed(len);
        b
    }

    /// Keep the first min(len, old len) elements, zero any new ones (like `Vec::resize(len, 0)`).
    pub fn resize_zeroed(&mut self, len: usize) {
        let old = self.len;
        let lines = (len * size_of::<T>()).div_ceil(64);
        if lines > self.lines.len() {
            self.lines.resize(lines, Line([0; 64]));
        }
        self.len = len;
        if len > old {
            self[old..].fill_zero();
        }
    }

    /// `len` zeros, discarding the contents.
    pub fn reset_zeroed(&mut self, len: usize) {
        self.len = 0;
        self.resize_zeroed(len);
    }
}

/// Zero-fill a slice of plain numbers.
trait FillZero {
    fn fill_zero(&mut self);
}

impl<T: Plain> FillZero for [T] {
    fn fill_zero(&mut self) {
        // SAFETY: `T: Plain` makes all-zero bytes a valid (zero) value; the write covers exactly
        // the slice's bytes.
        unsafe { std::ptr::write_bytes(self.as_mut_ptr(), 0, self.len()) }
    }
}

impl<T: Plain> Deref for AlignedBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `lines` holds at least len·size_of::<T>() initialised bytes (resize_zeroed
        // keeps it so), 64-byte aligned hence aligned for T; `T: Plain` makes any bytes a value.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Plain> DerefMut for AlignedBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_resized_like_a_vec() {
        let mut b = AlignedBuf::<u32>::zeroed(5);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        b.copy_from_slice(&[1, 2, 3, 4, 5]);
        b.resize_zeroed(40);
        assert_eq!(&b[..6], &[1, 2, 3, 4, 5, 0]);
        assert!(b[5..].iter().all(|&x| x == 0));
        b.resize_zeroed(3);
        b.resize_zeroed(4);
        assert_eq!(&b[..], &[1, 2, 3, 0]);
        b.reset_zeroed(2);
        assert_eq!(&b[..], &[0, 0]);
        let f = AlignedBuf::<f32>::zeroed(17);
        assert_eq!(f.as_ptr() as usize % 64, 0);
        assert!(f.iter().all(|&x| x == 0.0));
    }
}
