use morphgrad::kernels::maxplus::{self, Dims, Isa};
use std::time::Instant;
fn main() {
    let d = Dims { batch: 64, n_in: 512, n_out: 512 };
    let x: Vec<f32> = (0..d.batch * d.n_in).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
    let w: Vec<f32> = (0..d.n_out * d.n_in).map(|i| ((i * 104729) % 1000) as f32 * 1e-3).collect();
    let b: Vec<f32> = vec![0.1; d.n_out];
    let mut y = vec![0.0; d.batch * d.n_out];
    let mut win = vec![0u32; d.batch * d.n_out];
    let track = std::env::args().nth(1).as_deref() == Some("win");
    let isa = Isa::Avx512;
    let reps = 100;
    let mut s = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        for _ in 0..reps {
            maxplus::forward_with(isa, d, &x, &w, Some(&b), &mut y, if track { Some(&mut win) } else { None });
        }
        s = s.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    println!("{isa:?} winners={track}: {:.1} us, {:.1} G/s", s * 1e6, (d.batch * d.n_out * (d.n_in + 1)) as f64 / s / 1e9);
}
