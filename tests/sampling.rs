//! Sampler proofs: seeded determinism, top-k / top-p / min-p masks, penalties, defaults from
//! generation_config.json, stop strings split across tokens (matcher and through the pipeline),
//! stop token ids, n > 1, logprobs.

mod common;

use std::sync::Arc;

use common::*;
use qwen3vl::engine::sampling::{
    GenerationDefaults, ResolvedSampling, Sampler, SamplingParams, StopMatcher, StopResult,
};
use qwen3vl::engine::{BackendChoice, LoadOptions, Precision};
use qwen3vl::pipeline::{
    Detokenize, FinishReason, KvCacheSize, Pipeline, PipelineBuilder, RequestError, ScheduleConfig,
};

fn cfg(f: impl FnOnce(&mut ResolvedSampling)) -> ResolvedSampling {
    let mut c = SamplingParams {
        temperature: Some(1.0),
        top_k: Some(0),
        top_p: Some(1.0),
        seed: Some(1),
        ..Default::default()
    }
    .resolve(&GenerationDefaults::default())
    .unwrap();
    f(&mut c);
    c
}

fn logits(n: usize, seed: u64) -> Vec<f32> {
    let mut r = qwen3vl::engine::sampling::rng::Rng::new(seed);
    (0..n).map(|_| (r.next_f64() as f32 - 0.5) * 8.0).collect()
}

#[test]
fn same_seed_same_tokens() {
    let draw = |seed| {
        let mut s = Sampler::new(cfg(|c| c.seed = seed), &[]);
        (0..50)
            .map(|i| s.sample(&mut logits(300, i)).token)
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn top_k_keeps_the_k_largest() {
    let l = logits(200, 3);
    let s = Sampler::new(cfg(|c| c.top_k = 5), &[]);
    let cand = s.candidates(&l);
    let mut sorted: Vec<u32> = (0..200).collect();
    sorted.sort_by(|a, b| l[*b as usize].total_cmp(&l[*a as usize]));
    let got: Vec<u32> = cand.iter().map(|c| c.0).collect();
    assert_eq!(got, sorted[..5]);
    let mass: f32 = cand.iter().map(|c| c.1).sum();
    assert!((mass - 1.0).abs() < 1e-5);
    // Sampling never leaves the candidate set.
    let mut s = Sampler::new(cfg(|c| c.top_k = 5), &[]);
    for _ in 0..200 {
        assert!(got.contains(&s.sample(&mut l.clone()).token));
    }
}

#[test]
fn top_p_and_min_p_masks() {
    // Probabilities 0.5, 0.3, 0.1, 0.1 (temperature 1).
    let l: Vec<f32> = [0.5f32, 0.3, 0.1, 0.1].iter().map(|p| p.ln()).collect();
    let ids = |c: ResolvedSampling| -> Vec<u32> {
        Sampler::new(c, &[])
            .candidates(&l)
            .iter()
            .map(|x| x.0)
            .collect()
    };
    assert_eq!(ids(cfg(|c| c.top_p = 0.75)), vec![0, 1]);
    assert_eq!(ids(cfg(|c| c.top_p = 0.4)), vec![0]);
    assert_eq!(ids(cfg(|c| c.top_p = 0.85)), vec![0, 1, 2]);
    // min_p 0.25: keep p ≥ 0.125.
    assert_eq!(ids(cfg(|c| c.min_p = 0.25)), vec![0, 1]);
    assert_eq!(ids(cfg(|c| c.min_p = 0.15)), vec![0, 1, 2, 3]);
    // Renormalised over the kept set.
    let c = Sampler::new(cfg(|c| c.top_p = 0.75), &[]).candidates(&l);
    assert!((c[0].1 - 0.625).abs() < 1e-5 && (c[1].1 - 0.375).abs() < 1e-5);
}

#[test]
fn penalties() {
    let base = vec![2.0f32, -2.0, 1.0, 0.5];
    // Repetition (HF): seen tokens (prompt 0 and 1) — positive divided, negative multiplied.
    let s = Sampler::new(cfg(|c| c.repetition_penalty = 2.0), &[0, 1]);
    let mut l = base.clone();
    s.apply_penalties(&mut l);
    assert_eq!(l, vec![1.0, -4.0, 1.0, 0.5]);
    // Presence / frequency (vLLM): over output tokens only.
    let mut s = Sampler::new(
        cfg(|c| {
            c.presence_penalty = 0.5;
            c.frequency_penalty = 0.25;
        }),
        &[3],
    );
    s.record(2);
    s.record(2);
    let mut l = base.clone();
    s.apply_penalties(&mut l);
    assert_eq!(l, vec![2.0, -2.0, 1.0 - 0.5 - 0.5, 0.5]);
    // Greedy applies penalties before the argmax.
    let mut g = Sampler::new(
        cfg(|c| {
            c.greedy = true;
            c.repetition_penalty = 4.0;
        }),
        &[0],
    );
    assert_eq!(g.sample(&mut base.clone()).token, 2);
}

#[test]
fn logprobs_are_raw_log_softmax() {
    let l = vec![1.0f32, 2.0, 3.0];
    let mut s = Sampler::new(
        cfg(|c| {
            c.greedy = true;
            c.logprobs = Some(2);
        }),
        &[],
    );
    let out = s.sample(&mut l.clone());
    let lse = (1f32.exp() + 2f32.exp() + 3f32.exp()).ln();
    assert_eq!(out.token, 2);
    assert!((out.logprob.unwrap() - (3.0 - lse)).abs() < 1e-5);
    assert_eq!(out.top_logprobs.len(), 2);
    assert_eq!(out.top_logprobs[1].0, 1);
}

#[test]
fn defaults_come_from_generation_config() {
    let d = GenerationDefaults::from_model_dir(&model_dir("dense_tied"), &[]).unwrap();
    assert_eq!(d.eos_token_ids, vec![505, 504]);
    assert_eq!((d.temperature, d.top_k, d.top_p), (0.7, 20, 0.8));
    let r = SamplingParams::default().resolve(&d).unwrap();
    assert!(!r.greedy);
    assert_eq!((r.temperature, r.top_k, r.top_p), (0.7, 20, 0.8));
    // Range checks are typed errors.
    let bad = SamplingParams {
        top_p: Some(1.5),
        ..Default::default()
    };
    assert!(bad.resolve(&d).is_err());
}

#[test]
fn stop_string_split_across_tokens() {
    let mut m = StopMatcher::new(vec!["lo Wor".into()], false);
    let mut out = String::new();
    for piece in ["Hel", "lo", " W"] {
        match m.push(piece) {
            StopResult::Continue(t) => out.push_str(&t),
            other => panic!("{other:?}"),
        }
    }
    // "lo W" is held back: it may be the start of the stop string.
    assert_eq!(out, "Hel");
    match m.push("orld") {
        StopResult::Stopped { text, stop } => {
            assert_eq!(text, "");
            assert_eq!(stop, "lo Wor");
        }
        other => panic!("{other:?}"),
    }
    // A false start is released.
    let mut m = StopMatcher::new(vec!["abc".into()], true);
    assert_eq!(m.push("xab"), StopResult::Continue("x".into()));
    assert_eq!(m.push("d"), StopResult::Continue("abd".into()));
    assert_eq!(
        m.push("zabc!"),
        StopResult::Stopped {
            text: "zabc".into(),
            stop: "abc".into()
        }
    );
}

/// Token id → two letters: a fake tokenizer for the fixture vocabularies.
struct Letters;
impl Detokenize for Letters {
    fn push(&mut self, id: u32) -> String {
        let a = (b'a' + (id % 26) as u8) as char;
        let b = (b'a' + (id / 26 % 26) as u8) as char;
        format!("{a}{b}")
    }
    fn flush(&mut self) -> String {
        String::new()
    }
}

fn pipeline() -> PipelineBuilder {
    Pipeline::builder()
        .model(model_dir("dense_tied"))
        .load_options(LoadOptions {
            precision: Precision::Bf16,
            backend: BackendChoice::Auto,
            ..Default::default()
        })
        .schedule(ScheduleConfig {
            max_batch_size: 8,
            max_prefill_batch_size: 8,
            max_prefill_tokens: 2048,
            max_seq_len: 256,
            max_input_token_len: 200,
            max_iter_times: 32,
            ..Default::default()
        })
        .block_size(16)
        .kv_cache(KvCacheSize::Blocks(128))
        .detokenizer(Arc::new(|_| Box::new(Letters)))
}

#[test]
fn pipeline_stop_strings_tokens_seeds_and_n() {
    let p = pipeline().build().unwrap();
    let input = case("dense_tied", "text", "bf16").input;
    let greedy = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy().with_max_tokens(12)
    };
    let full = p.generate_blocking(input.clone(), greedy.clone()).unwrap();
    let c = &full.choices[0];
    assert_eq!(c.token_ids.len(), 12);
    assert_eq!(c.text.len(), 24);
    assert_eq!(c.usage.prompt_tokens, input.input_ids.len());
    // A stop string spanning tokens 4..6 (starts in the middle of token 4's text).
    let stop = c.text[9..13].to_string();
    let first = c.text.find(&stop).unwrap();
    let r = p
        .generate_blocking(
            input.clone(),
            SamplingParams {
                stop: vec![stop.clone()],
                ..greedy.clone()
            },
        )
        .unwrap();
    let s = &r.choices[0];
    assert_eq!(s.finish_reason, Some(FinishReason::Stop));
    assert_eq!(s.stop.as_deref(), Some(stop.as_str()));
    assert_eq!(s.text, c.text[..first]);
    // Stop token id: generation ends on it.
    let tok = c.token_ids[3];
    let pos = c.token_ids.iter().position(|&t| t == tok).unwrap();
    let r = p
        .generate_blocking(
            input.clone(),
            SamplingParams {
                stop_token_ids: vec![tok],
                ..greedy.clone()
            },
        )
        .unwrap();
    assert_eq!(r.choices[0].token_ids, c.token_ids[..=pos]);
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    // Seeded sampling with n = 3: reproducible, choices differ from each other.
    let sampled = SamplingParams {
        temperature: Some(1.0),
        top_k: Some(0),
        top_p: Some(1.0),
        seed: Some(42),
        n: Some(3),
        logprobs: true,
        top_logprobs: 2,
        ignore_eos: true,
        max_tokens: Some(10),
        ..Default::default()
    };
    let a = p.generate_blocking(input.clone(), sampled.clone()).unwrap();
    let b = p.generate_blocking(input.clone(), sampled.clone()).unwrap();
    assert_eq!(a.choices.len(), 3);
    assert_eq!(a, strip_timings(b, &a));
    assert!(a.choices[0].token_ids != a.choices[1].token_ids);
    assert_eq!(a.choices[0].logprobs.len(), 10);
    assert_eq!(a.choices[0].logprobs[0].top.len(), 2);
    // The choices shared the prompt's cached blocks; everything is free again.
    let st = p.stats();
    assert_eq!(st.free_blocks, st.total_blocks);
}

/// Completions equal up to wall-clock timings.
fn strip_timings(
    mut b: qwen3vl::pipeline::Completion,
    a: &qwen3vl::pipeline::Completion,
) -> qwen3vl::pipeline::Completion {
    for (cb, ca) in b.choices.iter_mut().zip(&a.choices) {
        cb.timings = ca.timings;
        cb.usage.cached_tokens = ca.usage.cached_tokens;
    }
    b
}

#[test]
fn limits_reject_or_truncate() {
    let p = pipeline().build().unwrap();
    let long = qwen3vl::engine::MultimodalInput {
        input_ids: (0..300).map(|i| i % 400).collect(),
        ..Default::default()
    };
    let e = p
        .generate_blocking(long.clone(), SamplingParams::greedy())
        .unwrap_err();
    assert_eq!(e, RequestError::PromptTooLong { len: 300, max: 200 });
    let bad = qwen3vl::engine::MultimodalInput {
        input_ids: vec![1, 2, 9999],
        ..Default::default()
    };
    assert!(matches!(
        p.generate_blocking(bad, SamplingParams::greedy()),
        Err(RequestError::Invalid(_))
    ));
    // The pipeline keeps serving after bad requests.
    drop(p);
    let p = pipeline()
        .schedule(ScheduleConfig {
            truncation: qwen3vl::pipeline::Truncation::Left,
            max_batch_size: 8,
            max_prefill_batch_size: 8,
            max_prefill_tokens: 2048,
            max_seq_len: 256,
            max_input_token_len: 200,
            max_iter_times: 32,
            ..Default::default()
        })
        .build()
        .unwrap();
    let r = p
        .generate_blocking(long, SamplingParams::greedy().with_max_tokens(3))
        .unwrap();
    assert_eq!(r.choices[0].usage.prompt_tokens, 200);
}
