//! File helpers shared by checkpoints, caches and reports: atomic writes and
//! `.npy` reading with errors that name the file.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, ReadableElement};

/// Write `path` atomically: `write` fills a temporary file in the same
/// folder, which is flushed, synced and renamed over `path` only when
/// `write` succeeds. A crash leaves either the old file or the new one,
/// never half of one.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Write a text file atomically.
pub fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |w| Ok(w.write_all(text.as_bytes())?))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Read a `.npy` array of element type `T`, any number of dimensions. The
/// error names the file and what was wrong with it (missing, not an npy
/// file, wrong dtype, truncated).
pub fn read_npy<T: ReadableElement>(path: &Path) -> Result<ArrayD<T>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ArrayD::<T>::read_npy(std::io::BufReader::new(file)).with_context(|| {
        format!(
            "{} is not a readable .npy array of {} (corrupt, truncated or another dtype)",
            path.display(),
            std::any::type_name::<T>()
        )
    })
}

/// Write an array as `.npy`, atomically.
pub fn write_npy<T: ndarray_npy::WritableElement>(path: &Path, a: &ArrayD<T>) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    write_atomic(path, |w| Ok(a.write_npy(w)?))
}
