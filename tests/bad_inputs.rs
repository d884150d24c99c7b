//! Bad checkpoints and bad inputs give clear, typed errors (never a panic), and the `forward`
//! command exits non-zero with one line on stderr.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use qwen3vl::engine::tensor_file::TensorWriter;
use qwen3vl::engine::{EngineError, LoadOptions, Qwen3VlModel};

fn copy_model(name: &str, dst: &Path) {
    for e in std::fs::read_dir(model_dir(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> EngineError {
    match Qwen3VlModel::load(dir, LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

fn edit_config(dir: &Path, f: impl Fn(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

#[test]
fn unknown_model_type_is_a_config_error() {
    let d = tempfile::tempdir().unwrap();
    copy_model("dense_tied", d.path());
    edit_config(d.path(), |v| v["model_type"] = "llava".into());
    let e = load_err(d.path());
    assert!(matches!(e, EngineError::Config { .. }), "{e}");
    assert!(e.to_string().contains("unknown model_type `llava`"), "{e}");
}

#[test]
fn wrong_shape_names_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    copy_model("dense_tied", d.path());
    edit_config(d.path(), |v| {
        v["text_config"]["intermediate_size"] = 100.into()
    });
    let e = load_err(d.path());
    assert!(matches!(e, EngineError::Shape { .. }), "{e}");
    assert!(e.to_string().contains("mlp.gate_proj.weight"), "{e}");
}

#[test]
fn truncated_file_is_reported() {
    let d = tempfile::tempdir().unwrap();
    copy_model("dense_tied", d.path());
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(matches!(e, EngineError::Checkpoint { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let d = tempfile::tempdir().unwrap();
    copy_model("dense_untied", d.path());
    // Drop lm_head.weight: the untied model needs it.
    let shard = d.path().join("model-00002-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "lm_head.weight")
        .collect();
    let out = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&shard, out).unwrap();
    let e = load_err(d.path());
    assert!(matches!(e, EngineError::MissingTensor { .. }), "{e}");
    assert!(e.to_string().contains("lm_head.weight"), "{e}");
}

#[test]
fn tied_checkpoint_ignores_stray_lm_head() {
    // A tied model loads whether or not lm_head.weight is present (it is absent here).
    let m = load(
        "dense_tied",
        qwen3vl::engine::Precision::F32,
        qwen3vl::engine::BackendChoice::Portable,
    );
    assert_eq!(m.vocab_size(), 512);
}

#[test]
fn grid_and_pad_count_mismatch_is_an_input_error() {
    let model = load(
        "dense_tied",
        qwen3vl::engine::Precision::F32,
        qwen3vl::engine::BackendChoice::Portable,
    );
    let mut input = case("dense_tied", "image1", "f32").input;
    input.image_grid_thw = vec![[1, 4, 4]];
    input.pixel_values.truncate(16 * 1536);
    let mut cache = model.new_cache();
    let e = model
        .prefill(&mut cache, &input, false)
        .err()
        .expect("must fail");
    assert!(matches!(e, EngineError::Input(_)), "{e}");
    let mut input = case("dense_tied", "image1", "f32").input;
    input.pixel_values.truncate(10 * 1536);
    let e = model
        .prefill(&mut model.new_cache(), &input, false)
        .err()
        .expect("must fail");
    assert!(e.to_string().contains("pixel values"), "{e}");
    let mut input = case("dense_tied", "text", "f32").input;
    input.input_ids.push(100_000);
    let e = model
        .prefill(&mut model.new_cache(), &input, false)
        .err()
        .expect("must fail");
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

fn run_forward(inputs: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .args(["forward", "--model"])
        .arg(model_dir("dense_tied"))
        .arg("--inputs")
        .arg(inputs)
        .arg("--output")
        .arg(out)
        .args(["--dtype", "f32", "--generate", "3"])
        .output()
        .unwrap()
}

#[test]
fn forward_cli_writes_the_contract_outputs() {
    let d = tempfile::tempdir().unwrap();
    let src = fixtures().join("cases/dense_tied__image1__f32.safetensors");
    let out = d.path().join("out.safetensors");
    let o = run_forward(&src, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = qwen3vl::engine::tensor_file::TensorFile::read(&out).unwrap();
    let (ls, logits) = f.f32("logits", 2).unwrap().unwrap();
    assert_eq!(ls, vec![27, 512]);
    assert!(max_abs_diff(&logits, &case("dense_tied", "image1", "f32").f32("logits")) <= 1e-3);
    assert_eq!(f.i64("position_ids", 2).unwrap().unwrap().0, vec![3, 27]);
    let (_, gen) = f.i64("generated", 1).unwrap().unwrap();
    assert_eq!(
        gen,
        case("dense_tied", "image1", "f32").i64("generated")[..3].to_vec()
    );
}

#[test]
fn forward_cli_rejects_bad_inputs_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.safetensors");
    let cases: Vec<(&str, TensorWriter)> = vec![
        ("input_ids as F32", {
            let mut w = TensorWriter::default();
            w.f32("input_ids", &[3], &[1.0, 2.0, 3.0]);
            w
        }),
        ("missing input_ids", {
            let mut w = TensorWriter::default();
            w.i64("tokens", &[2], &[1, 2]);
            w
        }),
        ("grid without pads", {
            let mut w = TensorWriter::default();
            w.i64("input_ids", &[3], &[1, 2, 3]);
            w.f32("pixel_values", &[24, 1536], &vec![0.0; 24 * 1536]);
            w.i64("image_grid_thw", &[1, 3], &[1, 4, 6]);
            w
        }),
        ("wrong patch width", {
            let mut w = TensorWriter::default();
            w.i64("input_ids", &[3], &[502, 500, 503]);
            w.f32("pixel_values", &[4, 100], &vec![0.0; 400]);
            w.i64("image_grid_thw", &[1, 3], &[1, 2, 2]);
            w
        }),
    ];
    for (what, w) in cases {
        let inp = d.path().join("in.safetensors");
        w.write(&inp).unwrap();
        let o = run_forward(&inp, &out);
        assert!(!o.status.success(), "{what}: should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{what}: stderr should be one line: {err}"
        );
        assert!(err.starts_with("error: "), "{what}: {err}");
    }
    // A file that is not safetensors at all.
    let junk = d.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    let o = run_forward(&junk, &out);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}

#[test]
fn quantize_cli_reports_bad_inputs_with_one_line() {
    let d = tempfile::tempdir().unwrap();
    let run = |model: &Path, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
            .args(["quantize", "--model"])
            .arg(model)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    // A folder without a checkpoint, then an already quantized one.
    let o = run(&d.path().join("missing"), &d.path().join("q"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let q = d.path().join("q");
    let o = run(&model_dir("dense_tied"), &q);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&q, &d.path().join("q2"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already quantized"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
