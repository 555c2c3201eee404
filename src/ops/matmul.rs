//! Matrix products: `matmul` and the fused `linear` layer op (`x Wᵀ + b`,
//! PyTorch's weight layout `[out, in]`).

use ndarray::{ArrayD, IxDyn};

use crate::autograd::Op;
use crate::kernels::gemm::{MatRef, gemm_into};
use crate::tensor::Tensor;

fn mat(t: &Tensor) -> MatRef<'_> {
    MatRef::new(t.data(), t.shape()[0], t.shape()[1])
}

fn mat_of(a: &ArrayD<f32>) -> MatRef<'_> {
    MatRef::new(a.as_slice().expect("std"), a.shape()[0], a.shape()[1])
}

impl Tensor {
    /// `[m, k] · [k, n] -> [m, n]`; backward `g Bᵀ` and `Aᵀ g`.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        assert!(
            self.ndim() == 2 && other.ndim() == 2 && self.shape()[1] == other.shape()[0],
            "matmul: {:?} · {:?}",
            self.shape(),
            other.shape()
        );
        let (m, n) = (self.shape()[0], other.shape()[1]);
        let mut out = vec![0.0; m * n];
        gemm_into(1.0, mat(self), mat(other), 0.0, &mut out);
        let v = ArrayD::from_shape_vec(IxDyn(&[m, n]), out).expect("m*n");
        Tensor::from_op(v, Op::MatMul(self.clone(), other.clone()))
    }
}

/// `y = x Wᵀ + b` for `x: [N, in]`, `W: [out, in]`, `b: [out]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    assert!(
        x.ndim() == 2 && weight.ndim() == 2 && weight.shape()[1] == x.shape()[1],
        "linear: input {:?} does not fit weight {:?} (expects [N, {}])",
        x.shape(),
        weight.shape(),
        weight.shape().get(1).copied().unwrap_or(0)
    );
    let (n, d_out) = (x.shape()[0], weight.shape()[0]);
    let mut out = vec![0.0; n * d_out];
    if let Some(b) = bias {
        assert_eq!(b.shape(), &[d_out], "linear: bias {:?} for {d_out} outputs", b.shape());
        for row in out.chunks_exact_mut(d_out) {
            row.copy_from_slice(b.data());
        }
    }
    gemm_into(1.0, mat(x), mat(weight).t(), if bias.is_some() { 1.0 } else { 0.0 }, &mut out);
    let v = ArrayD::from_shape_vec(IxDyn(&[n, d_out]), out).expect("n*out");
    Tensor::from_op(v, Op::Linear { x: x.clone(), weight: weight.clone(), bias: bias.cloned() })
}

pub(crate) fn matmul_backward(a: &Tensor, b: &Tensor, g: &ArrayD<f32>) -> [Option<ArrayD<f32>>; 2] {
    let ga = a.requires_grad().then(|| {
        let mut out = vec![0.0; a.numel()];
        gemm_into(1.0, mat_of(g), mat(b).t(), 0.0, &mut out);
        ArrayD::from_shape_vec(IxDyn(a.shape()), out).expect("shape of a")
    });
    let gb = b.requires_grad().then(|| {
        let mut out = vec![0.0; b.numel()];
        gemm_into(1.0, mat(a).t(), mat_of(g), 0.0, &mut out);
        ArrayD::from_shape_vec(IxDyn(b.shape()), out).expect("shape of b")
    });
    [ga, gb]
}

/// `dx = g W`, `dW = gᵀ x`, `db = Σ_n g[n, :]`.
pub(crate) fn linear_backward(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    g: &ArrayD<f32>,
) -> [Option<ArrayD<f32>>; 3] {
    let gx = x.requires_grad().then(|| {
        let mut out = vec![0.0; x.numel()];
        gemm_into(1.0, mat_of(g), mat(weight), 0.0, &mut out);
        ArrayD::from_shape_vec(IxDyn(x.shape()), out).expect("shape of x")
    });
    let gw = weight.requires_grad().then(|| {
        let mut out = vec![0.0; weight.numel()];
        gemm_into(1.0, mat_of(g).t(), mat(x), 0.0, &mut out);
        ArrayD::from_shape_vec(IxDyn(weight.shape()), out).expect("shape of W")
    });
    let gb = bias.filter(|b| b.requires_grad()).map(|_| g.sum_axis(ndarray::Axis(0)));
    [gx, gw, gb]
}
