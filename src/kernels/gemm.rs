//! `C = alpha * A B + beta * C` on strided `f32` matrices, through
//! `matrixmultiply::sgemm` (single-threaded; callers parallelise over
//! independent blocks with rayon, which keeps results bit-identical for any
//! thread count).

/// A read-only strided view of a row-major buffer: element `(i, j)` lives at
/// `data[i * rs + j * cs]`. `t()` transposes by swapping strides, for free.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transposed view.
    pub fn t(self) -> MatRef<'a> {
        MatRef { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `c[i * rsc + j * csc] = alpha * (a b)[i, j] + beta * c[...]` for the
/// `a.rows × b.cols` product. With `beta == 0` the old contents of `c` are
/// ignored (NaNs included).
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32], rsc: usize, csc: usize) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions {}×{} · {}×{}", a.rows, a.cols, b.rows, b.cols);
    assert!(a.fits() && b.fits(), "gemm: operand view exceeds its buffer");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * rsc + (n - 1) * csc < c.len(), "gemm: output view exceeds its buffer");
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let v = &mut c[i * rsc + j * csc];
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every index the kernel touches inside the
    // three slices, and `c` is borrowed mutably so nothing aliases it.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        );
    }
}

/// Dense row-major output: `c (m×n) = alpha * a b + beta * c`.
pub fn gemm_into(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let n = b.cols;
    gemm(alpha, a, b, beta, c, n, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for p in 0..a.cols {
                    c[i * b.cols + j] += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
                }
            }
        }
        c
    }

    #[test]
    fn transposed_views_multiply_like_the_naive_loop() {
        let a: Vec<f32> = (0..15).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..20).map(|v| (v as f32).sin()).collect();
        let am = MatRef::new(&a, 5, 3).t(); // 3×5
        let bm = MatRef::new(&b, 5, 4); // 5×4
        let mut c = vec![1.0; 12];
        gemm_into(1.0, am, bm, 0.0, &mut c);
        for (x, y) in c.iter().zip(naive(am, bm)) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn empty_inner_dimension_scales_c_by_beta() {
        let mut c = vec![2.0; 4];
        gemm_into(1.0, MatRef::new(&[], 2, 0), MatRef::new(&[], 0, 2), 0.5, &mut c);
        assert_eq!(c, vec![1.0; 4]);
    }
}
