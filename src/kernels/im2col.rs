//! Unfolding image patches into the columns of a matrix (and folding them
//! back), so that a convolution becomes one GEMM.
//!
//! For one image `x[cin, h, w]` the column matrix has a row per kernel tap
//! `(ci, ki, kj)` and a column per output pixel `(oh, ow)`:
//! `col[(ci, ki, kj), (oh, ow)] = x[ci, oh*s + ki - p, ow*s + kj - p]` (zero
//! outside the image). Several images may share one matrix side by side:
//! each call writes its `hout*wout` columns starting at `col_off` in rows of
//! length `ld`.

/// Geometry of a 2-D convolution over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    pub fn hout(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn wout(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Rows of the column matrix: `cin * kh * kw`.
    pub fn taps(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    /// Columns one image contributes: `hout * wout`.
    pub fn pixels(&self) -> usize {
        self.hout() * self.wout()
    }

    /// For kernel offset `k` along an axis of input length `len`: the output
    /// positions `o` whose input index `o*s + k - p` lies inside `[0, len)`.
    fn valid(&self, k: usize, len: usize, out_len: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        // first o with o*s + k >= p
        let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
        // last o with o*s + k - p <= len - 1
        let hi = if len + p > k { ((len + p - k - 1) / s + 1).min(out_len) } else { 0 };
        (lo.min(hi), hi)
    }
}

/// Unfold one image into `col` (see the module docs).
pub fn im2col(x: &[f32], s: &ConvShape, col: &mut [f32], ld: usize, col_off: usize) {
    let (hout, wout) = (s.hout(), s.wout());
    debug_assert_eq!(x.len(), s.cin * s.h * s.w);
    for ci in 0..s.cin {
        let plane = &x[ci * s.h * s.w..(ci + 1) * s.h * s.w];
        for ki in 0..s.kh {
            let (oh_lo, oh_hi) = s.valid(ki, s.h, hout);
            for kj in 0..s.kw {
                let (ow_lo, ow_hi) = s.valid(kj, s.w, wout);
                let row = (ci * s.kh + ki) * s.kw + kj;
                let dst = &mut col[row * ld + col_off..row * ld + col_off + hout * wout];
                for oh in 0..hout {
                    let out = &mut dst[oh * wout..(oh + 1) * wout];
                    if oh < oh_lo || oh >= oh_hi {
                        out.fill(0.0);
                        continue;
                    }
                    let ih = oh * s.stride + ki - s.pad;
                    out[..ow_lo].fill(0.0);
                    out[ow_hi..].fill(0.0);
                    let src = &plane[ih * s.w..(ih + 1) * s.w];
                    if s.stride == 1 {
                        let iw0 = ow_lo + kj - s.pad;
                        out[ow_lo..ow_hi].copy_from_slice(&src[iw0..iw0 + (ow_hi - ow_lo)]);
                    } else {
                        for ow in ow_lo..ow_hi {
                            out[ow] = src[ow * s.stride + kj - s.pad];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: add every column entry back onto the input
/// pixel it was copied from (`gx` accumulates; taps outside the image drop).
pub fn col2im(col: &[f32], s: &ConvShape, ld: usize, col_off: usize, gx: &mut [f32]) {
    let (hout, wout) = (s.hout(), s.wout());
    debug_assert_eq!(gx.len(), s.cin * s.h * s.w);
    for ci in 0..s.cin {
        let plane = &mut gx[ci * s.h * s.w..(ci + 1) * s.h * s.w];
        for ki in 0..s.kh {
            let (oh_lo, oh_hi) = s.valid(ki, s.h, hout);
            for kj in 0..s.kw {
                let (ow_lo, ow_hi) = s.valid(kj, s.w, wout);
                let row = (ci * s.kh + ki) * s.kw + kj;
                let src = &col[row * ld + col_off..row * ld + col_off + hout * wout];
                for oh in oh_lo..oh_hi {
                    let ih = oh * s.stride + ki - s.pad;
                    let dst = &mut plane[ih * s.w..(ih + 1) * s.w];
                    let from = &src[oh * wout..(oh + 1) * wout];
                    if s.stride == 1 {
                        let iw0 = ow_lo + kj - s.pad;
                        let d = &mut dst[iw0..iw0 + (ow_hi - ow_lo)];
                        d.iter_mut().zip(&from[ow_lo..ow_hi]).for_each(|(d, v)| *d += v);
                    } else {
                        for ow in ow_lo..ow_hi {
                            dst[ow * s.stride + kj - s.pad] += from[ow];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], s: &ConvShape) -> Vec<f32> {
        let (hout, wout) = (s.hout(), s.wout());
        let mut col = vec![0.0; s.taps() * hout * wout];
        for ci in 0..s.cin {
            for ki in 0..s.kh {
                for kj in 0..s.kw {
                    let row = (ci * s.kh + ki) * s.kw + kj;
                    for oh in 0..hout {
                        for ow in 0..wout {
                            let ih = (oh * s.stride + ki) as isize - s.pad as isize;
                            let iw = (ow * s.stride + kj) as isize - s.pad as isize;
                            if ih >= 0 && iw >= 0 && (ih as usize) < s.h && (iw as usize) < s.w {
                                col[row * hout * wout + oh * wout + ow] =
                                    x[(ci * s.h + ih as usize) * s.w + iw as usize];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn im2col_matches_the_definition_for_strides_pads_and_odd_sizes() {
        for &(cin, h, w, kh, kw, stride, pad) in &[
            (2, 5, 7, 3, 3, 1, 1),
            (3, 6, 5, 3, 2, 2, 1),
            (1, 4, 4, 1, 1, 1, 0),
            (2, 7, 9, 5, 3, 3, 2),
            (1, 3, 3, 3, 3, 1, 2),
        ] {
            let s = ConvShape { cin, h, w, kh, kw, stride, pad };
            let x: Vec<f32> = (0..cin * h * w).map(|v| v as f32 + 1.0).collect();
            let mut col = vec![f32::NAN; s.taps() * s.pixels()];
            im2col(&x, &s, &mut col, s.pixels(), 0);
            assert_eq!(col, reference(&x, &s), "{s:?}");
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x, c.
        let s = ConvShape { cin: 2, h: 6, w: 5, kh: 3, kw: 3, stride: 2, pad: 1 };
        let x: Vec<f32> = (0..60).map(|v| ((v * 7 % 11) as f32) - 5.0).collect();
        let c: Vec<f32> = (0..s.taps() * s.pixels()).map(|v| ((v * 5 % 13) as f32) * 0.25).collect();
        let mut col = vec![0.0; c.len()];
        im2col(&x, &s, &mut col, s.pixels(), 0);
        let lhs: f32 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
        let mut gx = vec![0.0; x.len()];
        col2im(&c, &s, s.pixels(), 0, &mut gx);
        let rhs: f32 = x.iter().zip(&gx).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
    }
}
