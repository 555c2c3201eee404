//! A seeded, CIFAR-like image generator: the built-in default data, so
//! everything runs on a fresh clone with no download.
//!
//! Ten classes, each a texture family on a random background: horizontal,
//! vertical and diagonal stripes, a checkerboard and a blob, in a warm or a
//! cool palette (class = 5 × palette + texture). Frequency, phase, position,
//! contrast, colours and pixel noise vary per image, and a fainter texture
//! of another family is mixed in as a distractor, so a classifier has to
//! learn orientation, periodicity and colour — learnable by a small CNN in a
//! few epochs (≈ 85–95 % at C = 16), not by a single pixel.

use rand::{Rng, RngExt, SeedableRng, rngs::Xoshiro256PlusPlus};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use super::cifar::{Cifar, ImageSet, PIXELS, SIDE};

/// `n_train` training and `n_test` test images, balanced over the classes.
pub fn cifar_like(n_train: usize, n_test: usize, seed: u64) -> Cifar {
    Cifar { train: image_set(n_train, seed), test: image_set(n_test, seed ^ 0x7E57_7E57) }
}

fn image_set(n: usize, seed: u64) -> ImageSet {
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images: Vec<u8> = labels
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, &c)| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64);
            render(c as usize, &mut rng)
        })
        .collect();
    ImageSet { images, labels }
}

/// One 32×32 HWC image of class `class`.
fn render(class: usize, rng: &mut impl Rng) -> Vec<u8> {
    let (texture, warm) = (class % 5, class >= 5);
    let distractor = (texture + 1 + rng.random_range(0..4)) % 5;
    let hue = |rng: &mut dyn FnMut() -> f32| -> [f32; 3] {
        let (a, b) = (0.55 + 0.45 * rng(), 0.35 * rng());
        if warm { [a, 0.25 + b, 0.15 * rng()] } else { [0.15 * rng(), 0.25 + b, a] }
    };
    let mut u = || rng.random::<f32>();
    let fg = hue(&mut u);
    let bg: [f32; 3] = [0.5 * u(), 0.5 * u(), 0.5 * u()];
    let freq = 0.35 + 0.45 * u();
    let phase = std::f32::consts::TAU * u();
    let (cx, cy) = (8.0 + 16.0 * u(), 8.0 + 16.0 * u());
    let radius = 5.0 + 5.0 * u();
    let contrast = 0.35 + 0.65 * u();
    let (freq2, phase2, mix) = (0.35 + 0.45 * u(), std::f32::consts::TAU * u(), 0.25 + 0.35 * u());
    let noise = Normal::new(0.0f32, 0.15).expect("valid");
    let mut img = vec![0u8; PIXELS];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (xf, yf) = (x as f32, y as f32);
            let pattern = |t: usize, f: f32, ph: f32| match t {
                0 => (f * yf + ph).sin(),
                1 => (f * xf + ph).sin(),
                2 => (f * 0.7 * (xf + yf) + ph).sin(),
                3 => (f * xf + ph).sin() * (f * yf + ph).sin() * 2.0,
                _ => 1.5 - ((xf - cx).powi(2) + (yf - cy).powi(2)).sqrt() / radius * 1.5,
            };
            let s = pattern(texture, freq, phase).clamp(-1.0, 1.0)
                + mix * pattern(distractor, freq2, phase2).clamp(-1.0, 1.0);
            let a = (0.5 + 0.5 * contrast * s).clamp(0.0, 1.0);
            for c in 0..3 {
                let v = a * fg[c] + (1.0 - a) * bg[c] + noise.sample(rng);
                img[(y * SIDE + x) * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    img
}
