//! The output folder of a reproduction, shared by every process of its grid:
//!
//! ```text
//! OUT/protocol.json            the experiment and its protocol, written once
//! OUT/runs/<head>-seed<s>/     one folder per run of the grid (see run_dir)
//! OUT/results.json, table.md … the report over every finished run
//! ```
//! The first process to arrive writes `protocol.json`; every later one
//! (another shard, a restart, a command adding seeds) must bring the same
//! protocol, or it stops and names the settings that differ. Seeds and
//! heads are not part of the protocol: a folder may hold any grid of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::run_dir::RunDir;
use super::{Protocol, RunId};
use crate::io::write_text_atomic;

/// `OUT/protocol.json`.
#[derive(Serialize, Deserialize)]
struct ProtocolFile<P> {
    experiment: String,
    protocol: P,
}

/// A reproduction's output folder.
pub struct OutDir {
    pub path: PathBuf,
}

impl OutDir {
    /// Open (or create) `path` for `protocol`: write `protocol.json` if the
    /// folder has none, else check that it records the same protocol.
    pub fn open<P: Protocol>(path: &Path, protocol: &P) -> Result<OutDir> {
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        let file = path.join("protocol.json");
        let text = serde_json::to_string_pretty(&ProtocolFile { experiment: P::EXPERIMENT.into(), protocol })?;
        if !write_once(&file, &text)? {
            let (experiment, theirs) = read_protocol(path)?;
            if experiment != P::EXPERIMENT {
                bail!(
                    "{} holds a `{experiment}` reproduction, not `{}`: give another --out",
                    path.display(),
                    P::EXPERIMENT
                );
            }
            let ours: Value = serde_json::from_str::<Value>(&text)?["protocol"].take();
            let diff = differences(&ours, &theirs);
            if !diff.is_empty() {
                bail!(
                    "the protocol of this command differs from the one in {}:\n  {}\nEvery process writing into one \
                     folder must train the same protocol: use the settings above, or give another --out",
                    file.display(),
                    diff.iter().map(|d| d.describe("this command", "protocol.json")).collect::<Vec<_>>().join("\n  ")
                );
            }
        }
        Ok(OutDir { path: path.to_path_buf() })
    }

    /// The folder of one run, created if needed.
    pub fn run_dir(&self, id: &RunId) -> Result<RunDir> {
        RunDir::new(&self.path.join("runs").join(id.folder()))
    }

    /// Every run folder under `OUT/runs`, sorted by head id and seed.
    /// Folders of other names are ignored.
    pub fn run_dirs(&self) -> Result<Vec<(RunId, RunDir)>> {
        let runs = self.path.join("runs");
        if !runs.is_dir() {
            return Ok(vec![]);
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&runs).with_context(|| format!("cannot list {}", runs.display()))? {
            let entry = entry?;
            if let Some(id) = RunId::from_folder(&entry.file_name().to_string_lossy())
                && entry.path().is_dir()
            {
                found.push((id, RunDir { path: entry.path() }));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}

/// The experiment name and protocol recorded in `dir/protocol.json`.
pub fn read_protocol(dir: &Path) -> Result<(String, Value)> {
    let file = dir.join("protocol.json");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "{} has no protocol.json: it is not the --out folder of a reproduction (give the folder that holds \
             runs/ and protocol.json)",
            dir.display()
        )
    })?;
    let mut v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON (truncated or edited?)", file.display()))?;
    let experiment = v["experiment"].as_str().map(str::to_string);
    match (experiment, v.get_mut("protocol")) {
        (Some(e), Some(p)) => Ok((e, p.take())),
        _ => bail!("{} lacks its `experiment` or `protocol` field", file.display()),
    }
}

/// Write `text` to `path` only if `path` does not exist, atomically: the
/// text goes to a temporary file first, which is then hard-linked to `path`
/// (link fails if `path` exists, also over NFS). Returns whether this call
/// wrote it.
fn write_once(path: &Path, text: &str) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let tmp =
        path.with_file_name(format!(".{}.new-{}", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    write_text_atomic(&tmp, text)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// One setting on which two protocols disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Dotted path of the setting, e.g. `channels` or `data.sha256`.
    pub field: String,
    pub ours: Value,
    pub theirs: Value,
}

impl Difference {
    /// `field: A in <ours>, B in <theirs>`.
    pub fn describe(&self, ours: &str, theirs: &str) -> String {
        let show = |v: &Value| if v.is_null() { "absent".to_string() } else { v.to_string() };
        format!("{}: {} in {ours}, {} in {theirs}", self.field, show(&self.ours), show(&self.theirs))
    }
}

/// The settings on which two protocols (as JSON) differ, by dotted path.
/// `data.source` — the data's path as typed, which differs between
/// machines holding the same data — is not compared; the data's fingerprint
/// is.
pub fn differences(ours: &Value, theirs: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_into("", ours, theirs, &mut out);
    out.retain(|d| d.field != "data.source");
    out
}

fn diff_into(at: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let field = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                diff_into(&field, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(Difference { field: at.to_string(), ours: a.clone(), theirs: b.clone() }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn differences_name_each_differing_setting_by_path_and_ignore_the_data_path() {
        let a = json!({"channels": 32, "epochs": 10, "data": {"source": "a.tar.gz", "sha256": "11"}, "ratios": [0.7]});
        let b = json!({"channels": 128, "epochs": 10, "data": {"source": "/x/b.tar.gz", "sha256": "22"}, "lr": 1e-3});
        let d = differences(&a, &b);
        let fields: Vec<&str> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["channels", "data.sha256", "lr", "ratios"]);
        assert_eq!(d[0].describe("here", "there"), "channels: 32 in here, 128 in there");
        assert_eq!(d[2].describe("here", "there"), "lr: absent in here, 0.001 in there");
    }

    #[test]
    fn write_once_writes_the_first_text_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("morphgrad-write-once-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.json");
        let _ = std::fs::remove_file(&f);
        assert!(write_once(&f, "first").unwrap());
        assert!(!write_once(&f, "second").unwrap());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "first");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left behind");
        std::fs::remove_dir_all(dir).ok();
    }
}
