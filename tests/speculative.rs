//! Speculative decoding with n-gram prompt lookup: the output is plain decoding's, token for
//! token (greedy and seeded sampling), at batch 1 and 4, on text, image and video prompts, with
//! EOS / max_tokens inside a draft; drafts are accepted where the text repeats, so the model runs
//! fewer steps than it generates tokens; no block is left behind.

mod common;

use common::*;
use qwen3vl::engine::{BackendChoice, MultimodalInput, Precision};
use qwen3vl::pipeline::{
    Completion, Event, KvCacheSize, Pipeline, PipelineBuilder, SamplingParams, ScheduleConfig,
    SpeculativeConfig,
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
    builder(model, batch, spec).build().unwrap()
}

fn builder(model: &str, batch: usize, spec: Option<SpeculativeConfig>) -> PipelineBuilder {
    let backend = backend().unwrap_or(BackendChoice::Portable);
    fixture_pipeline(model, Precision::Bf16, batch, backend)
        .schedule(ScheduleConfig {
            max_batch_size: batch,
            max_prefill_batch_size: batch,
            max_prefill_tokens: 4096,
            max_seq_len: 512,
            max_input_token_len: 480,
            max_iter_times: 96,
            ..Default::default()
        })
        .kv_cache(KvCacheSize::Blocks(256))
        .speculative(spec)
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

/// A request with `speculative: false` never drafts on a drafting server; beside it, the same
/// prompt without the opt-out drafts; both outputs are plain decoding's.
#[test]
fn a_request_can_opt_out_of_drafts() {
    let model = "dense_tied";
    let input = case(model, "text", "bf16").input;
    let plain = pipeline(model, 1, None);
    let want = run_all(&plain, std::slice::from_ref(&input), &[greedy(64)]).remove(0);
    drop(plain);
    let p = pipeline(model, 4, Some(ngram(5, 1, 5)));
    let opted_out = SamplingParams {
        speculative: Some(false),
        ..greedy(64)
    };
    let got = run_all(
        &p,
        std::slice::from_ref(&input),
        std::slice::from_ref(&opted_out),
    );
    assert_eq!(p.stats().drafted_tokens, 0, "an opted-out request drafted");
    let both = run_all(&p, &[input.clone(), input], &[opted_out, greedy(64)]);
    assert!(
        p.stats().drafted_tokens > 0,
        "the other request did not draft"
    );
    if backend().is_some() {
        assert_eq!(got[0], want);
        assert_eq!(both, vec![want.clone(), want]);
    }
}

/// Token counts per (position, token) of `seeds` sampled requests.
fn sampled_counts(
    p: &Pipeline,
    input: &MultimodalInput,
    seeds: std::ops::Range<u64>,
    temperature: f32,
) -> std::collections::HashMap<(usize, u32), u64> {
    let params: Vec<SamplingParams> = seeds
        .map(|seed| SamplingParams {
            temperature: Some(temperature),
            top_k: Some(3),
            seed: Some(seed),
            ignore_eos: true,
            ..SamplingParams::default().with_max_tokens(12)
        })
        .collect();
    let ins = vec![input.clone(); params.len()];
    let mut counts = std::collections::HashMap::new();
    for out in run_all(p, &ins, &params) {
        for (i, t) in out.into_iter().enumerate() {
            *counts.entry((i, t)).or_insert(0) += 1;
        }
    }
    counts
}

/// Two-sample chi-square test of homogeneity over equal totals: the statistic and the
/// critical value at p = 0.001 (Wilson–Hilferty). Bins with fewer than 10 counts in both
/// samples together are pooled into one.
fn chi_square(
    a: &std::collections::HashMap<(usize, u32), u64>,
    b: &std::collections::HashMap<(usize, u32), u64>,
) -> (f64, f64) {
    let keys: std::collections::BTreeSet<_> = a.keys().chain(b.keys()).collect();
    let (mut stat, mut bins, mut pooled) = (0.0, 0usize, (0.0, 0.0));
    for k in keys {
        let (x, y) = (
            *a.get(k).unwrap_or(&0) as f64,
            *b.get(k).unwrap_or(&0) as f64,
        );
        if x + y < 10.0 {
            pooled = (pooled.0 + x, pooled.1 + y);
        } else {
            stat += (x - y).powi(2) / (x + y);
            bins += 1;
        }
    }
    if pooled.0 + pooled.1 > 0.0 {
        stat += (pooled.0 - pooled.1).powi(2) / (pooled.0 + pooled.1);
        bins += 1;
    }
    let df = (bins.max(2) - 1) as f64;
    let z = 3.09;
    let crit = df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3);
    (stat, crit)
}

/// Sampling with drafts draws from the target's distribution, not just the same tokens for the
/// same seed: tokens sampled with drafts (seeds 0..N) and without (seeds N..2N, so no two runs
/// share a random stream) have the same frequencies per position (chi-square, p = 0.001). The
/// same test tells temperature 1.0 from 0.25, so it can fail.
#[test]
fn sampled_token_frequencies_with_drafts_match_plain_decoding() {
    const N: u64 = 400;
    let model = "dense_tied";
    let input = case(model, "text", "bf16").input;
    let drafting = pipeline(model, 4, Some(ngram(4, 1, 3)));
    let with = sampled_counts(&drafting, &input, 0..N, 1.0);
    let st = drafting.stats();
    assert!(st.accepted_tokens > 0, "no draft was accepted: {st:?}");
    drop(drafting);
    let plain = pipeline(model, 4, None);
    let without = sampled_counts(&plain, &input, N..2 * N, 1.0);
    let (stat, crit) = chi_square(&with, &without);
    eprintln!("drafts vs plain: chi-square {stat:.1}, critical {crit:.1}; {st:?}");
    assert!(
        stat < crit,
        "frequencies differ: chi-square {stat:.1} ≥ {crit:.1}"
    );
    let colder = sampled_counts(&plain, &input, 0..N, 0.25);
    let (stat, crit) = chi_square(&colder, &without);
    eprintln!("temperature 0.25 vs 1.0: chi-square {stat:.1}, critical {crit:.1}");
    assert!(
        stat > crit,
        "the test cannot tell temperature 0.25 from 1.0: {stat:.1} < {crit:.1}"
    );
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

/// Drafts under memory pressure and with shared prefixes: a cache that holds about one sequence
/// preempts sequences mid-run (a draft's blocks are only taken when spare, and a preempted
/// sequence is recomputed from its committed tokens), and a repeated request hits the prefix
/// cache; the output is plain decoding's either way and every block comes back.
#[test]
fn preemption_and_prefix_cache_with_drafts() {
    let model = "dense_untied";
    let ins: Vec<MultimodalInput> = inputs(model)
        .into_iter()
        .filter(|i| i.input_ids.len() < 40)
        .collect();
    assert!(!ins.is_empty());
    let mut many = Vec::new();
    for k in 0..4 {
        many.extend(ins.iter().cloned().map(|mut i| {
            i.input_ids.push(10 + k);
            i
        }));
    }
    let params = vec![greedy(40); many.len()];
    let plain = pipeline(model, 8, None);
    let want = run_all(&plain, &many, &params);
    drop(plain);
    let tight = builder(model, 8, Some(ngram(6, 1, 3)))
        .schedule(ScheduleConfig {
            max_batch_size: 8,
            max_prefill_batch_size: 8,
            max_prefill_tokens: 1024,
            max_seq_len: 96,
            max_input_token_len: 80,
            max_iter_times: 64,
            ..Default::default()
        })
        .block_size(4)
        .kv_cache(KvCacheSize::Blocks(24))
        .prefix_caching(false)
        .build()
        .unwrap();
    let got = run_all(&tight, &many, &params);
    let st = tight.stats();
    assert!(st.preemptions > 0, "the tight cache must preempt: {st:?}");
    assert!(st.drafted_tokens > 0, "{st:?}");
    if backend().is_some() {
        assert_eq!(got, want);
    }
    assert_eq!(st.free_blocks, st.total_blocks);
    drop(tight);

    // The same request twice: the second is served from the prefix cache, drafts and all.
    let p = pipeline(model, 1, Some(ngram(5, 1, 3)));
    let first = p.generate_blocking(many[0].clone(), greedy(40)).unwrap();
    let again = p.generate_blocking(many[0].clone(), greedy(40)).unwrap();
    assert!(again.choices[0].usage.cached_tokens > 0);
    assert_eq!(again.choices[0].token_ids, first.choices[0].token_ids);
    let st = p.stats();
    assert_eq!(st.free_blocks, st.total_blocks);
}

/// Clients that go away mid-run free every block, drafts' included, and the engine serves on.
#[test]
fn cancellation_with_drafts_returns_all_blocks() {
    let p = pipeline("dense_tied", 4, Some(ngram(8, 1, 3)));
    let input = case("dense_tied", "image1", "bf16").input;
    let mut streams: Vec<_> = (0..3)
        .map(|_| p.generate(input.clone(), greedy(96)).blocking_iter())
        .collect();
    for s in streams.iter_mut() {
        for _ in 0..6 {
            assert!(matches!(s.next(), Some(Event::Delta { .. })));
        }
    }
    assert!(p.stats().free_blocks < p.stats().total_blocks);
    drop(streams);
    let t0 = std::time::Instant::now();
    while p.stats().free_blocks != p.stats().total_blocks || p.stats().running > 0 {
        assert!(t0.elapsed().as_secs() < 20, "{:?}", p.stats());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let c = p.generate_blocking(input, greedy(4)).unwrap();
    assert_eq!(c.choices[0].token_ids.len(), 4);
}

/// MindIE's memory decoding: the trie remembers prompts and finished outputs across requests,
/// so a request like an earlier one is drafted from it; output unchanged, steps saved.
#[test]
fn memory_decoding_equals_plain_decoding_and_learns_across_requests() {
    let memory = SpeculativeConfig::from_json(&serde_json::json!({
        "method": "memory_decoding", "decoding_length": 8, "dynamic_algo": true,
        "max_draft_batch": 16
    }))
    .unwrap();
    check("dense_tied", vec![greedy(48); 4], memory.clone());
    let input = case("dense_tied", "text", "bf16").input;
    let p = pipeline("dense_tied", 1, Some(memory));
    let first = p.generate_blocking(input.clone(), greedy(48)).unwrap();
    let before = p.stats();
    let again = p.generate_blocking(input, greedy(48)).unwrap();
    let after = p.stats();
    if backend().is_some() {
        assert_eq!(again.choices[0].token_ids, first.choices[0].token_ids);
    }
    // The second run follows the first one's output from the trie.
    let steps = after.steps - before.steps;
    assert!(
        after.accepted_tokens - before.accepted_tokens >= 24,
        "{before:?} → {after:?}"
    );
    assert!(steps < 48, "{steps} steps for 48 tokens");
}
