//! W8A8 on whole models: logit error against the bf16 model and against the transformers bf16
//! reference on every committed fixture; `qwen3vl quantize` output loads back to the very same
//! logits as quantizing on load; msModelSlim folders (static W8A8, int64 deq_scale, per-expert
//! MoE names) load per tensor tag, and unsupported ones fail with a typed error.

mod common;

use std::path::Path;

use common::*;
use qwen3vl::engine::{BackendChoice, LoadOptions, Precision, Quantization, Qwen3VlModel};
use qwen3vl::tools::quantize_checkpoint::quantize_checkpoint;

fn load(dir: &Path, quantization: Quantization) -> Qwen3VlModel {
    Qwen3VlModel::load(
        dir,
        LoadOptions {
            precision: Precision::Bf16,
            backend: BackendChoice::Auto,
            quantization,
        },
    )
    .expect("load model")
}

/// Relative L2 error ‖a − b‖ / ‖b‖.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut e, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        e += ((x - y) as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    (e / n).sqrt()
}

#[test]
fn w8a8_logits_stay_close_to_bf16_on_every_fixture() {
    for name in MODELS {
        let dir = model_dir(name);
        let float = load(&dir, Quantization::None);
        let q = load(&dir, Quantization::W8A8);
        assert!(q.backend_name().contains("int8"), "{}", q.backend_name());
        let vocab = q.vocab_size();
        let (mut agree_ref, mut agree_bf16, mut rows) = (0f64, 0f64, 0usize);
        for c in CASES {
            let case = case(name, c, "bf16");
            let want = case.f32("logits");
            let (fo, _) = float.generate_greedy(&case.input, 0).unwrap();
            let (qo, _) = q.generate_greedy(&case.input, 0).unwrap();
            let r = want.len() / vocab;
            let vs_bf16 = rel_l2(&qo.logits, &fo.logits);
            let vs_ref = rel_l2(&qo.logits, &want);
            let a_bf16 = argmax_agreement(&qo.logits, &fo.logits, vocab);
            let a_ref = argmax_agreement(&qo.logits, &want, vocab);
            eprintln!(
                "{name}/{c}: W8A8 vs bf16 rel-L2 {vs_bf16:.4}, argmax {a_bf16:.3}; vs transformers bf16 rel-L2 {vs_ref:.4}, argmax {a_ref:.3}"
            );
            // No accuracy cliff: int8 noise stays a few percent of the logits' norm.
            assert!(vs_bf16 < 0.08, "{name}/{c}: W8A8 rel-L2 vs bf16 {vs_bf16}");
            agree_bf16 += a_bf16 * r as f64;
            agree_ref += a_ref * r as f64;
            rows += r;
        }
        let (agree_bf16, agree_ref) = (agree_bf16 / rows as f64, agree_ref / rows as f64);
        eprintln!("{name}: pooled argmax agreement W8A8 vs bf16 {agree_bf16:.3}, vs transformers {agree_ref:.3}");
        assert!(agree_bf16 >= 0.85, "{name}: argmax agreement {agree_bf16}");
        assert!(
            agree_ref >= 0.85,
            "{name}: argmax agreement vs reference {agree_ref}"
        );
    }
}

/// `--quantize w8a8 --dtype f16`: the int8 linears with everything else (vision tower, router,
/// norms, attention, KV cache) in f16. Close to the f16 float model and to transformers' f16
/// run, and not the bf16 W8A8 model's logits (the float parts really run in f16).
#[test]
fn w8a8_with_f16_stays_close_to_the_f16_model() {
    let f16_load = |dir: &Path, quantization| {
        let opts = LoadOptions {
            precision: Precision::F16,
            backend: BackendChoice::Auto,
            quantization,
        };
        Qwen3VlModel::load(dir, opts).expect("load f16 model")
    };
    for name in ["dense_tied", "moe"] {
        let dir = model_dir(name);
        let float = f16_load(&dir, Quantization::None);
        let q = f16_load(&dir, Quantization::W8A8);
        let q_bf16 = load(&dir, Quantization::W8A8);
        assert!(q.backend_name().contains("int8"), "{}", q.backend_name());
        let vocab = q.vocab_size();
        let (mut agree, mut rows) = (0f64, 0usize);
        for c in CASES {
            let input = case(name, c, "f32").input;
            let want = case(name, c, "f16").f32("logits");
            let (fo, _) = float.generate_greedy(&input, 0).unwrap();
            let (qo, _) = q.generate_greedy(&input, 0).unwrap();
            let (qb, _) = q_bf16.generate_greedy(&input, 0).unwrap();
            let vs_f16 = rel_l2(&qo.logits, &fo.logits);
            let a = argmax_agreement(&qo.logits, &want, vocab);
            eprintln!(
                "{name}/{c}: W8A8 f16 vs f16 rel-L2 {vs_f16:.4}, argmax vs transformers f16 {a:.3}"
            );
            assert!(vs_f16 < 0.08, "{name}/{c}: W8A8 f16 rel-L2 vs f16 {vs_f16}");
            assert_ne!(
                qo.logits, qb.logits,
                "{name}/{c}: f16 W8A8 equals bf16 W8A8"
            );
            let r = want.len() / vocab;
            agree += a * r as f64;
            rows += r;
        }
        let agree = agree / rows as f64;
        assert!(agree >= 0.85, "{name}: W8A8 f16 argmax agreement {agree}");
    }
}

#[test]
fn w8a8_vision_keeps_image_and_video_logits_close() {
    for name in MODELS {
        let dir = model_dir(name);
        let text_only = load(&dir, Quantization::W8A8);
        let q = load(&dir, Quantization::W8A8Vision);
        let float = load(&dir, Quantization::None);
        let vocab = q.vocab_size();
        for c in ["image1", "image2", "video", "mixed"] {
            let case = case(name, c, "bf16");
            let (fo, _) = float.generate_greedy(&case.input, 0).unwrap();
            let (to, _) = text_only.generate_greedy(&case.input, 0).unwrap();
            let (qo, _) = q.generate_greedy(&case.input, 0).unwrap();
            let (e_text, e_all) = (
                rel_l2(&to.logits, &fo.logits),
                rel_l2(&qo.logits, &fo.logits),
            );
            let agree = argmax_agreement(&qo.logits, &fo.logits, vocab);
            eprintln!(
                "{name}/{c}: rel-L2 vs bf16: text W8A8 {e_text:.4}, + vision W8A8 {e_all:.4}; argmax {agree:.3}"
            );
            assert_ne!(
                to.logits, qo.logits,
                "{name}/{c}: vision quantization had no effect"
            );
            assert!(e_all < 0.1, "{name}/{c}: W8A8 + vision rel-L2 {e_all}");
            assert!(agree >= 0.85, "{name}/{c}: argmax agreement {agree}");
        }
    }
}

#[test]
fn saved_quantized_checkpoint_equals_quantizing_on_load() {
    for name in MODELS {
        let out = tempfile::tempdir().unwrap();
        let dst = out.path().join("q");
        let report = quantize_checkpoint(&model_dir(name), &dst).unwrap();
        assert!(report.quantized_linears > 0);
        assert!(dst.join("quant_model_description.json").exists());
        assert!(dst.join("config.json").exists());
        let desc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dst.join("quant_model_description.json")).unwrap(),
        )
        .unwrap();
        let tag = |k: &str| {
            desc.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("absent")
                .to_string()
        };
        assert_eq!(
            tag("model.language_model.layers.0.self_attn.q_proj.weight"),
            "W8A8_DYNAMIC"
        );
        assert_eq!(tag("lm_head.weight"), "W8A8_DYNAMIC");
        assert_eq!(tag("model.language_model.embed_tokens.weight"), "FLOAT");
        if name == "moe" {
            assert_eq!(
                tag("model.language_model.layers.0.mlp.experts.3.up_proj.weight"),
                "W8A8_DYNAMIC"
            );
            assert_eq!(
                tag("model.language_model.layers.0.mlp.gate.weight"),
                "FLOAT"
            );
        }

        let on_load = load(&model_dir(name), Quantization::W8A8);
        let saved = load(&dst, Quantization::None);
        for c in ["text", "mixed"] {
            let case = case(name, c, "bf16");
            let (a, ga) = on_load.generate_greedy(&case.input, 4).unwrap();
            let (b, gb) = saved.generate_greedy(&case.input, 4).unwrap();
            assert_eq!(a.logits, b.logits, "{name}/{c}: saved W8A8 ≠ on-load W8A8");
            assert_eq!(ga, gb);
        }
        // Quantizing an already quantized folder is refused.
        assert!(quantize_checkpoint(&dst, &out.path().join("again")).is_err());
    }
}
