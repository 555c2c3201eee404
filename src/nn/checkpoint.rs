//! Checkpoints: a state dict (parameters, buffers, optimiser state, anything
//! keyed by dotted names) as an uncompressed `.npz` — readable by
//! `numpy.load` and `torch` users alike. Writes are atomic.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ndarray::ArrayD;
use ndarray_npy::{NpzReader, NpzWriter};

use super::module::{StateDict, StateValue};
use crate::io::write_atomic;

/// Save every entry of `sd` as `<name>.npy` inside the `.npz` at `path`.
pub fn save_npz(path: &Path, sd: &StateDict) -> Result<()> {
    write_atomic(path, |w| {
        let mut npz = NpzWriter::new(w);
        for (name, v) in sd {
            match v {
                StateValue::F32(a) => npz.add_array(name.as_str(), a)?,
                StateValue::I64(a) => npz.add_array(name.as_str(), a)?,
            }
        }
        npz.finish()?;
        Ok(())
    })
}

/// Load every array of an `.npz` (float32 or int64) into a state dict.
pub fn load_npz(path: &Path) -> Result<StateDict> {
    let file = File::open(path).with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    let mut npz = NpzReader::new(file)
        .with_context(|| format!("{} is not an .npz archive (corrupt or truncated?)", path.display()))?;
    let mut sd = StateDict::new();
    for name in npz.names().with_context(|| format!("reading {}", path.display()))? {
        let value = match npz.by_name::<_, ndarray::IxDyn>(&name) {
            Ok(a) => StateValue::F32(a),
            Err(_) => match npz.by_name::<ndarray::OwnedRepr<i64>, ndarray::IxDyn>(&name) {
                Ok(a) => StateValue::I64(a),
                Err(e) => bail!("{}: entry `{name}` is neither float32 nor int64: {e}", path.display()),
            },
        };
        sd.insert(name, value);
    }
    Ok(sd)
}

/// Entries of `sd` whose name starts with `prefix.`, with the prefix removed.
pub fn sub_dict(sd: &StateDict, prefix: &str) -> StateDict {
    let p = format!("{prefix}.");
    sd.iter().filter_map(|(k, v)| k.strip_prefix(&p).map(|rest| (rest.to_string(), v.clone()))).collect()
}

/// `sd` with every name prefixed by `prefix.`.
pub fn prefixed(sd: StateDict, prefix: &str) -> StateDict {
    sd.into_iter().map(|(k, v)| (format!("{prefix}.{k}"), v)).collect()
}

/// A float32 entry by name, or an error naming it.
pub fn get_f32<'a>(sd: &'a StateDict, name: &str) -> Result<&'a ArrayD<f32>> {
    match sd.get(name) {
        Some(StateValue::F32(a)) => Ok(a),
        Some(StateValue::I64(_)) => bail!("`{name}` holds int64 values, expected float32"),
        None => bail!("missing `{name}`"),
    }
}
