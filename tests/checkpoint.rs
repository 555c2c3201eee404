//! Checkpoints: round trips, strict loading with useful errors, atomic writes,
//! and optimiser state that survives a save/load.

use morphgrad::nn::checkpoint::{load_npz, prefixed, save_npz, sub_dict};
use morphgrad::nn::{
    ConvBlock, Ctx, Entry, EntryMut, Forward, Linear, Misfit, Module, ModuleExt, StateValue, visit_child,
    visit_child_mut,
};
use morphgrad::optim::{Adam, Optimizer};
use morphgrad::{Tensor, ops};
use ndarray::{ArrayD, IxDyn};
use rand::{SeedableRng, rngs::Xoshiro256PlusPlus};

struct Tiny {
    block: ConvBlock,
    fc: Linear,
}

impl Tiny {
    fn new(seed: u64) -> Tiny {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Tiny { block: ConvBlock::new(2, 3, &mut rng), fc: Linear::new(3, 4, true, &mut rng) }
    }
    fn loss(&mut self, ctx: &mut Ctx) -> Tensor {
        let x =
            Tensor::new(ArrayD::from_shape_fn(IxDyn(&[4, 2, 4, 4]), |i| (i[0] + 2 * i[1] + i[2] * i[3]) as f32 * 0.1));
        let h = self.block.forward(&x, ctx).global_max_pool();
        ops::cross_entropy(&self.fc.forward(&h, ctx), &[0, 1, 2, 3])
    }
}

impl Module for Tiny {
    fn visit(&self, f: &mut dyn FnMut(&str, Entry<'_>)) {
        visit_child("block", &self.block, f);
        visit_child("fc", &self.fc, f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, EntryMut<'_>)) {
        visit_child_mut("block", &mut self.block, f);
        visit_child_mut("fc", &mut self.fc, f);
    }
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("morphgrad-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn state_dict_names_follow_pytorch() {
    let names: Vec<String> = Tiny::new(0).state_dict().into_keys().collect();
    assert_eq!(
        names,
        [
            "block.bn.bias",
            "block.bn.num_batches_tracked",
            "block.bn.running_mean",
            "block.bn.running_var",
            "block.bn.weight",
            "block.conv.bias",
            "block.conv.weight",
            "fc.bias",
            "fc.weight"
        ]
    );
}

#[test]
fn model_and_adam_state_round_trip_through_npz() {
    let dir = tmpdir("roundtrip");
    let path = dir.join("ckpt.npz");
    let (mut a, mut opt_a) = (Tiny::new(1), Adam::new(1e-2, 1e-4));
    for _ in 0..2 {
        let g = a.loss(&mut Ctx::train(0)).backward();
        opt_a.step(&mut a, &g);
    }
    let mut sd = a.state_dict();
    sd.extend(prefixed(opt_a.state_dict(), "optimizer"));
    save_npz(&path, &sd).unwrap();

    let loaded = load_npz(&path).unwrap();
    assert_eq!(loaded, sd);
    let (mut b, mut opt_b) = (Tiny::new(2), Adam::new(1e-2, 1e-4));
    let model_part: morphgrad::nn::StateDict =
        loaded.iter().filter(|(k, _)| !k.starts_with("optimizer.")).map(|(k, v)| (k.clone(), v.clone())).collect();
    b.load_state_dict(&model_part).unwrap();
    opt_b.load_state_dict(&sub_dict(&loaded, "optimizer")).unwrap();
    // One more identical step from both: the restored run continues bit-identically.
    for (m, opt) in [(&mut a, &mut opt_a), (&mut b, &mut opt_b)] {
        let g = m.loss(&mut Ctx::train(0)).backward();
        opt.step(m, &g);
    }
    assert_eq!(a.state_dict(), b.state_dict());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn loading_reports_missing_unexpected_and_misshapen_entries_and_changes_nothing() {
    let mut m = Tiny::new(3);
    let before = m.state_dict();
    let mut sd = before.clone();
    sd.remove("fc.bias");
    sd.insert("fc.extra".into(), StateValue::F32(ArrayD::zeros(IxDyn(&[2]))));
    sd.insert("block.conv.weight".into(), StateValue::F32(ArrayD::zeros(IxDyn(&[3, 2, 5, 5]))));
    let err = m.load_state_dict(&sd).unwrap_err();
    // Typed, so that a caller can act on each entry ...
    assert_eq!(
        err.0,
        [
            Misfit::Shape { name: "block.conv.weight".into(), found: vec![3, 2, 5, 5], expected: vec![3, 2, 3, 3] },
            Misfit::Missing { name: "fc.bias".into(), shape: vec![4] },
            Misfit::Unexpected { name: "fc.extra".into(), shape: vec![2] },
        ]
    );
    // ... and readable as it is.
    let err = err.to_string();
    assert!(err.contains("missing `fc.bias` (shape [4])"), "{err}");
    assert!(err.contains("unexpected `fc.extra`"), "{err}");
    assert!(err.contains("`block.conv.weight` has shape [3, 2, 5, 5], the model expects [3, 2, 3, 3]"), "{err}");
    assert_eq!(m.state_dict(), before);
}

#[test]
fn a_failed_write_keeps_the_previous_file() {
    let dir = tmpdir("atomic");
    let path = dir.join("file.txt");
    morphgrad::io::write_text_atomic(&path, "old").unwrap();
    let r = morphgrad::io::write_atomic(&path, |w| {
        use std::io::Write;
        w.write_all(b"half of the new cont")?;
        anyhow::bail!("disk full (simulated)")
    });
    assert!(r.is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary file removed: {leftovers:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let dir = tmpdir("corrupt");
    let path = dir.join("bad.npz");
    std::fs::write(&path, b"not a zip").unwrap();
    let err = format!("{:#}", load_npz(&path).unwrap_err());
    assert!(err.contains("bad.npz") && err.contains("not an .npz"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// Name and kind of every entry, as one visitor lists them.
fn listing(m: &mut dyn Module) -> (Vec<String>, Vec<String>) {
    fn kind_of(e: &Entry<'_>) -> &'static str {
        match e {
            Entry::Param(_) => "param",
            Entry::Buffer(_) => "buffer",
            Entry::Counter(_) => "counter",
            Entry::Sparse(_) => "sparse",
        }
    }
    let mut read = Vec::new();
    m.visit(&mut |name, e| read.push(format!("{name}: {}", kind_of(&e))));
    let mut write = Vec::new();
    m.visit_mut(&mut |name, e| {
        let kind = match e {
            EntryMut::Param(_) => "param",
            EntryMut::Buffer(_) => "buffer",
            EntryMut::Counter(_) => "counter",
            EntryMut::Sparse(_) => "sparse",
        };
        write.push(format!("{name}: {kind}"));
    });
    (read, write)
}

/// `visit` and `visit_mut` are written out separately in every layer; they
/// must list the same entries under the same names, in the same order, for
/// every head of both models (else a loaded checkpoint would fill the wrong
/// tensors, or the optimiser would skip one).
#[test]
fn both_visitors_list_the_same_entries_for_every_model() {
    use morphgrad::models::{CifarConfig, CifarNet, HeadKind, ShortChunkCnn, ShortChunkConfig};
    let heads = [
        HeadKind::Relu,
        HeadKind::Maxout,
        HeadKind::Zhang,
        HeadKind::DenseMorph { bn: true },
        HeadKind::DenseMorph { bn: false },
        HeadKind::SparseMorph { bn: true },
        HeadKind::SparseMorph { bn: false },
    ];
    for head in heads {
        let models: [Box<dyn Module>; 2] = [
            Box::new(CifarNet::new(CifarConfig { hidden: 16, sparse_k: 32, ..CifarConfig::paper(head, 4) }, 0)),
            Box::new(ShortChunkCnn::new(ShortChunkConfig { sparse_k: 32, ..ShortChunkConfig::paper(head, 2) }, 0)),
        ];
        for mut m in models {
            let (read, write) = listing(m.as_mut());
            assert!(read.len() > 10, "{}: only {} entries", head.id(), read.len());
            assert_eq!(read, write, "{}", head.id());
            assert_eq!(m.state_dict().len(), read.len(), "{}", head.id());
        }
    }
}
