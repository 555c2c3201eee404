//! `morphgrad mtat preprocess` on mp3 files this test encodes itself (shine):
//! stereo 44.1 kHz and mono 22.05 kHz tones come out as 16 kHz mono npy of
//! the right length and pitch; a corrupt file is reported and the others
//! still convert; a second run skips finished files.

use std::path::PathBuf;
use std::process::Command;

use morphgrad::io::read_npy;
use shine_rs::{Mp3EncoderConfig, StereoMode, encode_pcm_to_mp3};

fn tone(rate: u32, channels: u8, seconds: f32, freq: f32) -> Vec<u8> {
    let n = (rate as f32 * seconds) as usize;
    let pcm: Vec<i16> = (0..n)
        .flat_map(|i| {
            let v = (0.4 * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin() * i16::MAX as f32) as i16;
            std::iter::repeat_n(v, channels as usize)
        })
        .collect();
    let mode = if channels == 1 { StereoMode::Mono } else { StereoMode::Stereo };
    let config = Mp3EncoderConfig { sample_rate: rate, bitrate: 64, channels, stereo_mode: mode, ..Default::default() };
    encode_pcm_to_mp3(config, &pcm).expect("shine encodes")
}

/// Frequency estimated from zero crossings.
fn pitch(x: &[f32], rate: f32) -> f32 {
    let mid = &x[x.len() / 4..3 * x.len() / 4];
    let crossings = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    crossings as f32 * rate / mid.len() as f32
}

#[test]
fn mp3_files_become_16khz_mono_npy_and_failures_are_reported() {
    let root = std::env::temp_dir().join(format!("morphgrad-mp3-{}", std::process::id()));
    let (mp3, out) = (root.join("mp3"), root.join("npy"));
    std::fs::create_dir_all(mp3.join("a")).unwrap();
    std::fs::create_dir_all(mp3.join("b")).unwrap();
    std::fs::write(mp3.join("a/stereo.mp3"), tone(44100, 2, 2.0, 440.0)).unwrap();
    std::fs::write(mp3.join("b/mono.mp3"), tone(22050, 1, 1.5, 1000.0)).unwrap();
    std::fs::write(mp3.join("b/broken.mp3"), b"this is not an mp3 file at all, just text").unwrap();

    let run = || {
        let o = Command::new(env!("CARGO_BIN_EXE_morphgrad"))
            .args(["mtat", "preprocess", "--mp3"])
            .arg(&mp3)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = run();
    assert!(text.contains("converted 2, already done 0, failed 1"), "{text}");
    assert!(text.contains("broken.mp3"), "{text}");

    for (file, seconds, freq) in [("a/stereo.npy", 2.0f32, 440.0f32), ("b/mono.npy", 1.5, 1000.0)] {
        let x = read_npy::<f32>(&PathBuf::from(&out).join(file)).unwrap();
        let x = x.as_slice().unwrap();
        let expected = 16000.0 * seconds;
        // mp3 adds encoder/decoder delay and padding: a few frames at most.
        assert!(
            (x.len() as f32 - expected).abs() < 0.12 * expected,
            "{file}: {} samples, expected ~{expected}",
            x.len()
        );
        let f = pitch(x, 16000.0);
        assert!((f - freq).abs() < 0.03 * freq, "{file}: pitch {f} Hz, expected {freq}");
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak > 0.2 && peak < 0.6, "{file}: peak {peak}");
    }
    let again = run();
    assert!(again.contains("converted 0, already done 2, failed 1"), "{again}");
    std::fs::remove_dir_all(root).ok();
}
