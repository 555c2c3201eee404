//! The 2×2, stride-2 max pool of one `[H, W]` plane on SIMD vectors, and
//! its inverse for the gradient: every pooling layer of the paper's two
//! networks is this one.
//!
//! A window's four candidates are two floats apart in each of two rows, so
//! a plain loop over windows does not vectorise (the compiler keeps it
//! scalar). Here a vector of windows is made by loading two rows' worth of
//! consecutive floats and splitting them in registers into the windows'
//! left (even) and right (odd) columns; the four candidate vectors are then
//! compared in the scalar loop's order with selects, so every window picks
//! the same winner as the scalar loop would, bit for bit. The gradient goes the
//! other way: each window's gradient is placed on its winner and zeros
//! elsewhere, and the even/odd vectors are interleaved back into rows.
//!
//! Winner rule (PyTorch's): candidates in row-major order, a value must be
//! strictly greater to take over, and a NaN beats a number.

use std::mem::MaybeUninit;

use super::maxplus::Isa;

/// Does `v` take over from the running maximum `best`? Strictly greater, or
/// the first NaN.
#[inline(always)]
pub(crate) fn beats(v: f32, best: f32) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// The max of the window whose top-left candidate is `c[0]` at flat index
/// `at`, in a plane `w` wide, and the flat index of its winner.
#[inline(always)]
fn window(c: [f32; 4], at: u32, w: u32) -> (f32, u32) {
    let mut best = (c[0], at);
    for (v, i) in [(c[1], at + 1), (c[2], at + w), (c[3], at + w + 1)] {
        if beats(v, best.0) {
            best = (v, i);
        }
    }
    best
}

/// Vector kernels take rows of at least this many windows; narrower rows
/// (the deep layers' 2×2 and 4×4 planes) cost less one window at a time
/// than in a mostly masked-off vector.
const MIN_VECTOR_WINDOWS: usize = 4;

/// The maxima of the `(h/2) × (w/2)` windows of every `h × w` plane in
/// `src` (a stack of whole planes) into `dst` and their flat indices within
/// their plane into `args`; writes every element of both. A last odd row
/// or column of a plane belongs to no window (floor mode).
pub fn pool(src: &[f32], h: usize, w: usize, dst: &mut [MaybeUninit<f32>], args: &mut [MaybeUninit<u32>]) {
    pool_isa(Isa::detect(), src, h, w, dst, args)
}

/// [`pool`] with the kernel of `isa` (which the CPU must have).
pub fn pool_isa(
    isa: Isa,
    src: &[f32],
    h: usize,
    w: usize,
    dst: &mut [MaybeUninit<f32>],
    args: &mut [MaybeUninit<u32>],
) {
    let (ho, wo) = (h / 2, w / 2);
    let planes = src.len() / (h * w).max(1);
    assert!(
        ho * wo > 0 && src.len() == planes * h * w && dst.len() == planes * ho * wo && args.len() == dst.len(),
        "pool 2x2: {} floats are no stack of {h}x{w} planes with windows, or {} outputs and {} winners do not fit it",
        src.len(),
        dst.len(),
        args.len()
    );
    assert!(isa.is_available(), "pool 2x2: this CPU has no {isa:?}");
    let isa = if wo < MIN_VECTOR_WINDOWS { Isa::Scalar } else { isa };
    for q in 0..planes * ho {
        let (plane, oh) = (q / ho, q % ho);
        let rows = &src[plane * h * w + 2 * oh * w..];
        let (d, a) = (&mut dst[q * wo..][..wo], &mut args[q * wo..][..wo]);
        let base = (2 * oh * w) as u32;
        // Windows the vector kernels did; the rest go one at a time.
        let done = match isa {
            Isa::Scalar => 0,
            // SAFETY: the CPU has the feature (asserted); `rows` holds the
            // two rows' first `2·wo` floats, `d` and `a` hold `wo` each.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe {
                x86::pool_row_avx2(rows.as_ptr(), w, wo, base, d.as_mut_ptr().cast(), a.as_mut_ptr().cast())
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe {
                x86::pool_row_avx512(rows.as_ptr(), w, wo, base, d.as_mut_ptr().cast(), a.as_mut_ptr().cast())
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => 0,
        };
        for ow in done..wo {
            let c = [rows[2 * ow], rows[2 * ow + 1], rows[w + 2 * ow], rows[w + 2 * ow + 1]];
            let (best, at) = window(c, base + 2 * ow as u32, w as u32);
            d[ow].write(best);
            a[ow].write(at);
        }
    }
}

/// The gradient, with respect to the input of [`pool`], of a ReLU-gated
/// pooled stack: window `k`'s gradient `g[k]` on its winner `args[k]` where
/// its pooled value `out[k] > 0`, zero everywhere else (rows and columns no
/// window covers included). Written into `dx`, a stack of whole `h × w`
/// planes; the same floats as adding each gradient to a zero-filled stack.
pub fn unpool_relu(g: &[f32], out: &[f32], args: &[u32], h: usize, w: usize, dx: &mut [f32]) {
    unpool_relu_isa(Isa::detect(), g, out, args, h, w, dx)
}

/// [`unpool_relu`] with the kernel of `isa` (which the CPU must have).
pub fn unpool_relu_isa(isa: Isa, g: &[f32], out: &[f32], args: &[u32], h: usize, w: usize, dx: &mut [f32]) {
    let (ho, wo) = (h / 2, w / 2);
    let planes = dx.len() / (h * w).max(1);
    let windows = planes * ho * wo;
    assert!(
        ho * wo > 0
            && dx.len() == planes * h * w
            && g.len() == windows
            && out.len() == windows
            && args.len() == windows,
        "unpool 2x2: {} floats out are no stack of {h}x{w} planes with windows, or {} gradients, {} outputs and {} \
         winners do not fit it",
        dx.len(),
        g.len(),
        out.len(),
        args.len()
    );
    assert!(isa.is_available(), "unpool 2x2: this CPU has no {isa:?}");
    let isa = if wo < MIN_VECTOR_WINDOWS { Isa::Scalar } else { isa };
    for (plane, dxp) in dx.chunks_exact_mut(h * w).enumerate() {
        for oh in 0..ho {
            let r = (plane * ho + oh) * wo..(plane * ho + oh + 1) * wo;
            let (gr, or, ar) = (&g[r.clone()], &out[r.clone()], &args[r]);
            let rows = &mut dxp[2 * oh * w..(2 * oh + 2) * w];
            let base = (2 * oh * w) as u32;
            let done = match isa {
                Isa::Scalar => 0,
                // SAFETY: the CPU has the feature (asserted); the row slices
                // hold `wo` windows and `rows` their two rows.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe {
                    x86::unpool_row_avx2(gr.as_ptr(), or.as_ptr(), ar.as_ptr(), w, wo, base, rows.as_mut_ptr())
                },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe {
                    x86::unpool_row_avx512(gr.as_ptr(), or.as_ptr(), ar.as_ptr(), w, wo, base, rows.as_mut_ptr())
                },
                #[cfg(not(target_arch = "x86_64"))]
                _ => 0,
            };
            for ow in done..wo {
                // `0.0 + g` as the zero-filled plane's addition gives (−0 becomes +0).
                let v = if or[ow] > 0.0 { 0.0 + gr[ow] } else { 0.0 };
                let at = base + 2 * ow as u32;
                for (k, i) in [at, at + 1, at + w as u32, at + w as u32 + 1].into_iter().enumerate() {
                    rows[(k / 2) * w + 2 * ow + k % 2] = if ar[ow] == i { v } else { 0.0 };
                }
            }
            // An odd width leaves each row's last column to no window.
            rows[2 * wo..w].fill(0.0);
            rows[w + 2 * wo..].fill(0.0);
        }
        // An odd height leaves the last row to no window.
        dxp[2 * ho * w..].fill(0.0);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Windows `0..k` (k ≤ 16) of a row pair as four candidate vectors
    /// (top-left, top-right, bottom-left, bottom-right), lanes past `k` zero.
    ///
    /// # Safety
    /// AVX-512F; `2k` floats at `rows` and at `rows + w`.
    #[target_feature(enable = "avx512f")]
    unsafe fn candidates_avx512(rows: *const f32, w: usize, k: usize) -> [__m512; 4] {
        // SAFETY: the caller's guarantee.
        unsafe {
            let (c0, c1) = split_avx512(rows, k);
            let (c2, c3) = split_avx512(rows.add(w), k);
            [c0, c1, c2, c3]
        }
    }

    /// The even and odd floats of the `2k` (k ≤ 16) at `p`, lanes past `k` zero.
    ///
    /// # Safety
    /// AVX-512F; `2k` floats at `p`.
    #[target_feature(enable = "avx512f")]
    unsafe fn split_avx512(p: *const f32, k: usize) -> (__m512, __m512) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        // SAFETY: masked-off lanes are not read, so only the `2k` floats at
        // `p` are (the second address may lie past them, hence `wrapping_add`).
        let (a, b) = unsafe {
            (
                _mm512_maskz_loadu_ps(low_bits(2 * k.min(8)), p),
                _mm512_maskz_loadu_ps(low_bits(2 * k.saturating_sub(8)), p.wrapping_add(16)),
            )
        };
        (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
    }

    /// A mask of the lowest `n` (≤ 16) lanes.
    #[inline(always)]
    fn low_bits(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// Pool the windows of one row pair 16 at a time (the last vector
    /// masked); returns `wo` (all done).
    ///
    /// # Safety
    /// AVX-512F; `rows` and `rows + w` hold `2·wo` floats each, `dst` and
    /// `args` room for `wo` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pool_row_avx512(
        rows: *const f32,
        w: usize,
        wo: usize,
        base: u32,
        dst: *mut f32,
        args: *mut u32,
    ) -> usize {
        let step = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let offsets = [0, 1, w as i32, w as i32 + 1];
        for ow in (0..wo).step_by(16) {
            let k = (wo - ow).min(16);
            // SAFETY: within the row pair and outputs the caller vouches for.
            let c = unsafe { candidates_avx512(rows.add(2 * ow), w, k) };
            let at = _mm512_add_epi32(_mm512_set1_epi32((base as usize + 2 * ow) as i32), step);
            let (mut best, mut arg) = (c[0], at);
            for i in 1..4 {
                let wins = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(c[i], best)
                    | (_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(c[i], c[i])
                        & !_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(best, best));
                best = _mm512_mask_mov_ps(best, wins, c[i]);
                arg = _mm512_mask_mov_epi32(arg, wins, _mm512_add_epi32(at, _mm512_set1_epi32(offsets[i])));
            }
            let m = low_bits(k);
            // SAFETY: `k` lanes from window `ow` on are within the outputs.
            unsafe {
                _mm512_mask_storeu_ps(dst.add(ow), m, best);
                _mm512_mask_storeu_epi32(args.add(ow).cast(), m, arg);
            }
        }
        wo
    }

    /// Place the gated gradients of one row pair's windows on their winners,
    /// 16 windows at a time (the last vector masked); returns `wo`.
    ///
    /// # Safety
    /// AVX-512F; `g`, `out`, `args` hold `wo` values, `rows` two rows of
    /// `w ≥ 2·wo` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn unpool_row_avx512(
        g: *const f32,
        out: *const f32,
        args: *const u32,
        w: usize,
        wo: usize,
        base: u32,
        rows: *mut f32,
    ) -> usize {
        let step = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
        let offsets = [0, 1, w as i32, w as i32 + 1];
        let zero = _mm512_setzero_ps();
        for ow in (0..wo).step_by(16) {
            let k = (wo - ow).min(16);
            let m = low_bits(k);
            // SAFETY: `k` windows from `ow` on are within the inputs.
            let (gv, ov, av) = unsafe {
                (
                    _mm512_maskz_loadu_ps(m, g.add(ow)),
                    _mm512_maskz_loadu_ps(m, out.add(ow)),
                    _mm512_maskz_loadu_epi32(m, args.add(ow).cast()),
                )
            };
            // `0 + g` where the output is positive, as the scalar path.
            let gated = _mm512_maskz_add_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(ov, zero), zero, gv);
            let at = _mm512_add_epi32(_mm512_set1_epi32((base as usize + 2 * ow) as i32), step);
            let mut v = [zero; 4];
            for (v, off) in v.iter_mut().zip(offsets) {
                let winner = _mm512_cmpeq_epi32_mask(av, _mm512_add_epi32(at, _mm512_set1_epi32(off)));
                *v = _mm512_maskz_mov_ps(winner, gated);
            }
            let (m0, m1) = (low_bits(2 * k.min(8)), low_bits(2 * k.saturating_sub(8)));
            for (row, left, right) in [(0, v[0], v[1]), (w, v[2], v[3])] {
                // SAFETY: masked-off lanes are not written, so only `2k`
                // floats from column `2·ow` of either row are (the second
                // address may lie past them, hence `wrapping_add`).
                unsafe {
                    let p = rows.add(row + 2 * ow);
                    _mm512_mask_storeu_ps(p, m0, _mm512_permutex2var_ps(left, lo, right));
                    _mm512_mask_storeu_ps(p.wrapping_add(16), m1, _mm512_permutex2var_ps(left, hi, right));
                }
            }
        }
        wo
    }

    /// Even and odd floats of the 16 at `p`, in order.
    #[target_feature(enable = "avx2")]
    unsafe fn split_avx2(p: *const f32) -> (__m256, __m256) {
        // SAFETY: the caller guarantees 16 floats at `p`.
        let (a, b) = unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) };
        // Within 128-bit halves: [a0 a2 b0 b2 | a4 a6 b4 b6]; then the
        // middle two 64-bit pairs swapped.
        let even = _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(a, b));
        let odd = _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(a, b));
        (
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(even)),
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(odd)),
        )
    }

    /// Pool the windows of one row pair 8 at a time; returns how many were
    /// done (a multiple of 8; the rest are the caller's).
    ///
    /// # Safety
    /// AVX2; as [`pool_row_avx512`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pool_row_avx2(
        rows: *const f32,
        w: usize,
        wo: usize,
        base: u32,
        dst: *mut f32,
        args: *mut u32,
    ) -> usize {
        let step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let offsets = [0, 1, w as i32, w as i32 + 1];
        let full = wo / 8 * 8;
        for ow in (0..full).step_by(8) {
            // SAFETY: 16 floats from column `2·ow` of either row.
            let ((c0, c1), (c2, c3)) = unsafe { (split_avx2(rows.add(2 * ow)), split_avx2(rows.add(w + 2 * ow))) };
            let c = [c0, c1, c2, c3];
            let at = _mm256_add_epi32(_mm256_set1_epi32((base as usize + 2 * ow) as i32), step);
            let (mut best, mut arg) = (c[0], _mm256_castsi256_ps(at));
            for i in 1..4 {
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(c[i], c[i]);
                let best_nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(best, best);
                let wins = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(c[i], best), _mm256_andnot_ps(best_nan, nan));
                best = _mm256_blendv_ps(best, c[i], wins);
                let idx = _mm256_add_epi32(at, _mm256_set1_epi32(offsets[i]));
                arg = _mm256_blendv_ps(arg, _mm256_castsi256_ps(idx), wins);
            }
            // SAFETY: 8 outputs from window `ow` on.
            unsafe {
                _mm256_storeu_ps(dst.add(ow), best);
                _mm256_storeu_ps(args.add(ow).cast(), arg);
            }
        }
        full
    }

    /// Place the gated gradients of one row pair's windows on their winners,
    /// 8 windows at a time; returns how many were done (a multiple of 8).
    ///
    /// # Safety
    /// AVX2; as [`unpool_row_avx512`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn unpool_row_avx2(
        g: *const f32,
        out: *const f32,
        args: *const u32,
        w: usize,
        wo: usize,
        base: u32,
        rows: *mut f32,
    ) -> usize {
        let step = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let offsets = [0, 1, w as i32, w as i32 + 1];
        let zero = _mm256_setzero_ps();
        let full = wo / 8 * 8;
        for ow in (0..full).step_by(8) {
            // SAFETY: 8 windows from `ow` on.
            let (gv, ov, av) = unsafe {
                (_mm256_loadu_ps(g.add(ow)), _mm256_loadu_ps(out.add(ow)), _mm256_loadu_si256(args.add(ow).cast()))
            };
            let gated = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(ov, zero), _mm256_add_ps(zero, gv));
            let at = _mm256_add_epi32(_mm256_set1_epi32((base as usize + 2 * ow) as i32), step);
            let mut v = [zero; 4];
            for (v, off) in v.iter_mut().zip(offsets) {
                let winner = _mm256_cmpeq_epi32(av, _mm256_add_epi32(at, _mm256_set1_epi32(off)));
                *v = _mm256_and_ps(_mm256_castsi256_ps(winner), gated);
            }
            for (row, left, right) in [(0, v[0], v[1]), (w, v[2], v[3])] {
                // Within 128-bit halves: [l0 r0 l1 r1 | l4 r4 l5 r5] and
                // [l2 r2 l3 r3 | l6 r6 l7 r7]; then the halves regrouped.
                let (a, b) = (_mm256_unpacklo_ps(left, right), _mm256_unpackhi_ps(left, right));
                // SAFETY: 16 floats from column `2·ow` of either row.
                unsafe {
                    let p = rows.add(row + 2 * ow);
                    _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(a, b));
                    _mm256_storeu_ps(p.add(8), _mm256_permute2f128_ps::<0x31>(a, b));
                }
            }
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of `PLANES` planes of small integers (many ties), with NaNs
    /// where `nan` says.
    fn stack(h: usize, w: usize, seed: u32, nan: impl Fn(usize) -> bool) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761) | 1;
        (0..PLANES * h * w)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                if nan(i) { f32::NAN } else { (s % 7) as f32 - 3.0 }
            })
            .collect()
    }

    const PLANES: usize = 3;
    const SIZES: [usize; 10] = [2, 3, 4, 5, 15, 16, 17, 32, 33, 70];

    /// Pooled values and winners of a stack by `isa`.
    fn pooled(isa: Isa, src: &[f32], h: usize, w: usize) -> (Vec<f32>, Vec<u32>) {
        let len = PLANES * (h / 2) * (w / 2);
        let (mut d, mut a) = (vec![MaybeUninit::uninit(); len], vec![MaybeUninit::uninit(); len]);
        pool_isa(isa, src, h, w, &mut d, &mut a);
        // SAFETY: `pool_isa` writes every element.
        d.iter().zip(&a).map(|(v, i)| unsafe { (v.assume_init(), i.assume_init()) }).unzip()
    }

    #[test]
    fn every_isa_picks_the_scalar_winners_bit_for_bit() {
        for (h, w) in SIZES.iter().flat_map(|&h| SIZES.map(|w| (h, w))) {
            let (ho, wo) = (h / 2, w / 2);
            for seed in 0..3 {
                let src = stack(h, w, seed, |i| seed == 2 && i % 11 == 3);
                let bits = |(v, a): (Vec<f32>, Vec<u32>)| (v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), a);
                let (want, want_at) = bits(pooled(Isa::Scalar, &src, h, w));
                // The scalar winners are the first strict maximum (NaN first),
                // indexed within their own plane.
                for k in 0..PLANES * ho * wo {
                    let (plane, oh, ow) = (k / (ho * wo), k % (ho * wo) / wo, k % wo);
                    let at = want_at[k] as usize;
                    assert!(at / w / 2 == oh && at % w / 2 == ow, "winner {at} outside window ({oh}, {ow})");
                    assert_eq!(src[plane * h * w + at].to_bits(), want[k]);
                }
                for isa in Isa::available() {
                    let got = bits(pooled(isa, &src, h, w));
                    assert_eq!(got, (want.clone(), want_at.clone()), "{isa:?}, {h}x{w}, seed {seed}");
                }
            }
        }
    }

    #[test]
    fn the_gradient_lands_on_the_winners_as_a_scatter_into_zeros_would() {
        for (h, w) in SIZES.iter().flat_map(|&h| SIZES.map(|w| (h, w))) {
            let windows = PLANES * (h / 2) * (w / 2);
            let (out, args) = pooled(Isa::Scalar, &stack(h, w, 7, |_| false), h, w);
            // Gradients with signed zeros among them.
            let g: Vec<f32> = (0..windows).map(|k| [1.5, -0.0, 0.0, -2.25][k % 4] * (k as f32 + 1.0)).collect();
            let mut want = vec![0.0f32; PLANES * h * w];
            for k in 0..windows {
                if out[k] > 0.0 {
                    want[k / (windows / PLANES) * h * w + args[k] as usize] += g[k];
                }
            }
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            for isa in Isa::available() {
                let mut dx = vec![f32::NAN; PLANES * h * w];
                unpool_relu_isa(isa, &g, &out, &args, h, w, &mut dx);
                assert_eq!(dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want, "{isa:?}, {h}x{w}");
            }
        }
    }
}
