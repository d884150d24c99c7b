//! Checkpoint formats: f32/f16 storage, legacy tensor names, and random checkpoints written by
//! `make-checkpoint` load and run.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use qwen3vl::engine::model::argmax;
use qwen3vl::engine::{BackendChoice, LoadOptions, MultimodalInput, Precision, Qwen3VlModel};
use qwen3vl::tools::random_checkpoint::{write_random_checkpoint, Arch};
use safetensors::tensor::{Dtype, TensorView};

/// Rewrite the dense_tied fixture with every tensor converted by `f` and renamed by `rename`.
fn rewrite(dst: &Path, dtype: Dtype, rename: impl Fn(&str) -> String) {
    std::fs::copy(
        model_dir("dense_tied").join("config.json"),
        dst.join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(model_dir("dense_tied").join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: HashMap<String, (Vec<usize>, Vec<u8>)> = HashMap::new();
    for (name, view) in st.tensors() {
        let vals: Vec<f32> = view
            .data()
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        let out: Vec<u8> = match dtype {
            Dtype::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => vals
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => unreachable!(),
        };
        data.insert(rename(&name), (view.shape().to_vec(), out));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, (s, b))| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        dst.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
}

fn logits(dir: &Path) -> Vec<f32> {
    let m = Qwen3VlModel::load(
        dir,
        LoadOptions {
            precision: Precision::F32,
            backend: BackendChoice::Portable,
            ..Default::default()
        },
    )
    .unwrap();
    let input = case("dense_tied", "mixed", "f32").input;
    m.prefill(&mut m.new_cache(), &input, true).unwrap().logits
}

#[test]
fn f32_storage_gives_the_same_model() {
    let d = tempfile::tempdir().unwrap();
    rewrite(d.path(), Dtype::F32, |n| n.to_string());
    assert!(max_abs_diff(&logits(d.path()), &logits(&model_dir("dense_tied"))) == 0.0);
}

#[test]
fn f16_storage_loads() {
    // bf16 → f16 is lossy for tiny magnitudes; the model must load and stay close.
    let d = tempfile::tempdir().unwrap();
    rewrite(d.path(), Dtype::F16, |n| n.to_string());
    assert!(max_abs_diff(&logits(d.path()), &logits(&model_dir("dense_tied"))) < 0.05);
}

#[test]
fn legacy_tensor_names_are_accepted() {
    let d = tempfile::tempdir().unwrap();
    rewrite(d.path(), Dtype::F32, |n| {
        n.replacen("model.visual.", "visual.", 1)
            .replacen("model.language_model.", "model.", 1)
    });
    assert!(max_abs_diff(&logits(d.path()), &logits(&model_dir("dense_tied"))) == 0.0);
}

#[test]
fn random_tiny_checkpoint_loads_and_generates() {
    let d = tempfile::tempdir().unwrap();
    write_random_checkpoint(Arch::Tiny, Some(2), d.path(), 7).unwrap();
    let m = Qwen3VlModel::load(d.path(), LoadOptions::default()).unwrap();
    assert_eq!(m.config.text_config.num_hidden_layers, 2);
    assert_eq!(m.vocab_size(), 151_936);
    // One 64×64 image (grid 1×4×4 → 4 tokens) between text tokens.
    let mut ids = vec![151_644, 872, 198, 151_652];
    ids.extend([151_655; 4]);
    ids.extend([151_653, 3838, 374, 151_645, 198]);
    let input = MultimodalInput {
        input_ids: ids,
        pixel_values: vec![0.25; 16 * 1536],
        image_grid_thw: vec![[1, 4, 4]],
        ..Default::default()
    };
    let (out, gen) = m.generate_greedy(&input, 3).unwrap();
    assert_eq!(gen.len(), 3);
    assert!(out.logits.iter().all(|v| v.is_finite()));
    assert_eq!(
        argmax(&out.logits[out.logits.len() - 151_936..]) as u32,
        gen[0]
    );
}

#[test]
fn every_released_architecture_has_a_valid_config() {
    for arch in ["2b", "4b", "8b", "32b", "30b-a3b"] {
        let a = Arch::parse(arch).unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("config.json"),
            a.config_json(None).to_string(),
        )
        .unwrap();
        let cfg = qwen3vl::engine::Qwen3VlConfig::from_model_dir(d.path()).unwrap();
        assert_eq!(cfg.text_config.vocab_size, 151_936, "{arch}");
        assert_eq!(cfg.head_dim(), 128, "{arch}");
    }
}
