//! An f16 checkpoint loads in every mode without a lossy detour through bf16: the committed
//! dense fixture is rewritten with f16 values that need more mantissa bits than bf16 has, once as
//! an F16 file and once as an F32 file holding the same values. Each precision mode must give the
//! same logits from both files (f32 and f16 modes keep every bit; bf16 rounds once), and the f16
//! file in f32 mode must differ from the bf16 original (the extra bits are really used).

mod common;

use std::path::Path;

use common::*;
use half::{bf16, f16};
use qwen3vl::engine::{BackendChoice, LoadOptions, Precision, Qwen3VlModel};
use safetensors::tensor::{Dtype, TensorView};

/// Copies `src`'s model folder to `dst` with every float tensor rewritten by `write`.
fn rewrite(src: &Path, dst: &Path, dtype: Dtype, write: impl Fn(f16) -> Vec<u8>) {
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), Dtype::BF16, "{name}");
        let data: Vec<u8> = view
            .data()
            .chunks_exact(2)
            .flat_map(|c| {
                let x = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                // Two more mantissa bits than bf16 keeps, within f16's normal range.
                write(f16::from_f32(x * (1.0 + 3.0 / 1024.0)))
            })
            .collect();
        out.push((name, view.shape().to_vec(), dtype, data));
    }
    let views: Vec<(String, TensorView)> = out
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
}

fn logits(dir: &Path, precision: Precision) -> Vec<f32> {
    let model = Qwen3VlModel::load(
        dir,
        LoadOptions {
            precision,
            backend: BackendChoice::Portable,
            ..Default::default()
        },
    )
    .expect("load");
    let c = case("dense_tied", "image1", "f32");
    model
        .generate_greedy(&c.input, 1)
        .expect("forward")
        .0
        .logits
}

#[test]
fn f16_checkpoints_load_without_a_bf16_detour() {
    let src = model_dir("dense_tied");
    let (as_f16, as_f32) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rewrite(&src, as_f16.path(), Dtype::F16, |h| {
        h.to_le_bytes().to_vec()
    });
    rewrite(&src, as_f32.path(), Dtype::F32, |h| {
        h.to_f32().to_le_bytes().to_vec()
    });
    for p in [Precision::F32, Precision::F16, Precision::Bf16] {
        let a = logits(as_f16.path(), p);
        let b = logits(as_f32.path(), p);
        assert_eq!(
            a, b,
            "{p:?}: the F16 file and the F32 file of the same values differ"
        );
    }
    // The extra mantissa bits matter: an f16 → bf16 detour would have dropped them.
    let original = logits(&src, Precision::F32);
    let f16_file = logits(as_f16.path(), Precision::F32);
    assert!(max_abs_diff(&original, &f16_file) > 1e-6);
}
