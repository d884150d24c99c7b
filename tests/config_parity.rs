//! Odd-but-valid configs (ones transformers 4.57.6 builds and runs) load and match transformers'
//! f32 logits, positions and greedy tokens; configs transformers cannot build or run either are
//! refused with a typed error naming the field. The rule table is `docs/config-audit.md`; the
//! fixtures come from `scripts/ref/gen_config_fixtures.py`.

mod common;

use std::path::{Path, PathBuf};

use common::max_abs_diff;
use qwen3vl::engine::tensor_file::{TensorData, TensorFile};
use qwen3vl::engine::{
    BackendChoice, EngineError, LoadOptions, MultimodalInput, Precision, Qwen3VlModel,
};

/// 3 channels · temporal 2 · patch 8².
const PATCH_DIM: usize = 384;

fn dir() -> PathBuf {
    common::fixtures().join("configs")
}

fn load(dir: &Path) -> Result<Qwen3VlModel, EngineError> {
    Qwen3VlModel::load(
        dir,
        LoadOptions {
            precision: Precision::F32,
            backend: BackendChoice::Auto,
            ..Default::default()
        },
    )
}

struct Case {
    input: MultimodalInput,
    file: TensorFile,
}

fn case(model: &str, case: &str) -> Case {
    let file = TensorFile::read(&dir().join(format!("{model}__{case}.safetensors"))).unwrap();
    let input = MultimodalInput::from_tensor_file(&file, PATCH_DIM).unwrap();
    Case { input, file }
}

impl Case {
    fn f32(&self, name: &str) -> Vec<f32> {
        match self.file.tensors.get(name) {
            Some(TensorData::F32(_, v)) => v.clone(),
            _ => panic!("fixture tensor {name} missing"),
        }
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        match self.file.tensors.get(name) {
            Some(TensorData::I64(_, v)) => v.clone(),
            _ => panic!("fixture tensor {name} missing"),
        }
    }
}

fn check(model_name: &str, cases: &[&str]) {
    let model = load(&dir().join(model_name)).expect("odd-but-valid config loads");
    for &c in cases {
        let case = case(model_name, c);
        let (out, generated) = model.generate_greedy(&case.input, 4).unwrap();
        let diff = max_abs_diff(&out.logits, &case.f32("logits"));
        eprintln!("{model_name}/{c}: max|Δlogits| = {diff:.2e}");
        assert!(diff <= 1e-3, "{model_name}/{c}: logits differ by {diff}");
        let pos: Vec<i64> = out.positions.streams.concat();
        assert_eq!(pos, case.i64("position_ids"), "{model_name}/{c}: positions");
        assert_eq!(out.positions.rope_delta, case.i64("rope_delta")[0]);
        let gen: Vec<i64> = generated.iter().map(|&t| t as i64).collect();
        assert_eq!(gen, case.i64("generated"), "{model_name}/{c}: greedy");
    }
}

#[test]
fn clipped_mrope_sections_linear_rope_and_ignored_interleave_flag_match() {
    check("rope_odd", &["text", "image", "video"]);
}

#[test]
fn text_activations_other_than_silu_match() {
    check("text_act", &["text"]);
    check("moe_act", &["text"]);
}

#[test]
fn yarn_rope_matches() {
    check("rope_yarn", &["text", "image"]);
}

#[test]
fn llama3_rope_matches() {
    check("rope_llama3", &["text", "image"]);
}

#[test]
fn rope_scaling_keys_transformers_requires_are_required() {
    // transformers indexes `factor` (yarn, llama3) and the llama3 band keys without defaults.
    let e = config_error("rope_yarn", |v| {
        v["text_config"]["rope_scaling"]
            .as_object_mut()
            .unwrap()
            .remove("factor");
    });
    assert!(e.contains("rope_scaling.factor"), "{e}");
    let e = config_error("rope_llama3", |v| {
        v["text_config"]["rope_scaling"]
            .as_object_mut()
            .unwrap()
            .remove("low_freq_factor");
    });
    assert!(e.contains("low_freq_factor"), "{e}");
}

#[test]
fn unsorted_out_of_range_and_duplicate_deepstack_indexes_and_non_square_positions_match() {
    check("vision_odd", &["image", "video"]);
}

#[test]
fn absent_head_dim_mrope_section_and_text_tie_take_transformers_defaults() {
    check("defaults", &["text", "image"]);
}

#[test]
fn moe_sparse_step_mlp_only_and_norm_topk_false_match() {
    check("moe_odd", &["text", "image"]);
}

#[test]
fn vision_defect_loads_runs_text_and_refuses_images() {
    check("vision_defect", &["text"]);
    let model = load(&dir().join("vision_defect")).unwrap();
    // Any image input: transformers raises in the vision tower, we refuse before running it.
    let image = case("rope_odd", "image");
    match model.generate_greedy(&image.input, 1) {
        Err(EngineError::Input(msg)) => {
            assert!(msg.contains("vision_config.hidden_size"), "{msg}")
        }
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("an image went through a vision tower that cannot run"),
    }
}

/// A copy of a fixture checkpoint with an edited config.json.
fn edited(model: &str, f: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir().join(model)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    let p = d.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
    d
}

fn config_error(model: &str, f: impl Fn(&mut serde_json::Value)) -> String {
    let d = edited(model, f);
    match load(d.path()) {
        Err(e @ EngineError::Config { .. }) => e.to_string(),
        Err(e) => panic!("expected a config error, got: {e}"),
        Ok(_) => panic!("config should be rejected"),
    }
}

#[test]
fn configs_transformers_cannot_run_are_rejected_naming_the_field() {
    // (edit, text the error must contain); transformers' own failure for each is checked by
    // scripts/ref/audit_config_rules.py.
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 13] = [
        (
            "rope_odd",
            |v| v["text_config"]["num_key_value_heads"] = 3.into(),
            "num_key_value_heads",
        ),
        (
            "rope_odd",
            |v| v["text_config"]["head_dim"] = 15.into(),
            "head_dim",
        ),
        (
            "rope_odd",
            |v| v["text_config"]["head_dim"] = 0.into(),
            "head_dim",
        ),
        (
            "rope_odd",
            |v| v["text_config"]["rope_scaling"]["mrope_section"] = serde_json::json!([8, 8]),
            "mrope_section",
        ),
        (
            "rope_odd",
            |v| {
                v["text_config"]
                    .as_object_mut()
                    .unwrap()
                    .remove("rope_scaling");
            },
            "rope_scaling",
        ),
        (
            "rope_odd",
            |v| v["text_config"]["rope_scaling"] = serde_json::Value::Null,
            "rope_scaling",
        ),
        (
            "rope_odd",
            |v| v["text_config"]["num_attention_heads"] = 0.into(),
            "num_attention_heads",
        ),
        (
            "rope_odd",
            |v| v["text_config"]["vocab_size"] = 0.into(),
            "vocab_size",
        ),
        (
            "rope_odd",
            |v| v["vision_config"]["num_heads"] = 0.into(),
            "vision_config.num_heads",
        ),
        (
            "rope_odd",
            |v| v["vision_config"]["patch_size"] = 0.into(),
            "vision_config.patch_size",
        ),
        (
            "moe_odd",
            |v| v["text_config"]["num_experts_per_tok"] = 5.into(),
            "num_experts_per_tok",
        ),
        (
            "moe_odd",
            |v| v["text_config"]["decoder_sparse_step"] = 0.into(),
            "decoder_sparse_step",
        ),
        (
            "moe_odd",
            |v| v["text_config"]["moe_intermediate_size"] = 0.into(),
            "moe_intermediate_size",
        ),
    ];
    for (model, edit, field) in cases {
        let msg = config_error(model, edit);
        assert!(msg.contains(field), "error should name {field}: {msg}");
    }
}

#[test]
fn features_we_do_not_implement_are_refused_not_run_wrongly() {
    // transformers accepts these; we have no implementation yet, and running them with the
    // default semantics would give wrong logits silently.
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 3] = [
        (
            |v| v["text_config"]["rope_scaling"]["rope_type"] = "dynamic".into(),
            "rope_type",
        ),
        (
            |v| v["text_config"]["hidden_act"] = "quick_gelu".into(),
            "text_config.hidden_act",
        ),
        (
            |v| v["vision_config"]["hidden_act"] = "relu".into(),
            "vision_config.hidden_act",
        ),
    ];
    for (edit, field) in cases {
        let msg = config_error("rope_odd", edit);
        assert!(msg.contains(field), "error should name {field}: {msg}");
    }
}

#[test]
fn moe_without_experts_is_a_dense_model() {
    // transformers: `num_experts > 0` gates every sparse layer, so num_experts 0 builds dense MLPs
    // (num_experts_per_tok / moe_intermediate_size are then unread).
    let d = edited("moe_odd", |v| {
        v["text_config"]["num_experts"] = 0.into();
        v["text_config"]["num_experts_per_tok"] = 0.into();
    });
    match load(d.path()) {
        // The fixture's layer 1 is sparse on disk, so the dense MLP weights are missing: the
        // config itself was accepted and the loader asked for the dense layer-1 MLP.
        Err(EngineError::MissingTensor { name, .. }) => {
            assert!(name.contains("layers.1.mlp.gate_proj"), "{name}")
        }
        Err(e) => panic!("expected the dense MLP of layer 1 to be looked for, got: {e}"),
        Ok(_) => panic!("layer 1 has no dense weights on disk"),
    }
}
