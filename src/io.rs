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

/// The parts of a `.npy` header this crate needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// e.g. `<f4`, `<U157`.
    pub descr: String,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    /// Byte offset of the data.
    pub data_offset: u64,
}

/// Parse the header of the `.npy` file at `path`.
pub fn npy_header(path: &Path) -> Result<NpyHeader> {
    use std::io::Read;
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let bad = || anyhow::anyhow!("{} is not a .npy file (bad header; corrupt or truncated?)", path.display());
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre).map_err(|_| bad())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad());
    }
    let (len, start) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10usize),
        2 | 3 => {
            let mut more = [0u8; 2];
            f.read_exact(&mut more).map_err(|_| bad())?;
            (u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize, 12usize)
        }
        _ => return Err(bad()),
    };
    let mut text = vec![0u8; len];
    f.read_exact(&mut text).map_err(|_| bad())?;
    let text = String::from_utf8_lossy(&text);
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or_else(bad)?.trim_matches('\'').to_string();
    let fortran_order = field("fortran_order").ok_or_else(bad)? == "True";
    let shape = field("shape")
        .ok_or_else(bad)?
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader { descr, shape, fortran_order, data_offset: (start + len) as u64 })
}

/// A 1-D numpy array of unicode strings (`<U…`, which ndarray-npy cannot read).
pub fn read_npy_strings(path: &Path) -> Result<Vec<String>> {
    let h = npy_header(path)?;
    let width: usize = h.descr.strip_prefix("<U").and_then(|w| w.parse().ok()).with_context(|| {
        format!("{}: expected a little-endian unicode array (<U..), found dtype {}", path.display(), h.descr)
    })?;
    let n: usize = h.shape.iter().product();
    let bytes = std::fs::read(path)?;
    let data = &bytes[h.data_offset as usize..];
    if data.len() < n * width * 4 {
        anyhow::bail!("{}: truncated ({} of {} data bytes)", path.display(), data.len(), n * width * 4);
    }
    Ok(data[..n * width * 4]
        .chunks_exact(width * 4)
        .map(|s| {
            s.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&c| c != 0)
                .filter_map(char::from_u32)
                .collect()
        })
        .collect())
}

/// `len` float32 values starting at element `start` of a 1-D `<f4` `.npy`,
/// read without loading the rest of the file.
pub fn read_npy_f32_range(path: &Path, start: usize, len: usize) -> Result<Vec<f32>> {
    use std::io::{Read, Seek, SeekFrom};
    let h = npy_header(path)?;
    if h.descr != "<f4" || h.shape.len() != 1 {
        anyhow::bail!("{}: expected a 1-D float32 array, found {} {:?}", path.display(), h.descr, h.shape);
    }
    if start + len > h.shape[0] {
        anyhow::bail!("{}: samples {start}..{} past the end ({})", path.display(), start + len, h.shape[0]);
    }
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(h.data_offset + 4 * start as u64))?;
    let mut buf = vec![0u8; 4 * len];
    f.read_exact(&mut buf).with_context(|| format!("{}: truncated", path.display()))?;
    Ok(buf.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Write a 1-D numpy array of unicode strings (`<U…`), atomically.
pub fn write_npy_strings(path: &Path, items: &[String]) -> Result<()> {
    let width = items.iter().map(|s| s.chars().count()).max().unwrap_or(1).max(1);
    let mut header = format!("{{'descr': '<U{width}', 'fortran_order': False, 'shape': ({},), }}", items.len());
    // Pad so that magic (10 bytes) + header + newline is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    write_atomic(path, |w| {
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for s in items {
            let mut n = 0;
            for c in s.chars() {
                w.write_all(&(c as u32).to_le_bytes())?;
                n += 1;
            }
            for _ in n..width {
                w.write_all(&0u32.to_le_bytes())?;
            }
        }
        Ok(())
    })
}
