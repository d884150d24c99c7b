//! Engine-level proofs through the public pipeline API on the tiny fixture checkpoints:
//! batched greedy output equals single-request output, preemption + recompute equals an
//! uninterrupted run, cancellation returns every block, a burst of submitters is held at the
//! door.

mod common;

use std::time::{Duration, Instant};

use common::*;
use qwen3vl::engine::{BackendChoice, MultimodalInput, Precision};
use qwen3vl::pipeline::{
    Event, FinishReason, KvCacheSize, Pipeline, PipelineBuilder, SamplingParams, ScheduleConfig,
};

/// oneDNN's AVX-512 / AMX matmuls and the FMA kernel over bf16 panels compute each row
/// independently of the others; the portable GEMM (and oneDNN's AVX2 GEMM) does not, so exact
/// batch-invariance needs one of the former. These tests run on bf16 weights unless they say
/// otherwise.
fn backend_for(precision: Precision) -> BackendChoice {
    row_invariant_backend(precision).unwrap_or(BackendChoice::Portable)
}

fn exact() -> bool {
    row_invariant_backend(Precision::Bf16).is_some()
}

/// Token-for-token equality on a row-invariant backend; otherwise only the shape of the outputs
/// is compared, and the test says so.
fn assert_same(got: &[Vec<u32>], want: &[Vec<u32>], what: &str) {
    if exact() {
        assert_eq!(got, want, "{what}");
    } else {
        eprintln!("note: no row-invariant GEMM here, {what}: comparing lengths only");
        let len = |v: &[Vec<u32>]| v.iter().map(|x| x.len()).collect::<Vec<_>>();
        assert_eq!(len(got), len(want), "{what}");
    }
}

fn builder(model: &str, precision: Precision, batch: usize) -> PipelineBuilder {
    builder_on(model, precision, batch, backend_for(precision))
}

fn builder_on(
    model: &str,
    precision: Precision,
    batch: usize,
    backend: BackendChoice,
) -> PipelineBuilder {
    fixture_pipeline(model, precision, batch, backend)
}

fn inputs(model: &str, dtype: &str) -> Vec<MultimodalInput> {
    CASES.iter().map(|c| case(model, c, dtype).input).collect()
}

fn greedy(n: usize) -> SamplingParams {
    SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy().with_max_tokens(n)
    }
}

/// Submit all inputs at once and collect each one's tokens.
fn run_all(p: &Pipeline, ins: &[MultimodalInput], params: &SamplingParams) -> Vec<Vec<u32>> {
    let streams: Vec<_> = ins
        .iter()
        .map(|i| p.generate(i.clone(), params.clone()))
        .collect();
    let done = futures::executor::block_on(futures::future::join_all(streams.into_iter().map(
        |s| async move {
            use futures::StreamExt;
            let evs: Vec<Event> = s.collect().await;
            let mut c = qwen3vl::pipeline::Completion {
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

fn check_batched_equals_single(model: &str, precision: Precision, dtype: &str) {
    check_batched_equals_single_on(model, precision, dtype, backend_for(precision));
}

fn check_batched_equals_single_on(
    model: &str,
    precision: Precision,
    dtype: &str,
    backend: BackendChoice,
) {
    let ins = inputs(model, dtype);
    let params = greedy(20);
    let batched = builder_on(model, precision, 8, backend).build().unwrap();
    let together = run_all(&batched, &ins, &params);
    assert!(
        batched.stats().steps < 20 * ins.len() as u64,
        "requests were batched"
    );
    drop(batched);
    let single = builder_on(model, precision, 1, backend).build().unwrap();
    for (i, input) in ins.iter().enumerate() {
        let alone = single
            .generate_blocking(input.clone(), params.clone())
            .unwrap();
        assert_eq!(
            together[i], alone.choices[0].token_ids,
            "{model}/{}: batched vs alone",
            CASES[i]
        );
        // And the contiguous-cache reference path of the model core.
        let (_, reference) = single.model().generate_greedy(input, 20).unwrap();
        assert_eq!(
            together[i], reference,
            "{model}/{}: vs generate_greedy",
            CASES[i]
        );
    }
}

#[test]
fn batched_greedy_equals_single_dense_bf16() {
    check_batched_equals_single("dense_tied", Precision::Bf16, "bf16");
}

/// The FMA kernel over bf16 panels (AVX-512 or AVX2 tiles) computes every row alone too (one FMA chain per
/// output in k order), so it is batch-invariant without oneDNN.
#[test]
fn batched_greedy_equals_single_dense_bf16_fma_kernel() {
    if !qwen3vl::engine::kernels::gemm::bf16_fma::available() {
        eprintln!("no AVX-512F or AVX2 + FMA: the bf16 FMA kernel is not used on this CPU");
        return;
    }
    check_batched_equals_single_on("dense_untied", Precision::Bf16, "bf16", BackendChoice::Fma);
}

#[test]
fn batched_greedy_equals_single_moe_f32() {
    check_batched_equals_single("moe", Precision::F32, "f32");
}

#[test]
fn chunked_prefill_equals_whole_prompt() {
    let model = "dense_tied";
    let ins = inputs(model, "bf16");
    let params = greedy(10);
    let whole = builder(model, Precision::Bf16, 8).build().unwrap();
    let want = run_all(&whole, &ins, &params);
    drop(whole);
    // 7-token chunks: prompts (with their images) are prefilled over many steps, chunks end
    // mid-block and mid-image, interleaved with the other requests' decodes.
    let chunked = builder(model, Precision::Bf16, 8)
        .schedule(ScheduleConfig {
            max_batch_size: 8,
            max_prefill_batch_size: 8,
            max_prefill_tokens: 4096,
            max_seq_len: 512,
            max_input_token_len: 480,
            max_iter_times: 64,
            prefill_chunk: 7,
            ..Default::default()
        })
        .build()
        .unwrap();
    let got = run_all(&chunked, &ins, &params);
    assert_same(&got, &want, "chunked vs whole prefill");
    let longest = ins.iter().map(|i| i.input_ids.len()).max().unwrap();
    assert!(
        chunked.stats().steps as usize >= longest / 7,
        "prefill was chunked"
    );
}

#[test]
fn preemption_recompute_equals_uninterrupted() {
    let model = "dense_untied";
    let ins: Vec<MultimodalInput> = inputs(model, "bf16")
        .into_iter()
        .filter(|i| i.input_ids.len() < 40)
        .collect();
    assert!(!ins.is_empty());
    let mut many = Vec::new();
    for k in 0..4 {
        many.extend(ins.iter().cloned().map(|mut i| {
            i.input_ids.push(10 + k); // distinct prompts: no prefix sharing across copies
            i
        }));
    }
    let params = greedy(40);
    let roomy = builder(model, Precision::Bf16, 8).build().unwrap();
    let want = run_all(&roomy, &many, &params);
    drop(roomy);
    // Block size 4: the whole cache (24 blocks = 96 tokens) holds about one sequence.
    let tight = builder(model, Precision::Bf16, 8)
        .block_size(4)
        .kv_cache(KvCacheSize::Blocks(24))
        .prefix_caching(false)
        .schedule(ScheduleConfig {
            max_batch_size: 8,
            max_prefill_batch_size: 8,
            max_prefill_tokens: 1024,
            max_seq_len: 96,
            max_input_token_len: 80,
            max_iter_times: 64,
            ..Default::default()
        })
        .build()
        .unwrap();
    let got = run_all(&tight, &many, &params);
    let stats = tight.stats();
    assert!(
        stats.preemptions > 0,
        "the tight cache must preempt: {stats:?}"
    );
    assert_same(&got, &want, "preempted vs uninterrupted");
    assert_eq!(stats.free_blocks, stats.total_blocks);
}

#[test]
fn cancellation_returns_all_blocks() {
    let p = builder("dense_tied", Precision::Bf16, 4).build().unwrap();
    let input = case("dense_tied", "image1", "bf16").input;
    let params = greedy(64);
    let mut streams: Vec<_> = (0..3)
        .map(|_| p.generate(input.clone(), params.clone()).blocking_iter())
        .collect();
    for s in streams.iter_mut() {
        // Wait until each is decoding.
        for _ in 0..3 {
            assert!(matches!(s.next(), Some(Event::Delta { .. })));
        }
    }
    assert!(p.stats().free_blocks < p.stats().total_blocks);
    drop(streams);
    let t0 = Instant::now();
    while p.stats().free_blocks != p.stats().total_blocks || p.stats().running > 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", p.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The pipeline still serves requests afterwards.
    let c = p.generate_blocking(input, greedy(4)).unwrap();
    assert_eq!(c.choices[0].token_ids.len(), 4);
    assert_eq!(c.choices[0].finish_reason, Some(FinishReason::Length));
}

#[test]
fn burst_waits_at_bounded_door() {
    let p = builder("dense_tied", Precision::Bf16, 2)
        .max_in_flight(3)
        .mailbox_capacity(1)
        .media_workers(1)
        .build()
        .unwrap();
    let input = case("dense_tied", "text", "bf16").input;
    let n = 40;
    let streams: Vec<_> = (0..n)
        .map(|_| p.generate(input.clone(), greedy(6)))
        .collect();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|sc| {
        let (peak, stop2, p) = (peak.clone(), stop.clone(), &p);
        sc.spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let s = p.stats();
                assert!(s.admitted <= 3, "{s:?}");
                assert!(s.running + s.waiting <= 3, "{s:?}");
                peak.fetch_max(s.admitted, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let results = futures::executor::block_on(futures::future::join_all(
            streams.into_iter().map(|s| async move {
                use futures::StreamExt;
                s.collect::<Vec<Event>>().await
            }),
        ));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for evs in results {
            assert!(
                matches!(
                    evs.last(),
                    Some(Event::Finished {
                        reason: FinishReason::Length,
                        ..
                    })
                ),
                "{evs:?}"
            );
        }
    });
    assert!(peak.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(p.stats().free_blocks, p.stats().total_blocks);
}

#[test]
fn same_image_prompt_hits_the_prefix_cache() {
    let p = builder("dense_tied", Precision::Bf16, 4)
        .block_size(4)
        .build()
        .unwrap();
    let input = case("dense_tied", "image1", "bf16").input;
    let first = p.generate_blocking(input.clone(), greedy(6)).unwrap();
    let again = p.generate_blocking(input.clone(), greedy(6)).unwrap();
    let (a, b) = (&first.choices[0], &again.choices[0]);
    assert_eq!(a.usage.cached_tokens, 0);
    let full_blocks = (input.input_ids.len() - 1) / 4 * 4;
    assert_eq!(b.usage.cached_tokens, full_blocks);
    assert_same(
        std::slice::from_ref(&b.token_ids),
        std::slice::from_ref(&a.token_ids),
        "cached vs fresh",
    );
    // A different image at the same place shares only the text before it.
    let mut other = input.clone();
    other.pixel_values.iter_mut().for_each(|x| *x = -*x);
    let c = p.generate_blocking(other, greedy(6)).unwrap();
    let first_pad = input
        .input_ids
        .iter()
        .position(|&t| t == p.model().config.image_token_id)
        .unwrap();
    assert!(c.choices[0].usage.cached_tokens <= first_pad);
}
