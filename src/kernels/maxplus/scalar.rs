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
