//! Out-of-place matrix transpose, in 8×8 tiles: small enough that the 8
//! source and 8 destination lines of a tile stay in L1 even when the row
//! strides alias to the same cache sets.

use std::mem::MaybeUninit;

/// `a [rows, cols]` (row-major) transposed to `[cols, rows]`, for any plain
/// element type (`f32` values, `u32` winner indices). Elements are moved,
/// never computed on, so every bit pattern (NaN payloads too) survives.
pub fn transpose<E: Copy + Default>(a: &[E], rows: usize, cols: usize) -> Vec<E> {
    // Written once, element by element, so not zero-filled first (a fill
    // would be a third of the cost of the transpose).
    let mut t: Vec<E> = Vec::with_capacity(a.len());
    transpose_uninit(a, rows, cols, &mut t.spare_capacity_mut()[..a.len()]);
    // SAFETY: `transpose_uninit` initialised all rows·cols = a.len() elements.
    unsafe { t.set_len(a.len()) };
    t
}

/// [`transpose`] into an existing buffer of `rows·cols` elements.
pub fn transpose_into<E: Copy + Default>(a: &[E], rows: usize, cols: usize, out: &mut [E]) {
    assert_eq!(out.len(), a.len(), "transpose_into: {} slots for {} values", out.len(), a.len());
    // SAFETY: `E` and `MaybeUninit<E>` have the same layout, and only initialised
    // values are written through the view, so `out` stays initialised.
    let view = unsafe { &mut *(out as *mut [E] as *mut [MaybeUninit<E>]) };
    transpose_uninit(a, rows, cols, view);
}

/// Write every element of `aᵀ` into `out` (`rows·cols` slots).
fn transpose_uninit<E: Copy + Default>(a: &[E], rows: usize, cols: usize, out: &mut [MaybeUninit<E>]) {
    assert_eq!(a.len(), rows * cols, "transpose: {} values for {rows}×{cols}", a.len());
    assert_eq!(out.len(), a.len());
    let (full_r, full_c) = (rows / T * T, cols / T * T);
    #[cfg(target_arch = "x86_64")]
    if size_of::<E>() == 4 && std::is_x86_feature_detected!("avx") {
        // SAFETY: AVX was detected; E is 4 bytes wide and both buffers hold rows·cols elements.
        unsafe { tiles_avx(a.as_ptr().cast(), out.as_mut_ptr().cast(), rows, cols) };
    } else {
        tiles(a, out, rows, cols);
    }
    #[cfg(not(target_arch = "x86_64"))]
    tiles(a, out, rows, cols);
    // The ragged right and bottom edges, one element at a time: with the
    // tiles (every r < full_r, c < full_c) that is every element.
    for r in 0..rows {
        let c_start = if r < full_r { full_c } else { 0 };
        for c in c_start..cols {
            out[c * rows + r] = MaybeUninit::new(a[r * cols + c]);
        }
    }
}

/// Tile side.
const T: usize = 8;

/// The whole 8×8 tiles, portable: fixed sizes let the compiler unroll them.
fn tiles<E: Copy + Default>(a: &[E], t: &mut [MaybeUninit<E>], rows: usize, cols: usize) {
    for r0 in (0..rows / T * T).step_by(T) {
        for c0 in (0..cols / T * T).step_by(T) {
            let mut tile = [[E::default(); T]; T];
            for (k, row) in tile.iter_mut().enumerate() {
                row.copy_from_slice(&a[(r0 + k) * cols + c0..][..T]);
            }
            for c in 0..T {
                let out = &mut t[(c0 + c) * rows + r0..][..T];
                for k in 0..T {
                    out[k] = MaybeUninit::new(tile[k][c]);
                }
            }
        }
    }
}

/// The whole 8×8 tiles with AVX shuffles.
///
/// # Safety
/// AVX must be available; `a` and `t` must hold `rows·cols` elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn tiles_avx(a: *const f32, t: *mut f32, rows: usize, cols: usize) {
    for r0 in (0..rows / T * T).step_by(T) {
        for c0 in (0..cols / T * T).step_by(T) {
            // SAFETY: the tile's 8 rows of 8 elements lie inside both buffers.
            unsafe { tile_avx(a.add(r0 * cols + c0), cols, t.add(c0 * rows + r0), rows) };
        }
    }
}

/// One 8×8 tile of 4-byte elements through AVX registers (8 loads, 24
/// shuffles, 8 stores instead of 64 scalar moves). Shuffles move bits only.
///
/// # Safety
/// AVX must be available; `src + k·src_stride + [0, 8)` and
/// `dst + k·dst_stride + [0, 8)` must be valid for k in 0..8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn tile_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees the 8 source rows are readable.
    let r: [__m256; 8] = std::array::from_fn(|k| unsafe { _mm256_loadu_ps(src.add(k * src_stride)) });
    // Interleave row pairs: [a00 a10 a01 a11 | a04 a14 a05 a15], ...
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    // Four-row columns per 128-bit half: [a00 a10 a20 a30 | a04 a14 a24 a34], ...
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    // Join the halves: column c takes half (c / 4) of u[c % 4] and u[c % 4 + 4].
    let cols = [
        _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
        _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
    ];
    for (k, c) in cols.into_iter().enumerate() {
        // SAFETY: the caller guarantees the 8 destination rows are writable.
        unsafe { _mm256_storeu_ps(dst.add(k * dst_stride), c) };
    }
}

#[cfg(test)]
mod tests {
    use super::{transpose, transpose_into};

    #[test]
    fn transpose_handles_ragged_edges() {
        for (r, c) in [(1, 1), (3, 17), (16, 8), (9, 33), (64, 512), (40, 24)] {
            let a: Vec<f32> = (0..r * c).map(|i| i as f32).collect();
            let t = transpose(&a, r, c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], a[i * c + j], "{r}x{c} at ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn transpose_moves_bits_untouched() {
        // u32 winner indices, including u32::MAX, whose bits are a NaN as f32.
        let a: Vec<u32> = (0..16 * 24).map(|i| if i % 5 == 0 { u32::MAX - i } else { i }).collect();
        let t = transpose(&a, 16, 24);
        for i in 0..16 {
            for j in 0..24 {
                assert_eq!(t[j * 16 + i], a[i * 24 + j]);
            }
        }
    }

    #[test]
    fn transpose_into_overwrites_the_buffer_with_the_same_result() {
        let a: Vec<f32> = (0..9 * 33).map(|i| i as f32 * 0.5).collect();
        let mut out = vec![f32::NAN; a.len()];
        transpose_into(&a, 9, 33, &mut out);
        assert_eq!(out, transpose(&a, 9, 33));
    }
}
