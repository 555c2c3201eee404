//! Out-of-place matrix transpose in square tiles held in registers:
//! 16×16 with AVX-512, 8×8 with AVX or portable code, element by element at
//! the ragged edges. A tile of 4-byte elements reads whole 64-byte source
//! lines and writes whole destination lines, so every line is touched once
//! however the row strides alias in the cache.

/// `a [rows, cols]` (row-major) transposed into `out [cols, rows]`, for any
/// plain element type (`f32` values, `u32` winner indices). Elements are
/// moved, never computed on, so every bit pattern (NaN payloads too) survives.
pub fn transpose_into<E: Copy>(a: &[E], rows: usize, cols: usize, out: &mut [E]) {
    assert_eq!(out.len(), a.len(), "transpose_into: {} slots for {} values", out.len(), a.len());
    transpose_block_into(a, rows, cols, cols, out, rows);
}

/// A `rows × cols` block of a row-major matrix with `a_stride` columns,
/// transposed into the first `rows` columns of one with `out_stride`
/// columns: `out[c·out_stride + r] = a[r·a_stride + c]`; nothing else in
/// `out` is touched. For moving a block of results between a batch-major
/// and a feature-major matrix.
pub fn transpose_block_into<E: Copy>(
    a: &[E],
    rows: usize,
    cols: usize,
    a_stride: usize,
    out: &mut [E],
    out_stride: usize,
) {
    assert!(
        rows <= out_stride && (cols == 0 || out.len() >= (cols - 1) * out_stride + rows),
        "transpose_block_into: a {rows}×{cols} block does not fit {} slots of stride {out_stride}",
        out.len()
    );
    assert!(
        cols <= a_stride && (rows == 0 || a.len() >= (rows - 1) * a_stride + cols),
        "transpose_block_into: {} values for a {rows}×{cols} block of stride {a_stride}",
        a.len()
    );
    // Three nested regions: [0, r16)×[0, c16) in 16-tiles (AVX-512 only),
    // the rest of [0, r8)×[0, c8) in 8-tiles, the rest element by element.
    let (r8, c8) = (rows / T * T, cols / T * T);
    #[allow(unused_mut)]
    let (mut r16, mut c16) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if size_of::<E>() == 4 && std::is_x86_feature_detected!("avx512f") {
        (r16, c16) = (rows / T16 * T16, cols / T16 * T16);
        // SAFETY: AVX-512F was detected; E is 4 bytes wide and both buffers hold the tiles.
        unsafe { tiles_avx512(a.as_ptr().cast(), out.as_mut_ptr().cast(), out_stride, a_stride, r16, c16) };
    }
    let eights = [(0..r8, c16..c8), (r16..r8, 0..c16)];
    #[cfg(target_arch = "x86_64")]
    if size_of::<E>() == 4 && std::is_x86_feature_detected!("avx") {
        for (rs, cs) in eights {
            // SAFETY: AVX was detected; E is 4 bytes wide and both buffers hold the tiles.
            unsafe { tiles_avx(a.as_ptr().cast(), out.as_mut_ptr().cast(), out_stride, a_stride, rs, cs) };
        }
    } else {
        eights.into_iter().for_each(|(rs, cs)| tiles(a, out, out_stride, a_stride, rs, cs));
    }
    #[cfg(not(target_arch = "x86_64"))]
    eights.into_iter().for_each(|(rs, cs)| tiles(a, out, out_stride, a_stride, rs, cs));
    // The ragged right and bottom edges, one element at a time: with the
    // tiles (every r < r8, c < c8) that is every element.
    for r in 0..rows {
        let c_start = if r < r8 { c8 } else { 0 };
        for c in c_start..cols {
            out[c * out_stride + r] = a[r * a_stride + c];
        }
    }
}

/// Small tile side.
const T: usize = 8;
/// AVX-512 tile side.
const T16: usize = 16;

type Span = std::ops::Range<usize>;

/// Top-left corners `(r0, c0)` of the `side × side` tiles covering `rows × cols`.
fn corners(rows: Span, cols: Span, side: usize) -> impl Iterator<Item = (usize, usize)> {
    rows.step_by(side).flat_map(move |r0| cols.clone().step_by(side).map(move |c0| (r0, c0)))
}

/// The 8×8 tiles with corners in `rows × cols`, portable: fixed sizes let
/// the compiler unroll them.
fn tiles<E: Copy>(a: &[E], t: &mut [E], dst_stride: usize, src_stride: usize, rows: Span, cols: Span) {
    for (r0, c0) in corners(rows, cols, T) {
        let mut tile = [[a[r0 * src_stride + c0]; T]; T];
        for (k, row) in tile.iter_mut().enumerate() {
            row.copy_from_slice(&a[(r0 + k) * src_stride + c0..][..T]);
        }
        for c in 0..T {
            let out = &mut t[(c0 + c) * dst_stride + r0..][..T];
            for k in 0..T {
                out[k] = tile[k][c];
            }
        }
    }
}

/// The 8×8 tiles with corners in `rows × cols`, with AVX shuffles.
///
/// # Safety
/// AVX must be available; the tiles must lie inside `a` (`src_stride` columns)
/// and `t` (`dst_stride` columns).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn tiles_avx(a: *const f32, t: *mut f32, dst_stride: usize, src_stride: usize, rows: Span, cols: Span) {
    for (r0, c0) in corners(rows, cols, T) {
        // SAFETY: the tile's 8 rows of 8 elements lie inside both buffers.
        unsafe { tile_avx(a.add(r0 * src_stride + c0), src_stride, t.add(c0 * dst_stride + r0), dst_stride) };
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

/// The 16×16 tiles of `[0, r16) × [0, c16)`.
///
/// # Safety
/// AVX-512F must be available; the tiles must lie inside `a` (`src_stride`
/// columns) and `t` (`dst_stride` columns); `r16`, `c16` multiples of 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tiles_avx512(a: *const f32, t: *mut f32, dst_stride: usize, src_stride: usize, r16: usize, c16: usize) {
    for (r0, c0) in corners(0..r16, 0..c16, T16) {
        // SAFETY: the tile's 16 rows of 16 elements lie inside both buffers.
        unsafe { tile_avx512(a.add(r0 * src_stride + c0), src_stride, t.add(c0 * dst_stride + r0), dst_stride) };
    }
}

/// One 16×16 tile: 16 loads, four rounds of 16 shuffles, 16 stores.
/// Rounds 1–2 transpose the 4×4 blocks inside each 128-bit lane (as in
/// [`tile_avx`]); rounds 3–4 move the lanes, so that output row `4L + e`
/// gathers lane `L` of the four round-2 registers holding column `e` of
/// each 4-row group.
///
/// # Safety
/// AVX-512F must be available; `src + k·src_stride + [0, 16)` and
/// `dst + k·dst_stride + [0, 16)` must be valid for k in 0..16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_avx512(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees the 16 source rows are readable.
    let r: [__m512; 16] = std::array::from_fn(|k| unsafe { _mm512_loadu_ps(src.add(k * src_stride)) });
    // Round 1, row pairs: per lane [a0 b0 a1 b1] (even k) or [a2 b2 a3 b3] (odd k).
    let t: [__m512; 16] = std::array::from_fn(|k| {
        let (a, b) = (r[k & !1], r[k | 1]);
        if k % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
    });
    // Round 2, per 4-row group g: u[4g + e] holds, in lane L, column 4L + e
    // of rows 4g..4g+4.
    let u: [__m512; 16] = std::array::from_fn(|k| {
        let (g, e) = (k / 4 * 4, k % 4);
        let (a, b) = (_mm512_castps_pd(t[g + e / 2]), _mm512_castps_pd(t[g + e / 2 + 2]));
        _mm512_castpd_ps(if e % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
    });
    for e in 0..4 {
        // Round 3: lanes 0–1 (p0, q0) and 2–3 (p1, q1) of the groups 0–1 and 2–3.
        let p0 = _mm512_shuffle_f32x4::<0x44>(u[e], u[4 + e]);
        let p1 = _mm512_shuffle_f32x4::<0xEE>(u[e], u[4 + e]);
        let q0 = _mm512_shuffle_f32x4::<0x44>(u[8 + e], u[12 + e]);
        let q1 = _mm512_shuffle_f32x4::<0xEE>(u[8 + e], u[12 + e]);
        // Round 4: output row 4L + e = lane L of u[e], u[4+e], u[8+e], u[12+e].
        let rows = [
            _mm512_shuffle_f32x4::<0x88>(p0, q0),
            _mm512_shuffle_f32x4::<0xDD>(p0, q0),
            _mm512_shuffle_f32x4::<0x88>(p1, q1),
            _mm512_shuffle_f32x4::<0xDD>(p1, q1),
        ];
        for (l, v) in rows.into_iter().enumerate() {
            // SAFETY: the caller guarantees the 16 destination rows are writable.
            unsafe { _mm512_storeu_ps(dst.add((4 * l + e) * dst_stride), v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{transpose_block_into, transpose_into};

    /// `a [r, c]` transposed into a fresh buffer.
    fn transpose<E: Copy + Default>(a: &[E], r: usize, c: usize) -> Vec<E> {
        let mut t = vec![E::default(); a.len()];
        transpose_into(a, r, c, &mut t);
        t
    }

    #[test]
    fn transpose_handles_ragged_edges() {
        // Shapes mixing 16-tiles, 8-tiles and ragged edges in both directions.
        for (r, c) in [(1, 1), (3, 17), (16, 8), (9, 33), (64, 512), (512, 64), (40, 24), (24, 40), (33, 50), (48, 17)]
        {
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
    fn elements_of_other_widths_take_the_portable_tiles() {
        for (r, c) in [(24, 40), (17, 9), (64, 16)] {
            let a: Vec<u16> = (0..r * c).map(|i| i as u16).collect();
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
    fn a_block_lands_in_its_columns_and_nothing_else_moves() {
        for (r, c, a_stride, stride) in [(16, 64, 64, 512), (16, 50, 64, 16), (5, 9, 11, 7), (24, 40, 40, 30)] {
            let a: Vec<f32> = (0..r * a_stride).map(|i| i as f32).collect();
            let mut out = vec![-1.0f32; c * stride];
            let at = stride - r;
            transpose_block_into(&a, r, c, a_stride, &mut out[at..], stride);
            for (k, &v) in out.iter().enumerate() {
                let (row, col) = (k / stride, k % stride);
                let want = if col >= at { a[(col - at) * a_stride + row] } else { -1.0 };
                assert_eq!(v, want, "{r}x{c} into stride {stride}: slot ({row}, {col})");
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
