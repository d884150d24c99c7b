//! Speculative decoding with n-gram prompt lookup: the output is plain decoding's, token for
//! token (greedy and seeded sampling), at batch 1 and 4, on text, image and video prompts, with
//! EOS / max_tokens inside a draft; drafts are accepted where the text repeats, so the model runs
//! fewer steps than it generates tokens; no block is left behind.

mod common;

use common::*;
use qwen3vl::engine::{BackendChoice, LoadOptions, MultimodalInput, Precision};
use qwen3vl::pipeline::{
    Completion, Event, KvCacheSize, Pipeline, SamplingParams, ScheduleConfig, SpeculativeConfig,
};

/// Exact equality needs matmuls whose rows do not depend on how many rows a call has: a draft
/// step computes k + 1 rows where plain decoding computes one.
fn backend() -> Option<BackendChoice> {
    row_invariant_backend(Precision::Bf16)
}

fn ngram(k: usize, min: usize, max: usize) -> SpeculativeConfig {
    SpeculativeConfig::Ngram {
        k,
        min,
        max,
        max_batch: 16,
    }
}

fn pipeline(model: &str, batch: usize, spec: Option<SpeculativeConfig>) -> Pipeline {
    Pipeline::builder()
        .model(model_dir(model))
        .load_options(LoadOptions {
            precision: Precision::Bf16,
            backend: backend().unwrap_or(BackendChoice::Portable),
            ..Default::default()
        })
        .schedule(ScheduleConfig {
            max_batch_size: batch,
            max_prefill_batch_size: batch,
            max_prefill_tokens: 4096,
            max_seq_len: 512,
            max_input_token_len: 480,
            max_iter_times: 96,
            ..Default::default()
        })
        .block_size(16)
        .kv_cache(KvCacheSize::Blocks(256))
        .speculative(spec)
        .build()
        .unwrap()
}

fn run_all(p: &Pipeline, ins: &[MultimodalInput], params: &[SamplingParams]) -> Vec<Vec<u32>> {
    let streams: Vec<_> = ins
        .iter()
        .zip(params)
        .map(|(i, s)| p.generate(i.clone(), s.clone()))
        .collect();
    let done = futures::executor::block_on(futures::future::join_all(streams.into_iter().map(
        |s| async move {
            use futures::StreamExt;
            let evs: Vec<Event> = s.collect().await;
            let mut c = Completion {
                choices: vec![Default::default()],
            };
            for e in evs {
                c.push(e).expect("request failed");
            }
            c
        },
    )));
    done.into_iter()
        .map(|c| c.choices[0].token_ids.clone())
        .collect()
}

fn inputs(model: &str) -> Vec<MultimodalInput> {
    ["text", "image1", "video", "mixed"]
        .iter()
        .map(|c| case(model, c, "bf16").input)
        .collect()
}

fn greedy(n: usize) -> SamplingParams {
    SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy().with_max_tokens(n)
    }
}

/// The one-at-a-time plain run, and the same requests with drafts at batch 1 and batch 4.
fn check(model: &str, params: Vec<SamplingParams>, spec: SpeculativeConfig) -> (u64, u64, u64) {
    let ins = inputs(model);
    let plain = pipeline(model, 1, None);
    let want: Vec<Vec<u32>> = ins
        .iter()
        .zip(&params)
        .map(|(i, s)| run_all(&plain, std::slice::from_ref(i), std::slice::from_ref(s)).remove(0))
        .collect();
    drop(plain);
    let mut figures = (0, 0, 0);
    for batch in [1, 4] {
        let p = pipeline(model, batch, Some(spec.clone()));
        let got = if batch == 1 {
            ins.iter()
                .zip(&params)
                .map(|(i, s)| {
                    run_all(&p, std::slice::from_ref(i), std::slice::from_ref(s)).remove(0)
                })
                .collect()
        } else {
            run_all(&p, &ins, &params)
        };
        let st = p.stats();
        if backend().is_some() {
            assert_eq!(got, want, "{model}, batch {batch}, {spec:?}");
        } else {
            eprintln!("note: no row-invariant GEMM here, comparing lengths only");
            let len = |v: &[Vec<u32>]| v.iter().map(|x| x.len()).collect::<Vec<_>>();
            assert_eq!(len(&got), len(&want));
        }
        // Every block is back once the requests are done.
        assert_eq!(st.free_blocks, st.total_blocks, "blocks left behind");
        assert!(st.accepted_tokens <= st.drafted_tokens);
        if batch == 1 {
            figures = (st.steps, st.generated_tokens, st.accepted_tokens);
        }
    }
    figures
}

#[test]
fn greedy_with_drafts_equals_plain_decoding() {
    for (model, spec) in [
        ("dense_tied", ngram(5, 1, 5)),
        ("dense_untied", ngram(2, 2, 3)),
        ("moe", ngram(8, 1, 2)),
    ] {
        let (steps, generated, accepted) = check(model, vec![greedy(64); 4], spec);
        eprintln!("{model}: {generated} tokens in {steps} steps, {accepted} draft tokens accepted");
        // Random weights fall into repeating loops, which the lookup drafts: accepted drafts
        // mean fewer model steps than tokens (each request also has a prefill step).
        assert!(accepted > 0, "{model}: no draft was ever accepted");
        assert!(
            steps < generated,
            "{model}: {steps} steps for {generated} tokens"
        );
    }
}

/// Seeded sampling draws once per committed token from the same distributions, so drafts do not
/// change a seeded request's output; penalties see the accepted draft tokens as plain decoding
/// sees them.
#[test]
fn seeded_sampling_with_drafts_equals_plain_decoding() {
    let params: Vec<SamplingParams> = (0..4)
        .map(|i| {
            SamplingParams {
                temperature: Some(0.7),
                top_k: Some(20),
                seed: Some(11 + i),
                repetition_penalty: Some(if i % 2 == 0 { 1.0 } else { 1.1 }),
                ignore_eos: true,
                ..Default::default()
            }
            .with_max_tokens(48)
        })
        .collect();
    check("dense_tied", params, ngram(4, 1, 3));
}

/// A stop token or max_tokens that falls inside an accepted draft ends the run there.
#[test]
fn eos_and_max_tokens_inside_a_draft() {
    let ins = inputs("dense_tied");
    let plain = pipeline("dense_tied", 1, None);
    let long = run_all(&plain, &ins[..1], &[greedy(64)]).remove(0);
    drop(plain);
    // A token that occurs late in the greedy output becomes a stop token.
    let stop = long[40];
    let first = long.iter().position(|&t| t == stop).unwrap();
    let with_stop = SamplingParams {
        ignore_eos: true,
        stop_token_ids: vec![stop],
        ..SamplingParams::greedy().with_max_tokens(64)
    };
    let p = pipeline("dense_tied", 1, Some(ngram(8, 1, 4)));
    let got = run_all(&p, &ins[..1], &[with_stop]).remove(0);
    let odd = run_all(&p, &ins[..1], &[greedy(37)]).remove(0);
    if backend().is_some() {
        assert_eq!(got, long[..=first].to_vec());
        assert_eq!(odd, long[..37].to_vec());
    }
    assert_eq!(odd.len(), 37);
    let st = p.stats();
    assert_eq!(st.free_blocks, st.total_blocks);
}
