//! The mel front end against torchaudio (`mel_spectrogram` fixture): the
//! filterbank, and the dB spectrogram within 1e-3 dB.

mod common;

use common::*;
use morphgrad::nn::mel::{MelConfig, MelSpectrogram};

#[test]
fn mel_filterbank_matches_torchaudio() {
    let Some(d) = fixture("mel_spectrogram") else { return };
    let fb = f32s(&d, "fb");
    let ours = MelSpectrogram::new(MelConfig::default());
    let worst = ours.filterbank().iter().zip(fb.iter()).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
    // Built step for step like torchaudio's f32 code (the exact f64 filters differ by ~1.3e-5).
    assert!(worst < 1e-6, "filterbank differs by {worst:e}");
    assert!(
        fb.iter().step_by(128).all(|&v| v == 0.0) && ours.filterbank().iter().step_by(128).all(|&v| v == 0.0),
        "filter 0 is empty in both"
    );
}

#[test]
fn log_mel_spectrogram_matches_torchaudio_within_a_thousandth_of_a_db() {
    let Some(d) = fixture("mel_spectrogram") else { return };
    let signal = f32s(&d, "signal");
    let expected = f32s(&d, "db");
    let mel = MelSpectrogram::new(MelConfig::default());
    let len = signal.shape()[1];
    assert_eq!(mel.frames(len), 231);
    let ours = mel.db_batch(signal.as_slice().unwrap(), len);
    let worst = ours.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("max |dB difference| = {worst:e}");
    assert!(worst <= 1e-3, "max dB difference {worst:e}");
}
