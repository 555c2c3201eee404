//! MagnaTagATune in the layout of the reference implementation (Won et al.):
//!
//! ```text
//! <root>/[split/]train.npy valid.npy test.npy   "<row>\t<dir>/<clip>.mp3" per entry
//!                                              (numpy unicode arrays, or .tsv text files)
//! <root>/[split/]binary.npy                    [rows, tags] 0/1 label matrix, indexed by <row>
//! <root>/[split/]tags.npy                      tag names (optional)
//! <root>/npy/<dir>/<clip>.npy                  float32 mono audio at 16 kHz, one file per clip
//! ```
//!
//! Training reads one random 59 049-sample chunk per clip per epoch (only
//! those samples are read from disk); evaluation averages the model over 16
//! evenly spaced chunks of each clip.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::ArrayD;
use rand::{Rng, RngExt};

use crate::io::{npy_header, read_npy, read_npy_f32_range, read_npy_strings};

/// Sample rate of every MTAT clip.
pub const SAMPLE_RATE: usize = 16_000;
/// Samples per training chunk (3.69 s), the Short-chunk CNN's input.
pub const CHUNK: usize = 59_049;

/// Chunks averaged per clip at evaluation.
pub const EVAL_CHUNKS: usize = 16;

/// One clip of a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clip {
    /// Row of the label matrix.
    pub row: usize,
    /// `<dir>/<clip>.mp3` as in the split file.
    pub path: String,
}

/// An MTAT-layout dataset.
pub struct Mtat {
    pub root: PathBuf,
    pub tags: Vec<String>,
    /// `[rows, n_tags]`, row-major, 0/1.
    pub labels: Vec<f32>,
    pub n_tags: usize,
    pub train: Vec<Clip>,
    pub valid: Vec<Clip>,
    pub test: Vec<Clip>,
}

/// Parse a split file: a numpy unicode array or a text file, entries
/// `"<row>\t<dir>/<clip>.mp3"`.
pub fn parse_split(path: &Path) -> Result<Vec<Clip>> {
    let entries = if path.extension().is_some_and(|e| e == "npy") {
        read_npy_strings(path)?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (row, clip) = e
                .split_once('\t')
                .with_context(|| format!("{} entry {i} `{e}` is not \"<row>\\t<dir>/<clip>.mp3\"", path.display()))?;
            let row = row
                .trim()
                .parse()
                .with_context(|| format!("{} entry {i}: row `{row}` is not a number", path.display()))?;
            Ok(Clip { row, path: clip.trim().to_string() })
        })
        .collect()
}

/// The label matrix, from whatever numeric dtype `binary.npy` uses.
fn read_labels(path: &Path) -> Result<(Vec<f32>, usize)> {
    let to_f32 = |a: ArrayD<f32>| -> Result<(Vec<f32>, usize)> {
        if a.ndim() != 2 {
            bail!("{}: labels must be [rows, tags], got {:?}", path.display(), a.shape());
        }
        let tags = a.shape()[1];
        Ok((a.as_standard_layout().iter().copied().collect(), tags))
    };
    if let Ok(a) = read_npy::<f32>(path) {
        return to_f32(a);
    }
    if let Ok(a) = read_npy::<f64>(path) {
        return to_f32(a.mapv(|v| v as f32));
    }
    if let Ok(a) = read_npy::<i64>(path) {
        return to_f32(a.mapv(|v| v as f32));
    }
    if let Ok(a) = read_npy::<u8>(path) {
        return to_f32(a.mapv(|v| v as f32));
    }
    let a = read_npy::<bool>(path)
        .with_context(|| format!("{}: labels must be a numeric or bool matrix", path.display()))?;
    to_f32(a.mapv(|v| v as u8 as f32))
}

impl Mtat {
    /// Open the dataset at `root`; checks that every clip's row has labels
    /// (audio files are checked when read).
    pub fn load(root: &Path) -> Result<Mtat> {
        let dir = if root.join("split").is_dir() { root.join("split") } else { root.to_path_buf() };
        let find = |name: &str| -> Result<PathBuf> {
            for ext in ["npy", "tsv", "txt"] {
                let p = dir.join(format!("{name}.{ext}"));
                if p.exists() {
                    return Ok(p);
                }
            }
            bail!(
                "{}: no {name}.npy (or .tsv) split file; expected the MTAT layout described in datasets/README.md",
                dir.display()
            )
        };
        let (labels, n_tags) = read_labels(&dir.join("binary.npy"))?;
        let tags = match read_npy_strings(&dir.join("tags.npy")) {
            Ok(t) if t.len() == n_tags => t,
            _ => (0..n_tags).map(|i| format!("tag{i}")).collect(),
        };
        let rows = labels.len() / n_tags.max(1);
        let data = Mtat {
            root: root.to_path_buf(),
            tags,
            labels,
            n_tags,
            train: parse_split(&find("train")?)?,
            valid: parse_split(&find("valid")?)?,
            test: parse_split(&find("test")?)?,
        };
        for (name, split) in [("train", &data.train), ("valid", &data.valid), ("test", &data.test)] {
            if let Some(c) = split.iter().find(|c| c.row >= rows) {
                bail!("{name} clip {} has label row {} but binary.npy has {rows} rows", c.path, c.row);
            }
        }
        Ok(data)
    }

    /// SHA-256 over the three splits (label row and clip path of every
    /// clip) and the label matrix. The audio is not read: hashing ~3 GB of
    /// clips would cost minutes at every start, and the clip list names it.
    pub fn fingerprint(&self) -> String {
        let mut f = crate::data::identity::Fingerprint::new();
        for (name, split) in [("train", &self.train), ("valid", &self.valid), ("test", &self.test)] {
            let text: String = split.iter().map(|c| format!("{}\t{}\n", c.row, c.path)).collect();
            f.part(name, text.as_bytes());
        }
        let labels: Vec<u8> = self.labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        f.part("labels", &labels).hex()
    }

    /// The float32 audio file of a clip: `<root>/npy/<dir>/<clip>.npy`.
    pub fn audio_path(&self, clip: &Clip) -> PathBuf {
        self.root.join("npy").join(Path::new(&clip.path).with_extension("npy"))
    }

    /// The 0/1 labels of a clip.
    pub fn labels_of(&self, clip: &Clip) -> &[f32] {
        &self.labels[clip.row * self.n_tags..(clip.row + 1) * self.n_tags]
    }

    /// Samples in a clip's audio file.
    pub fn clip_len(&self, clip: &Clip) -> Result<usize> {
        let p = self.audio_path(clip);
        let h = npy_header(&p)
            .with_context(|| format!("audio of {} (run `morphgrad mtat preprocess` first?)", clip.path))?;
        Ok(h.shape.iter().product())
    }

    /// `len` samples from `start` (zero-padded past the end of a short clip).
    pub fn read(&self, clip: &Clip, start: usize, len: usize) -> Result<Vec<f32>> {
        let total = self.clip_len(clip)?;
        let avail = total.saturating_sub(start).min(len);
        let mut v = if avail > 0 { read_npy_f32_range(&self.audio_path(clip), start, avail)? } else { Vec::new() };
        v.resize(len, 0.0);
        Ok(v)
    }

    /// One random training chunk of a clip.
    pub fn random_chunk(&self, clip: &Clip, rng: &mut impl Rng) -> Result<Vec<f32>> {
        let total = self.clip_len(clip)?;
        let start = if total > CHUNK { rng.random_range(0..=total - CHUNK) } else { 0 };
        self.read(clip, start, CHUNK)
    }

    /// The 16 evaluation chunks of a clip, `hop = (len - 59049) / 16` apart.
    pub fn eval_chunks(&self, clip: &Clip) -> Result<Vec<f32>> {
        let total = self.clip_len(clip)?;
        let hop = total.saturating_sub(CHUNK) / EVAL_CHUNKS;
        let whole = self.read(clip, 0, total.max(CHUNK))?;
        Ok((0..EVAL_CHUNKS).flat_map(|i| whole[i * hop..i * hop + CHUNK].iter().copied()).collect())
    }
}
