//! CIFAR-10 from any of its usual forms, decoded once and cached as `.npy`:
//!
//! * the official binary version: a folder with `data_batch_{1..5}.bin` and
//!   `test_batch.bin` (or a parent holding `cifar-10-batches-bin/`);
//! * image folders `train/<class>/*.{jpg,png}` and `test/<class>/...`, given
//!   as a directory or read straight from a `.tar.gz` (classes are numbered
//!   in alphabetical order of their folder names, as in CIFAR-10);
//! * [`synthetic`](super::synthetic) images, the built-in default.
//!
//! Images are kept as `u8` in HWC order, `[N, 32, 32, 3]`, and normalised
//! per batch with the paper's mean and std.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, IxDyn};
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};
use rayon::prelude::*;

use crate::io::{read_npy, write_npy};

pub const SIDE: usize = 32;
pub const PIXELS: usize = SIDE * SIDE * 3;
/// Per-channel mean and std of the paper's normalisation.
pub const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const STD: [f32; 3] = [0.2023, 0.1994, 0.2010];
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Labelled 32×32 RGB images, `u8`, HWC.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// `len × 3072` bytes.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> ImageSet {
        ImageSet {
            images: idx.iter().flat_map(|&i| self.image(i).iter().copied()).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// Normalised tensor `[len(idx), 3, 32, 32]` and labels of the images at `idx`.
    pub fn batch(&self, idx: &[usize]) -> (ArrayD<f32>, Vec<usize>) {
        let mut x = vec![0.0f32; idx.len() * PIXELS];
        x.par_chunks_mut(PIXELS).zip(idx.par_iter()).for_each(|(dst, &i)| normalize_into(self.image(i), dst));
        let labels = idx.iter().map(|&i| self.labels[i] as usize).collect();
        (ArrayD::from_shape_vec(IxDyn(&[idx.len(), 3, SIDE, SIDE]), x).expect("sizes"), labels)
    }
}

/// One HWC `u8` image → CHW `f32`, `(v/255 - mean) / std`.
fn normalize_into(img: &[u8], dst: &mut [f32]) {
    let plane = SIDE * SIDE;
    for (p, px) in img.chunks_exact(3).enumerate() {
        for c in 0..3 {
            dst[c * plane + p] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
}

/// Normalise `[N, 32, 32, 3]` `u8` images to `[N, 3, 32, 32]` `f32`.
pub fn normalize(images: &ArrayD<u8>) -> ArrayD<f32> {
    let n = images.shape()[0];
    let set = ImageSet { images: images.iter().copied().collect(), labels: vec![0; n] };
    set.batch(&(0..n).collect::<Vec<_>>()).0
}

/// The 50k training and 10k test images.
#[derive(Clone, Debug, PartialEq)]
pub struct Cifar {
    pub train: ImageSet,
    pub test: ImageSet,
}

impl Cifar {
    /// Load CIFAR-10 from `path` (binary folder, image folder or `.tar.gz`),
    /// using a decoded `.npy` copy in `cache_dir` when one exists for this
    /// source, and writing one otherwise.
    pub fn load(path: &Path, cache_dir: &Path) -> Result<Cifar> {
        let key = cache_key(path)?;
        let cached = |split: &str, what: &str| cache_dir.join(format!("cifar-{key}-{split}-{what}.npy"));
        if ["train", "test"].iter().all(|s| cached(s, "images").exists() && cached(s, "labels").exists()) {
            let read = |s: &str| -> Result<ImageSet> {
                Ok(ImageSet {
                    images: read_npy::<u8>(&cached(s, "images"))?.into_raw_vec_and_offset().0,
                    labels: read_npy::<u8>(&cached(s, "labels"))?.into_raw_vec_and_offset().0,
                })
            };
            let data = Cifar { train: read("train")?, test: read("test")? };
            data.check(path)?;
            return Ok(data);
        }
        let data = Cifar::decode(path)?;
        data.check(path)?;
        for (s, set) in [("train", &data.train), ("test", &data.test)] {
            let imgs = ArrayD::from_shape_vec(IxDyn(&[set.len(), SIDE, SIDE, 3]), set.images.clone())?;
            write_npy(&cached(s, "images"), &imgs)?;
            write_npy(&cached(s, "labels"), &ArrayD::from_shape_vec(IxDyn(&[set.len()]), set.labels.clone())?)?;
        }
        Ok(data)
    }

    /// How the data at `path` is stored, in words (for result files).
    pub fn format_of(path: &Path) -> &'static str {
        if path.is_file() {
            "CIFAR-10 image folders (train/, test/) in a .tar.gz"
        } else if path.join("data_batch_1.bin").exists() || path.join("cifar-10-batches-bin").is_dir() {
            "CIFAR-10 binary version"
        } else {
            "CIFAR-10 image folders (train/, test/)"
        }
    }

    /// SHA-256 over the decoded images and labels, train then test: the same
    /// for the same images whatever file format held them.
    pub fn fingerprint(&self) -> String {
        let mut f = crate::data::identity::Fingerprint::new();
        for (name, set) in [("train", &self.train), ("test", &self.test)] {
            f.part(&format!("{name} images"), &set.images).part(&format!("{name} labels"), &set.labels);
        }
        f.hex()
    }

    /// Decode without the cache.
    pub fn decode(path: &Path) -> Result<Cifar> {
        if !path.exists() {
            bail!(
                "CIFAR-10 data not found at {}: give the folder of the binary version \
                 (data_batch_1.bin ...), an image folder with train/ and test/, or a .tar.gz of one",
                path.display()
            );
        }
        if path.is_file() {
            let name = path.to_string_lossy();
            if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
                return from_tar_gz(path);
            }
            bail!("{} is a file but not a .tar.gz; give a folder or a .tar.gz", path.display());
        }
        for dir in [path.to_path_buf(), path.join("cifar-10-batches-bin")] {
            if dir.join("data_batch_1.bin").exists() {
                return from_binary(&dir);
            }
        }
        if path.join("train").is_dir() && path.join("test").is_dir() {
            return from_folders(path);
        }
        bail!(
            "{} holds neither the CIFAR-10 binary files (data_batch_1.bin ...) nor train/ and test/ image folders",
            path.display()
        )
    }

    fn check(&self, path: &Path) -> Result<()> {
        for (name, set) in [("train", &self.train), ("test", &self.test)] {
            if set.is_empty() {
                bail!("{}: no {name} images found", path.display());
            }
            if set.images.len() != set.len() * PIXELS {
                bail!("{}: {name} images and labels disagree in number (corrupt cache? delete it)", path.display());
            }
            if let Some(&l) = set.labels.iter().find(|&&l| l >= 10) {
                bail!("{}: {name} label {l} is not a CIFAR-10 class id (0-9)", path.display());
            }
        }
        Ok(())
    }
}

/// A file-system-safe name for a data source, changing when the file does.
fn cache_key(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("CIFAR-10 data not found at {}", path.display()))?;
    let stem: String = path
        .file_name()
        .map(|s| s.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect())
        .unwrap_or_else(|| "data".into());
    Ok(if meta.is_file() { format!("{stem}-{}", meta.len()) } else { stem })
}

fn from_binary(dir: &Path) -> Result<Cifar> {
    let read = |files: &[String]| -> Result<ImageSet> {
        let mut set = ImageSet { images: Vec::new(), labels: Vec::new() };
        for f in files {
            let p = dir.join(f);
            let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            if bytes.is_empty() || bytes.len() % (PIXELS + 1) != 0 {
                bail!(
                    "{} is corrupt or truncated: {} bytes is not a whole number of 3073-byte records",
                    p.display(),
                    bytes.len()
                );
            }
            for rec in bytes.chunks_exact(PIXELS + 1) {
                set.labels.push(rec[0]);
                // Records are CHW; keep HWC like every other source.
                for p in 0..SIDE * SIDE {
                    set.images.extend((0..3).map(|c| rec[1 + c * SIDE * SIDE + p]));
                }
            }
        }
        Ok(set)
    };
    let train: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    Ok(Cifar { train: read(&train)?, test: read(&["test_batch.bin".to_string()])? })
}

/// Encoded images found for one split: (class name, file name, bytes).
type Encoded = Vec<(String, String, Vec<u8>)>;

fn from_folders(root: &Path) -> Result<Cifar> {
    let mut splits: BTreeMap<String, Encoded> = BTreeMap::new();
    for split in ["train", "test"] {
        let mut found = Encoded::new();
        for class in sorted_dir(&root.join(split))? {
            if !class.is_dir() {
                continue;
            }
            let cname = class.file_name().unwrap().to_string_lossy().into_owned();
            for file in sorted_dir(&class)? {
                if is_image(&file) {
                    let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    found.push((cname.clone(), file.display().to_string(), bytes));
                }
            }
        }
        splits.insert(split.into(), found);
    }
    assemble(splits, root)
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    v.sort();
    Ok(v)
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

fn from_tar_gz(path: &Path) -> Result<Cifar> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut splits: BTreeMap<String, Encoded> = BTreeMap::new();
    let corrupt = || format!("{} is not a readable .tar.gz (corrupt or truncated?)", path.display());
    for entry in archive.entries().with_context(corrupt)? {
        let mut entry = entry.with_context(corrupt)?;
        let name = entry.path().with_context(corrupt)?.to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        // .../<split>/<class>/<file>
        if parts.len() < 3 || !is_image(Path::new(&name)) {
            continue;
        }
        let (split, class) = (parts[parts.len() - 3], parts[parts.len() - 2]);
        if split != "train" && split != "test" {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).with_context(|| format!("{}: truncated entry {name}", path.display()))?;
        splits.entry(split.into()).or_default().push((class.into(), name, bytes));
    }
    for v in splits.values_mut() {
        v.sort_by(|a, b| a.1.cmp(&b.1));
    }
    assemble(splits, path)
}

/// Decode every image in parallel; class ids follow the sorted class names.
fn assemble(splits: BTreeMap<String, Encoded>, source: &Path) -> Result<Cifar> {
    let mut classes: Vec<&String> = splits.values().flatten().map(|(c, _, _)| c).collect();
    classes.sort();
    classes.dedup();
    if classes.len() != 10 {
        bail!("{}: found {} class folders ({:?}); CIFAR-10 has 10", source.display(), classes.len(), classes);
    }
    let id = |c: &String| classes.iter().position(|k| *k == c).expect("listed") as u8;
    let decode_split = |name: &str| -> Result<ImageSet> {
        let items = splits.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let decoded: Vec<Vec<u8>> =
            items.par_iter().map(|(_, file, bytes)| decode_image(file, bytes)).collect::<Result<_>>()?;
        Ok(ImageSet { images: decoded.concat(), labels: items.iter().map(|(c, _, _)| id(c)).collect() })
    };
    Ok(Cifar { train: decode_split("train")?, test: decode_split("test")? })
}

fn decode_image(file: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    let img = image::load_from_memory(bytes).with_context(|| format!("{file}: not a decodable JPEG/PNG (corrupt?)"))?;
    if img.width() as usize != SIDE || img.height() as usize != SIDE {
        bail!("{file}: image is {}x{}, CIFAR-10 images are 32x32", img.width(), img.height());
    }
    Ok(img.to_rgb8().into_raw())
}

/// The seeded 80/20 split of the training set into train and validation
/// indices (a permutation of `0..n`, first 80% train).
pub fn split_train_val(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5EED_5B17));
    let n_train = n * 4 / 5;
    let val = idx.split_off(n_train);
    (idx, val)
}
