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

/// Tags of the synthetic MTAT-like clips, each tied to audible structure.
pub const SYNTH_TAGS: [&str; 20] = [
    "low-pitch",
    "mid-pitch",
    "high-pitch", // register of the main voice (exactly one)
    "sine",
    "square",
    "saw",
    "noise-band", // timbre (exactly one)
    "drone",
    "slow",
    "fast", // amplitude pulses: none, 1-1.5 Hz, 4-6 Hz (exactly one)
    "quiet",
    "loud", // level (at most one)
    "noisy",
    "vibrato",
    "chord",
    "clicks",
    "bass",
    "echo",
    "rising",
    "falling", // extras
];

/// Write a synthetic dataset in the exact MTAT layout (see [`super::mtat`])
/// under `dir`: `n` clips per split of `samples` samples each at 16 kHz.
/// Returns the directory, ready for `Mtat::load`.
pub fn mtat_like(
    dir: &std::path::Path,
    n_train: usize,
    n_valid: usize,
    n_test: usize,
    samples: usize,
    seed: u64,
) -> anyhow::Result<()> {
    use crate::io::{write_npy, write_npy_strings};
    use ndarray::{ArrayD, IxDyn};
    let total = n_train + n_valid + n_test;
    let clips: Vec<(String, Vec<f32>, Vec<f32>)> = (0..total)
        .into_par_iter()
        .map(|i| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ i as u64);
            let (audio, tags) = synth_clip(samples, &mut rng);
            (format!("{}/synth-{i:05}.mp3", i % 16), audio, tags)
        })
        .collect();
    let split_dir = dir.join("split");
    let mut labels: Vec<f32> = Vec::with_capacity(total * SYNTH_TAGS.len());
    for (path, audio, tags) in &clips {
        labels.extend(tags);
        let file = dir.join("npy").join(std::path::Path::new(path).with_extension("npy"));
        write_npy(&file, &ArrayD::from_shape_vec(IxDyn(&[audio.len()]), audio.clone())?)?;
    }
    write_npy(&split_dir.join("binary.npy"), &ArrayD::from_shape_vec(IxDyn(&[total, SYNTH_TAGS.len()]), labels)?)?;
    write_npy_strings(&split_dir.join("tags.npy"), &SYNTH_TAGS.map(String::from))?;
    let entries =
        |range: std::ops::Range<usize>| -> Vec<String> { range.map(|i| format!("{i}\t{}", clips[i].0)).collect() };
    write_npy_strings(&split_dir.join("train.npy"), &entries(0..n_train))?;
    write_npy_strings(&split_dir.join("valid.npy"), &entries(n_train..n_train + n_valid))?;
    write_npy_strings(&split_dir.join("test.npy"), &entries(n_train + n_valid..total))?;
    Ok(())
}

/// One clip and its 0/1 tag vector.
fn synth_clip(samples: usize, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
    let (recipe, tags) = Recipe::draw(rng);
    (recipe.render(samples, rng), tags)
}

/// What one synthetic clip sounds like, drawn at random; its tags say so.
struct Recipe {
    f0: f32,
    /// 0 sine, 1 square, 2 saw, 3 noise band.
    timbre: usize,
    /// Amplitude pulses per second (0: a drone).
    pulse: f32,
    level: f32,
    noisy: bool,
    vibrato: bool,
    chord: bool,
    clicks: bool,
    bass: bool,
    echo: bool,
    /// +1 rising, -1 falling pitch, 0 steady.
    glide: f32,
    phase0: f32,
    bass_f: f32,
    click_rate: f32,
}

impl Recipe {
    /// Draw a recipe and its 0/1 tag vector.
    fn draw(rng: &mut impl Rng) -> (Recipe, Vec<f32>) {
        let mut tags = vec![0.0f32; SYNTH_TAGS.len()];
        let mut on = |name: &str| tags[SYNTH_TAGS.iter().position(|t| *t == name).expect("known tag")] = 1.0;
        let mut u = || rng.random::<f32>();
        let register = (u() * 3.0) as usize;
        let f0 = match register {
            0 => 80.0 + 80.0 * u(),
            1 => 200.0 + 300.0 * u(),
            _ => 800.0 + 1200.0 * u(),
        };
        on(["low-pitch", "mid-pitch", "high-pitch"][register.min(2)]);
        let timbre = (u() * 4.0) as usize;
        on(["sine", "square", "saw", "noise-band"][timbre.min(3)]);
        let tempo = (u() * 3.0) as usize;
        on(["drone", "slow", "fast"][tempo.min(2)]);
        let pulse = match tempo {
            0 => 0.0,
            1 => 1.0 + 0.5 * u(),
            _ => 4.0 + 2.0 * u(),
        };
        let level = match (u() * 3.0) as usize {
            0 => {
                on("quiet");
                0.04
            }
            1 => {
                on("loud");
                0.6
            }
            _ => 0.18,
        };
        let mut extra = |name: &str, p: f32, u: &mut dyn FnMut() -> f32| {
            let yes = u() < p;
            if yes {
                on(name);
            }
            yes
        };
        let noisy = extra("noisy", 0.3, &mut u);
        let vibrato = extra("vibrato", 0.3, &mut u);
        let chord = extra("chord", 0.3, &mut u);
        let clicks = extra("clicks", 0.3, &mut u);
        let bass = extra("bass", 0.3, &mut u);
        let echo = extra("echo", 0.3, &mut u);
        let glide = if extra("rising", 0.2, &mut u) {
            1.0
        } else if extra("falling", 0.25, &mut u) {
            -1.0
        } else {
            0.0
        };
        let (phase0, bass_f, click_rate) = (u() * std::f32::consts::TAU, 50.0 + 30.0 * u(), 2.0 + 3.0 * u());
        let recipe = Recipe {
            f0,
            timbre,
            pulse,
            level,
            noisy,
            vibrato,
            chord,
            clicks,
            bass,
            echo,
            glide,
            phase0,
            bass_f,
            click_rate,
        };
        (recipe, tags)
    }

    /// One period of the timbre at `phase`.
    fn wave(&self, phase: f32) -> f32 {
        let p = phase.rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU;
        match self.timbre {
            0 => phase.sin(),
            1 => {
                if p < 0.5 {
                    0.7
                } else {
                    -0.7
                }
            }
            _ => 1.4 * p - 0.7,
        }
    }

    /// `samples` samples at 16 kHz (noise drawn from `rng`).
    fn render(&self, samples: usize, rng: &mut impl Rng) -> Vec<f32> {
        let r = self;
        let sr = super::mtat::SAMPLE_RATE as f32;
        let tau = std::f32::consts::TAU;
        let noise = Normal::new(0.0f32, 1.0).expect("valid");
        let dur = samples as f32 / sr;
        let mut out = vec![0.0f32; samples];
        let (mut phase, mut phase5, mut band_state) = (r.phase0, r.phase0, 0.0f32);
        for (n, o) in out.iter_mut().enumerate() {
            let t = n as f32 / sr;
            let mut f = r.f0 * (1.0 + r.glide * 0.5 * t / dur);
            if r.vibrato {
                f *= 1.0 + 0.03 * (tau * 5.5 * t).sin();
            }
            phase += tau * f / sr;
            phase5 += tau * 1.5 * f / sr;
            let mut v = if r.timbre == 3 {
                // Noise filtered around f: a resonant one-pole smoother on white noise.
                band_state = 0.97 * band_state + 0.03 * noise.sample(rng);
                8.0 * band_state * phase.sin()
            } else {
                r.wave(phase) + if r.chord { 0.7 * r.wave(phase5) } else { 0.0 }
            };
            if r.pulse > 0.0 {
                v *= 0.5 + 0.5 * (tau * r.pulse * t).sin().max(0.0).powi(2) * 2.0;
            }
            if r.bass {
                v += 0.6 * (tau * r.bass_f * t).sin();
            }
            if r.clicks && (t * r.click_rate).fract() < 0.004 {
                v += 1.5 * noise.sample(rng);
            }
            if r.noisy {
                v += 0.35 * noise.sample(rng);
            }
            *o = r.level * v;
        }
        if r.echo {
            let delay = (0.18 * sr) as usize;
            for n in (delay..samples).rev() {
                out[n] += 0.5 * out[n - delay];
            }
        }
        out
    }
}
