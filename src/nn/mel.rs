//! The audio front end of the Short-chunk CNN — the layer that turns raw
//! audio into its input — as torchaudio computes it:
//! `MelSpectrogram(16000, n_fft 512, hop 256, f_max 8000, n_mels 128)` with a
//! periodic Hann window, centred frames (reflect padding), power 2, HTK mel
//! filters without normalisation; then `AmplitudeToDB`:
//! `10·log10(max(mel, 1e-10))`. Not differentiable: it is the input stage.
//!
//! The window and the filterbank are built step for step as torchaudio builds
//! them in f32 (the exact f64 values move faint bands by ~1e-3 dB); the
//! transform itself runs in f64 and rounds once at the end.

use std::sync::Arc;

use rayon::prelude::*;
use realfft::{RealFftPlanner, RealToComplex};

/// Settings of the mel front end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MelConfig {
    pub sample_rate: usize,
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    pub f_min: f64,
    pub f_max: f64,
}

impl Default for MelConfig {
    fn default() -> Self {
        MelConfig { sample_rate: 16_000, n_fft: 512, hop: 256, n_mels: 128, f_min: 0.0, f_max: 8000.0 }
    }
}

/// A reusable mel-spectrogram transform.
pub struct MelSpectrogram {
    pub config: MelConfig,
    window: Vec<f64>,
    /// `[n_freqs, n_mels]`, as torchaudio's `fb`.
    fb: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

/// `torch.linspace` in f32: an f32 step; the first half counts up from
/// `start`, the second half down from `end`, each value rounded once (as its
/// fused multiply-add does).
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let (s, e, st) = (start as f64, end as f64, step as f64);
    let half = steps / 2;
    (0..steps)
        .map(|i| if i < half { (s + st * i as f64) as f32 } else { (e - st * (steps - i - 1) as f64) as f32 })
        .collect()
}

/// torchaudio's HTK mel filterbank `[n_freqs, n_mels]`, step for step in f32
/// as torchaudio builds it (an f64 derivation differs by ~1e-5, enough to
/// move faint bands by ~1e-3 dB).
pub fn htk_filterbank(c: &MelConfig) -> Vec<f32> {
    let n_freqs = c.n_fft / 2 + 1;
    let all_freqs = linspace_f32(0.0, (c.sample_rate / 2) as f32, n_freqs);
    let m_pts = linspace_f32(hz_to_mel(c.f_min) as f32, hz_to_mel(c.f_max) as f32, c.n_mels + 2);
    let f_pts: Vec<f32> = m_pts.iter().map(|&m| 700.0 * (10f64.powf((m / 2595.0) as f64) as f32 - 1.0)).collect();
    let f_diff: Vec<f32> = f_pts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut fb = vec![0.0f32; n_freqs * c.n_mels];
    for (f, &freq) in all_freqs.iter().enumerate() {
        for m in 0..c.n_mels {
            // Triangles: rise from f_pts[m] to f_pts[m+1], fall to f_pts[m+2].
            let down = -(f_pts[m] - freq) / f_diff[m];
            let up = (f_pts[m + 2] - freq) / f_diff[m + 1];
            fb[f * c.n_mels + m] = down.min(up).max(0.0);
        }
    }
    fb
}

impl MelSpectrogram {
    pub fn new(config: MelConfig) -> MelSpectrogram {
        let n = config.n_fft;
        // torch.hann_window(periodic=True) in f32: arange · (2π/n), cos, · -0.5 + 0.5.
        let step = (2.0 * std::f64::consts::PI / n as f64) as f32;
        let window = (0..n).map(|i| ((i as f32 * step) as f64).cos() as f32 * -0.5 + 0.5).map(f64::from).collect();
        let fb = htk_filterbank(&config).into_iter().map(f64::from).collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        MelSpectrogram { config, window, fb, fft }
    }

    /// Frames produced from `len` samples: `1 + len / hop`.
    pub fn frames(&self, len: usize) -> usize {
        1 + len / self.config.hop
    }

    /// The filterbank `[n_freqs, n_mels]` (for comparison with torchaudio's `fb`).
    pub fn filterbank(&self) -> &[f64] {
        &self.fb
    }

    /// Power spectrogram `[n_freqs, frames]` of one signal.
    pub fn power(&self, signal: &[f64]) -> Vec<f64> {
        let (n, hop) = (self.config.n_fft, self.config.hop);
        let pad = n / 2;
        assert!(signal.len() > pad, "signal of {} samples is too short for reflect padding of {pad}", signal.len());
        // Reflect padding without repeating the edge sample (numpy/torch "reflect").
        let at = |i: isize| -> f64 {
            let len = signal.len() as isize;
            let j = if i < 0 {
                -i
            } else if i >= len {
                2 * (len - 1) - i
            } else {
                i
            };
            signal[j as usize]
        };
        let frames = self.frames(signal.len());
        let n_freqs = n / 2 + 1;
        let mut power = vec![0.0f64; n_freqs * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        for t in 0..frames {
            let start = (t * hop) as isize - pad as isize;
            for (k, v) in input.iter_mut().enumerate() {
                *v = at(start + k as isize) * self.window[k];
            }
            self.fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch).expect("sizes from the plan");
            for (f, c) in spectrum.iter().enumerate() {
                power[f * frames + t] = c.re * c.re + c.im * c.im;
            }
        }
        power
    }

    /// Log-mel spectrogram in dB, `[n_mels, frames]`, of one signal.
    pub fn db(&self, signal: &[f32]) -> Vec<f32> {
        let signal: Vec<f64> = signal.iter().map(|&v| v as f64).collect();
        let power = self.power(&signal);
        let frames = self.frames(signal.len());
        let (n_freqs, n_mels) = (self.config.n_fft / 2 + 1, self.config.n_mels);
        let mut mel = vec![0.0f64; n_mels * frames];
        for f in 0..n_freqs {
            let prow = &power[f * frames..(f + 1) * frames];
            for m in 0..n_mels {
                let w = self.fb[f * n_mels + m];
                if w != 0.0 {
                    for (o, &p) in mel[m * frames..(m + 1) * frames].iter_mut().zip(prow) {
                        *o += w * p;
                    }
                }
            }
        }
        mel.iter().map(|&v| (10.0 * v.max(1e-10).log10()) as f32).collect()
    }

    /// dB spectrograms of a batch of equally long signals: `[batch, n_mels, frames]`.
    pub fn db_batch(&self, signals: &[f32], len: usize) -> Vec<f32> {
        signals.par_chunks(len).flat_map_iter(|s| self.db(s)).collect()
    }
}
