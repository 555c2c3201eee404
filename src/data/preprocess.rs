//! `morphgrad mtat preprocess`: MTAT's mp3 files → 16 kHz mono float32 `.npy`
//! (symphonia decodes, the channels are averaged, rubato's FFT resampler
//! converts the rate). Files run in parallel; finished outputs are skipped,
//! so an interrupted run resumes; undecodable files are reported and the
//! rest continue.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::ProgressBar;
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::default::codecs::MpaDecoder;
use symphonia::default::formats::MpaReader;

use super::mtat::SAMPLE_RATE;
use crate::io::write_npy;

/// Decode an mp3 file to mono (the mean of its channels) and its sample rate.
pub fn decode_mp3(path: &Path) -> Result<(Vec<f32>, u32)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut reader =
        MpaReader::try_new(mss, FormatOptions::default()).map_err(|e| anyhow!("not an mp3 stream: {e}"))?;
    let params = reader
        .tracks()
        .first()
        .and_then(|t| t.codec_params.as_ref())
        .and_then(|c| c.audio())
        .cloned()
        .ok_or_else(|| anyhow!("no audio track"))?;
    let mut decoder = MpaDecoder::try_new(&params, &AudioDecoderOptions::default()).map_err(|e| anyhow!("{e}"))?;
    let (mut mono, mut rate, mut frame) = (Vec::new(), params.sample_rate.unwrap_or(0), Vec::<f32>::new());
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => bail!("demuxing failed: {e}"),
        };
        match decoder.decode(&packet) {
            Ok(buf) => {
                rate = buf.spec().rate();
                let channels = buf.spec().channels().count().max(1);
                buf.copy_to_vec_interleaved(&mut frame);
                mono.extend(frame.chunks_exact(channels).map(|c| c.iter().sum::<f32>() / channels as f32));
            }
            // A damaged frame: skip it, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => bail!("decoding failed: {e}"),
        }
    }
    if mono.is_empty() || rate == 0 {
        bail!("no audio decoded");
    }
    Ok((mono, rate))
}

/// Resample mono audio from `from` Hz to `to` Hz.
pub fn resample(mono: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to {
        return Ok(mono.to_vec());
    }
    let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input).map_err(|e| anyhow!("{e}"))?;
    let input = vec![mono.to_vec()];
    let adapter = SequentialSliceOfVecs::new(&input, 1, mono.len()).map_err(|e| anyhow!("{e}"))?;
    let out = r.process_all(&adapter, mono.len(), None).map_err(|e| anyhow!("{e}"))?;
    Ok(out.take_data())
}

/// What a preprocessing pass did.
#[derive(Debug, Default)]
pub struct PreprocessReport {
    pub converted: usize,
    pub skipped: usize,
    /// Files that could not be decoded, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Every `.mp3` under `root`, sorted.
fn mp3_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("mp3")) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Convert every mp3 under `mp3_root` to `<out_root>/<same path>.npy` (16 kHz mono float32).
pub fn preprocess(mp3_root: &Path, out_root: &Path, bar: &ProgressBar) -> Result<PreprocessReport> {
    let files = mp3_files(mp3_root)?;
    if files.is_empty() {
        bail!("no .mp3 files under {}", mp3_root.display());
    }
    bar.set_length(files.len() as u64);
    let outcomes: Vec<(PathBuf, Result<bool>)> = files
        .par_iter()
        .map(|f| {
            let rel = f.strip_prefix(mp3_root).expect("found under the root");
            let out = out_root.join(rel).with_extension("npy");
            let res = (|| -> Result<bool> {
                if out.exists() {
                    return Ok(false);
                }
                let (mono, rate) = decode_mp3(f)?;
                let audio = resample(&mono, rate, SAMPLE_RATE as u32)?;
                write_npy(&out, &ArrayD::from_shape_vec(IxDyn(&[audio.len()]), audio)?)?;
                Ok(true)
            })();
            bar.inc(1);
            (f.clone(), res)
        })
        .collect();
    let mut report = PreprocessReport::default();
    for (f, r) in outcomes {
        match r {
            Ok(true) => report.converted += 1,
            Ok(false) => report.skipped += 1,
            Err(e) => report.failed.push((f, format!("{e:#}"))),
        }
    }
    bar.finish();
    Ok(report)
}
