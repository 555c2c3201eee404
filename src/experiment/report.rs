//! `morphgrad report OUT [OUT2 ...]`: the tables and plots of every finished
//! run under one or more output folders — shards that shared a folder,
//! folders copied together from several machines, seeds added on another
//! day. `reproduce` ends with the same call over its own folder, so a
//! sharded grid and a single process give the same `results.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::cifar::CifarProtocol;
use super::mtat::MtatProtocol;
use super::out_dir::{OutDir, differences, read_protocol};
use super::run_dir::RunDir;
use super::{Protocol, RunId, RunRecord};
use crate::models::HeadKind;

/// What a report found and wrote.
#[derive(Debug)]
pub struct Summary {
    /// `cifar` or `mtat`.
    pub experiment: String,
    /// Finished runs in the report.
    pub finished: usize,
    /// Runs with a folder but no result, each with what was found of it.
    pub missing: Vec<(RunId, String)>,
    /// The tables, as Markdown.
    pub tables: String,
}

/// Report over the runs under `dirs` into `out`. The folders must record
/// the same protocol (their data paths may differ; their data may not).
/// A run finished in several folders must have the same result in each.
/// With `require_complete`, a run folder without a result is an error.
pub fn report(dirs: &[PathBuf], out: &Path, require_complete: bool) -> Result<Summary> {
    let Some(first) = dirs.first() else { bail!("report needs at least one output folder") };
    let (experiment, protocol) = read_protocol(first)?;
    for dir in &dirs[1..] {
        let (e, p) = read_protocol(dir)?;
        if e != experiment {
            bail!(
                "{} holds a `{experiment}` reproduction but {} a `{e}` one: report them separately",
                first.display(),
                dir.display()
            );
        }
        let diff = differences(&protocol, &p);
        if !diff.is_empty() {
            let (a, b) = (first.display().to_string(), dir.display().to_string());
            bail!(
                "{a} and {b} were trained with different protocols:\n  {}\nOnly runs of one protocol make a table: \
                 report each folder on its own",
                diff.iter().map(|d| d.describe(&a, &b)).collect::<Vec<_>>().join("\n  ")
            );
        }
    }
    let summary = match experiment.as_str() {
        CifarProtocol::EXPERIMENT => report_as::<CifarProtocol>(protocol, dirs, out, require_complete)?,
        MtatProtocol::EXPERIMENT => report_as::<MtatProtocol>(protocol, dirs, out, require_complete)?,
        other => bail!("{}: unknown experiment `{other}` (this morphgrad knows cifar and mtat)", first.display()),
    };
    Ok(Summary { experiment, ..summary })
}

fn report_as<P: Protocol>(protocol: Value, dirs: &[PathBuf], out: &Path, require_complete: bool) -> Result<Summary> {
    let protocol: P = serde_json::from_value(protocol).with_context(|| {
        format!(
            "{}/protocol.json does not describe a {} protocol of this morphgrad version",
            dirs[0].display(),
            P::EXPERIMENT
        )
    })?;
    let mut finished: BTreeMap<RunId, (P::Run, PathBuf)> = BTreeMap::new();
    let mut unfinished: BTreeMap<RunId, String> = BTreeMap::new();
    for dir in dirs {
        for (id, run_dir) in (OutDir { path: dir.clone() }).run_dirs()? {
            let file = run_dir.path.join("result.json");
            let Some(run) = run_dir.read_result::<P::Run>()? else {
                unfinished.entry(id).or_insert_with(|| progress_of(&run_dir));
                continue;
            };
            if run.id() != id {
                bail!(
                    "{} holds the result of {} but lies in the folder of {id}: move it back",
                    file.display(),
                    run.id()
                );
            }
            if let Some(why) = protocol.misfit(&run) {
                bail!(
                    "{}: {why}, so it is not a run of the protocol in {}/protocol.json",
                    file.display(),
                    dir.display()
                );
            }
            if let Some((earlier, at)) = finished.get(&id) {
                if serde_json::to_value(earlier)? != serde_json::to_value(&run)? {
                    bail!(
                        "{id} is finished in both {} and {} with different results: keep one of the two run \
                         folders",
                        at.display(),
                        file.display()
                    );
                }
                continue;
            }
            finished.insert(id, (run, file));
        }
    }
    let missing: Vec<(RunId, String)> = unfinished.into_iter().filter(|(id, _)| !finished.contains_key(id)).collect();
    let list = |m: &[(RunId, String)]| m.iter().map(|(id, why)| format!("{id} ({why})")).collect::<Vec<_>>().join(", ");
    if finished.is_empty() {
        let folders: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        bail!(
            "no finished run under {}: nothing to report yet{}",
            folders.join(", "),
            if missing.is_empty() { String::new() } else { format!(" (unfinished: {})", list(&missing)) }
        );
    }
    if require_complete && !missing.is_empty() {
        bail!("--require-complete: {} run(s) are not finished: {}", missing.len(), list(&missing));
    }
    let mut runs: Vec<P::Run> = finished.into_values().map(|(run, _)| run).collect();
    runs.sort_by_key(|r| order(&r.id()));
    let mut ids: Vec<RunId> = missing.iter().map(|(id, _)| id.clone()).collect();
    ids.sort_by_key(order);
    let tables = protocol.write_report(&runs, &ids, out)?;
    Ok(Summary { experiment: String::new(), finished: runs.len(), missing, tables })
}

/// Tables list heads in the paper's order, then seeds ascending.
fn order(id: &RunId) -> (Option<HeadKind>, u64) {
    (id.head.parse().ok(), id.seed)
}

/// How far an unfinished run got, from its files.
fn progress_of(dir: &RunDir) -> String {
    let epochs = std::fs::read_to_string(dir.path.join("log.jsonl")).map(|s| s.lines().count()).unwrap_or(0);
    if dir.path.join("checkpoint.npz").exists() {
        format!("interrupted or running, {epochs} epoch(s) done")
    } else {
        "not started".into()
    }
}
