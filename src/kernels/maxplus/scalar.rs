//! The reference max-plus kernel: the definition, one candidate at a time.
//! Every other kernel must agree with this one bit for bit (values and
//! winners); it is also the path taken whenever NaN or +∞ could appear.

use super::{Dims, NONE};

/// `y[n,j] = max(b[j], max_i x[n,i] + w[j,i])`, `winner[n,j]` = the index
/// `i` that attains it (the lowest on exact ties), or `n_in` when the bias
/// wins (it must be strictly greater: it is the last candidate). Without a
/// bias, the max runs over `x + w` only.
///
/// NaN (from a NaN input, or `+∞ + -∞`) propagates like `torch.max`: the
/// first NaN candidate wins and the output is NaN.
pub fn forward(d: Dims, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32], winners: &mut [u32]) {
    for n in 0..d.batch {
        let xr = &x[n * d.n_in..(n + 1) * d.n_in];
        for j in 0..d.n_out {
            let wr = &w[j * d.n_in..(j + 1) * d.n_in];
            let (mut best, mut arg) = (f32::NEG_INFINITY, NONE);
            for (i, (&xv, &wv)) in xr.iter().zip(wr).enumerate() {
                let v = xv + wv;
                if arg == NONE || v > best || (v.is_nan() && !best.is_nan()) {
                    best = v;
                    arg = i as u32;
                }
            }
            if let Some(b) = bias
                && (arg == NONE || b[j] > best || (b[j].is_nan() && !best.is_nan()))
            {
                best = b[j];
                arg = d.n_in as u32;
            }
            y[n * d.n_out + j] = best;
            winners[n * d.n_out + j] = arg;
        }
    }
}

/// The subgradient of [`forward`], by its definition: every upstream entry
/// `g[n, j]` goes whole to the candidate that won output `(n, j)` —
///
/// ```text
/// i = winner[n, j] < n_in:   gx[n, i] += g[n, j]    gw[j, i] += g[n, j]
/// i = winner[n, j] = n_in:   gb[j] += g[n, j]                      (the bias won)
/// ```
///
/// — and nothing goes anywhere else: a weight that wins no output gets a
/// zero gradient. Returns `(gx [batch, n_in], gw [n_out, n_in], gb [n_out])`.
///
/// ```
/// use morphgrad::kernels::maxplus::{Dims, scalar};
/// // One input row x = [1, 5], one output with weights [0, -1] and bias 2:
/// // candidates 1 + 0, 5 - 1 and the bias 2; input 1 wins with 4.
/// let d = Dims { batch: 1, n_in: 2, n_out: 1 };
/// let (mut y, mut winner) = ([0.0], [0]);
/// scalar::forward(d, &[1.0, 5.0], &[0.0, -1.0], Some(&[2.0]), &mut y, &mut winner);
/// assert_eq!((y, winner), ([4.0], [1]));
/// // The upstream gradient 3 goes whole to x[1] and W[0][1]; the bias gets none.
/// let (gx, gw, gb) = scalar::grads(d, &winner, &[3.0]);
/// assert_eq!((gx, gw, gb), (vec![0.0, 3.0], vec![0.0, 3.0], vec![0.0]));
/// ```
/// Sums run in a fixed order (a slot of `gx` over outputs in output order,
/// of `gw` and `gb` over the batch in batch order); the fast
/// [`super::grads`] keeps that order, so it agrees bit for bit.
pub fn grads(d: Dims, winners: &[u32], g: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims { batch, n_in, n_out } = d;
    let (mut gx, mut gw, mut gb) = (vec![0.0f32; batch * n_in], vec![0.0f32; n_out * n_in], vec![0.0f32; n_out]);
    for n in 0..batch {
        for j in 0..n_out {
            let (i, gv) = (winners[n * n_out + j] as usize, g[n * n_out + j]);
            if i < n_in {
                gx[n * n_in + i] += gv;
            }
        }
    }
    for j in 0..n_out {
        for n in 0..batch {
            let (i, gv) = (winners[n * n_out + j] as usize, g[n * n_out + j]);
            if i < n_in {
                gw[j * n_in + i] += gv;
            } else if i == n_in {
                gb[j] += gv;
            }
        }
    }
    (gx, gw, gb)
}
