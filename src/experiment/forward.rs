//! `morphgrad forward`: bring PyTorch-trained weights in, run the CIFAR net,
//! write the logits and (given labels) the loss and every parameter's
//! gradient under its own name. This is how users load weights trained
//! elsewhere and how the engine is checked against PyTorch end to end.
//!
//! Weight names are PyTorch `state_dict` paths of the reference model
//! (`blocks.{i}.conv.weight`, `head.dense1.weight`, `head.maxplus.bias`, ...).
//! The authors' original names are translated first (see [`translate_authors_names`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::ArrayD;

use crate::io::read_npy;
use crate::models::{CifarConfig, CifarNet, HeadKind};
use crate::nn::checkpoint::{load_npz, save_npz};
use crate::nn::{Ctx, Entry, Forward, Module, ModuleExt, StateDict, StateValue};
use crate::tensor::Tensor;
use crate::{data, ops};

/// What to run.
pub struct ForwardSpec {
    pub head: HeadKind,
    pub channels: usize,
    pub weights: PathBuf,
    pub input: PathBuf,
    pub labels: Option<PathBuf>,
    pub train_mode: bool,
    /// Dropout of the relu/maxout/zhang heads in train mode (0: deterministic).
    pub dropout: f32,
    pub out: PathBuf,
}

/// The authors' original parameter names → the reference names:
/// `layer{i}.{conv|0}.*` → `blocks.{i-1}.conv.*` and `layer{i}.{bn|1}.*` →
/// `blocks.{i-1}.bn.*` (layers numbered from 1, or from 0 if a `layer0`
/// exists); `dense1.*`, `dense2.*`, `maxout.*` → `head.…`; `bn.*` →
/// `head.bn1.*`; `relu.*` (their MaxPlus module) → `head.maxplus.*`.
/// Names already in reference form are kept.
pub fn translate_authors_names(sd: StateDict) -> StateDict {
    let zero_based = sd.keys().any(|k| k.starts_with("layer0."));
    sd.into_iter()
        .map(|(k, v)| {
            let parts: Vec<&str> = k.splitn(3, '.').collect();
            let new = match parts.as_slice() {
                [l, sub, rest] if l.starts_with("layer") && l[5..].parse::<usize>().is_ok() => {
                    let i: usize = l[5..].parse().expect("checked");
                    let block = if zero_based { i } else { i.saturating_sub(1) };
                    let sub = match *sub {
                        "0" => "conv",
                        "1" => "bn",
                        s => s,
                    };
                    format!("blocks.{block}.{sub}.{rest}")
                }
                ["dense1" | "dense2" | "maxout", ..] => format!("head.{k}"),
                ["bn", ..] => format!("head.bn1.{}", &k[3..]),
                ["relu", ..] => format!("head.maxplus.{}", &k[5..]),
                _ => k,
            };
            (new, v)
        })
        .collect()
}

/// The hidden width stored in the weights (`head.*` first layer's output size).
fn hidden_width(sd: &StateDict) -> Result<usize> {
    for key in ["head.dense1.weight", "head.maxout.branches.0.linear.weight"] {
        if let Some(v) = sd.get(key) {
            return Ok(v.shape()[0]);
        }
    }
    bail!(
        "the weights have neither head.dense1.weight nor head.maxout.branches.0.linear.weight: is this a CIFAR net state dict?"
    )
}

/// Input images: normalised `float32 [N, 3, H, W]`, or raw `uint8 [N, 32, 32, 3]`.
fn load_input(path: &Path) -> Result<ArrayD<f32>> {
    match read_npy::<f32>(path) {
        Ok(x) => Ok(x),
        Err(_) => {
            let raw = read_npy::<u8>(path)
                .with_context(|| format!("{}: expected float32 [N,3,H,W] or uint8 [N,32,32,3]", path.display()))?;
            if raw.ndim() != 4 || raw.shape()[3] != 3 {
                bail!("{}: uint8 images must be [N, 32, 32, 3], got {:?}", path.display(), raw.shape());
            }
            Ok(data::cifar::normalize(&raw))
        }
    }
}

/// Run the spec; writes `logits`, and with labels `loss` and `grad.<name>`.
pub fn run(spec: &ForwardSpec) -> Result<()> {
    let sd = translate_authors_names(load_npz(&spec.weights)?);
    let hidden = hidden_width(&sd)?;
    let config = CifarConfig {
        dropout: spec.dropout,
        hidden,
        sparse_k: 2 * hidden,
        ..CifarConfig::paper(spec.head, spec.channels)
    };
    let mut model = CifarNet::new(config, 0);
    model.load_state_dict(&sd).with_context(|| {
        format!("{} does not fit --head {} --channels {}", spec.weights.display(), spec.head, spec.channels)
    })?;
    let x = Tensor::new(load_input(&spec.input)?);
    let mut ctx = if spec.train_mode { Ctx::train(0) } else { Ctx::eval() };
    let logits = model.forward(&x, &mut ctx)?;
    let mut out = StateDict::new();
    out.insert("logits".into(), StateValue::F32(logits.value().clone()));
    if let Some(lp) = &spec.labels {
        let labels = read_npy::<i64>(lp)?;
        if labels.len() != x.shape()[0] {
            bail!("{}: {} labels for {} images", lp.display(), labels.len(), x.shape()[0]);
        }
        let labels: Vec<usize> = labels
            .iter()
            .map(|&l| {
                usize::try_from(l)
                    .ok()
                    .filter(|&l| l < 10)
                    .with_context(|| format!("{}: label {l} is not a class id 0-9", lp.display()))
            })
            .collect::<Result<_>>()?;
        let loss = ops::cross_entropy(&logits, &labels);
        out.insert("loss".into(), StateValue::F32(loss.value().clone()));
        let grads = loss.backward();
        model.visit(&mut |name, e| {
            let g = match e {
                Entry::Param(t) => grads.get(t).cloned(),
                Entry::Sparse(w) => grads.get(&w.values).map(|g| w.dense_grad(g)),
                _ => None,
            };
            if let Some(g) = g {
                out.insert(format!("grad.{name}"), StateValue::F32(g));
            }
        });
    }
    if spec.train_mode {
        for (name, v) in model.state_dict() {
            if name.contains("running_") || name.ends_with("num_batches_tracked") {
                out.insert(format!("after.{name}"), v);
            }
        }
    }
    save_npz(&spec.out, &out)?;
    println!("wrote {} ({} arrays, logits {:?})", spec.out.display(), out.len(), logits.shape());
    Ok(())
}
