//! Serving-engine benchmarks (not tests), on token-level inputs so no tokenizer is needed:
//!
//! * `decode`: aggregate decode tok/s with 1, 4, 16 … concurrent greedy streams;
//! * `overlap`: requests decoding while others arrive with images, vision overlapped with
//!   decode (vision thread) vs. inline (engine thread): decode tok/s, inter-token gaps, TTFT.
//!
//! ```text
//! cargo run --release --example bench_pipeline -- decode  /work/models/2b 1,4,16
//! BENCH_CHUNK=128 cargo run --release --example bench_pipeline -- overlap /work/models/2b
//! ```
//! Knobs (environment): BENCH_TOKENS, BENCH_PROMPT, BENCH_DECODERS, BENCH_IMAGES,
//! BENCH_IMAGE_SIDE, BENCH_CHUNK (SplitFuse chunk, 0 = off).

use std::time::{Duration, Instant};

use futures::StreamExt;
use qwen3vl::engine::MultimodalInput;
use qwen3vl::pipeline::{
    Event, KvCacheSize, Pipeline, SamplingParams, ScheduleConfig, VisionSharing,
};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pipeline(model: &str, batch: usize, overlap: bool) -> Pipeline {
    pipeline_with(model, batch, overlap, VisionSharing::Fair)
}

fn pipeline_with(model: &str, batch: usize, overlap: bool, sharing: VisionSharing) -> Pipeline {
    Pipeline::builder()
        .model(model)
        .schedule(ScheduleConfig {
            max_batch_size: batch,
            max_prefill_batch_size: batch,
            max_prefill_tokens: 16384,
            max_seq_len: 2048,
            max_input_token_len: 1536,
            max_iter_times: 512,
            prefill_chunk: env("BENCH_CHUNK", 0),
            ..Default::default()
        })
        .kv_cache(KvCacheSize::Gib(2.0))
        .overlap_vision(overlap)
        .vision_sharing(sharing)
        .on_progress(|m| eprintln!("[pipeline] {m}"))
        .build()
        .expect("pipeline")
}

/// A text prompt of `n` ordinary token ids, different per `salt` (no prefix sharing).
fn text_prompt(n: usize, salt: u32) -> MultimodalInput {
    MultimodalInput {
        input_ids: (0..n as u32)
            .map(|i| 1000 + (i * 7919 + salt * 104_729) % 100_000)
            .collect(),
        ..Default::default()
    }
}

/// A prompt with one synthetic `side`×`side` image (grid 1×side/16×side/16).
fn image_prompt(p: &Pipeline, side: usize, salt: u32) -> MultimodalInput {
    let c = &p.model().config;
    let g = side / 16;
    let tokens = g * g / 4;
    let mut ids = vec![151644, 872, 198, c.vision_start_token_id];
    ids.extend(std::iter::repeat_n(c.image_token_id, tokens));
    ids.push(c.vision_end_token_id);
    ids.extend((0..12u32).map(|i| 2000 + i * 31 + salt));
    let n = g * g * c.patch_dim();
    let pixels = (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 20) as f32 / 4096.0 - 0.5
        })
        .collect();
    MultimodalInput {
        input_ids: ids,
        pixel_values: pixels,
        image_grid_thw: vec![[1, g, g]],
        ..Default::default()
    }
}

fn greedy(n: usize) -> SamplingParams {
    SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy().with_max_tokens(n)
    }
}

/// Per request: arrival of every token at the client, and the final timings.
struct Trace {
    start: Instant,
    tokens: Vec<Instant>,
    ttft: f64,
}

async fn trace(s: qwen3vl::pipeline::EventStream) -> Trace {
    let start = Instant::now();
    let mut s = s;
    let mut t = Trace {
        start,
        tokens: Vec::new(),
        ttft: 0.0,
    };
    while let Some(ev) = s.next().await {
        match ev {
            Event::Delta { token_ids, .. } if !token_ids.is_empty() => {
                t.tokens.push(Instant::now())
            }
            Event::Finished { timings, .. } => t.ttft = timings.first_token.unwrap_or(0.0),
            Event::Error(e) => panic!("request failed: {e}"),
            _ => {}
        }
    }
    t
}

fn decode_bench(model: &str, streams: &[usize]) {
    let tokens = env("BENCH_TOKENS", 32);
    let prompt = env("BENCH_PROMPT", 64);
    let max = *streams.iter().max().unwrap_or(&1);
    let p = pipeline(model, max, true);
    // Warm-up (oneDNN primitives per row count, page faults).
    futures::executor::block_on(trace(p.generate(text_prompt(prompt, 999), greedy(4))));
    println!("| streams | prompt | tokens/stream | aggregate decode tok/s | per-stream tok/s | mean TTFT s |");
    println!("|---|---|---|---|---|---|");
    for &c in streams {
        let traces = futures::executor::block_on(futures::future::join_all(
            (0..c).map(|i| trace(p.generate(text_prompt(prompt, i as u32), greedy(tokens)))),
        ));
        // Decode window: from the last first token to the first last token, all streams
        // decoding together; tokens of every stream inside it.
        let start = traces.iter().map(|t| t.tokens[0]).max().unwrap();
        let end = traces
            .iter()
            .map(|t| *t.tokens.last().unwrap())
            .min()
            .unwrap();
        let inside: usize = traces
            .iter()
            .map(|t| t.tokens.iter().filter(|&&x| x > start && x <= end).count())
            .sum();
        let secs = (end - start).as_secs_f64().max(1e-9);
        let agg = inside as f64 / secs;
        let ttft = traces.iter().map(|t| t.ttft).sum::<f64>() / c as f64;
        println!(
            "| {c} | {prompt} | {tokens} | {agg:.2} | {:.2} | {ttft:.2} |",
            agg / c as f64
        );
    }
}

fn overlap_bench(model: &str) {
    let decoders = env("BENCH_DECODERS", 4);
    let images = env("BENCH_IMAGES", 2);
    let side = env("BENCH_IMAGE_SIDE", 448);
    let tokens = env("BENCH_TOKENS", 40);
    println!("| overlap | decoders × tokens | images | decode tok/s (decoders) | max gap between tokens s | image TTFT s (mean) | wall s |");
    println!("|---|---|---|---|---|---|---|");
    let modes = [
        ("off (inline)", false, VisionSharing::Pool),
        ("on, shared pool", true, VisionSharing::Pool),
        ("on, fair", true, VisionSharing::Fair),
    ];
    for (name, overlap, sharing) in modes {
        let p = pipeline_with(model, decoders + images, overlap, sharing);
        futures::executor::block_on(trace(p.generate(image_prompt(&p, 64, 7), greedy(2))));
        let t0 = Instant::now();
        let (dec, img) = futures::executor::block_on(async {
            let dec = futures::future::join_all(
                (0..decoders).map(|i| trace(p.generate(text_prompt(32, i as u32), greedy(tokens)))),
            );
            let img = async {
                // Images arrive once the decoders are running.
                while p.stats().running < decoders {
                    futures_timer_sleep(Duration::from_millis(20)).await;
                }
                futures_timer_sleep(Duration::from_millis(300)).await;
                futures::future::join_all(
                    (0..images)
                        .map(|i| trace(p.generate(image_prompt(&p, side, i as u32), greedy(4)))),
                )
                .await
            };
            futures::join!(dec, img)
        });
        let wall = t0.elapsed().as_secs_f64();
        let first = dec.iter().map(|t| t.tokens[0]).max().unwrap();
        let last = dec.iter().map(|t| *t.tokens.last().unwrap()).max().unwrap();
        let n: usize = dec
            .iter()
            .map(|t| t.tokens.iter().filter(|&&x| x > first).count())
            .sum();
        let rate = n as f64 / (last - first).as_secs_f64();
        let gap = dec
            .iter()
            .flat_map(|t| t.tokens.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()))
            .fold(0.0, f64::max);
        let ttft = img.iter().map(|t| t.ttft).sum::<f64>() / images.max(1) as f64;
        let _ = dec[0].start;
        println!(
            "| {name} | {decoders} × {tokens} | {images} × {side}² | {rate:.2} | {gap:.2} | {ttft:.2} | {wall:.1} |"
        );
    }
}

/// A tiny timer future (no async runtime needed): a thread sleeps, then wakes the task.
async fn futures_timer_sleep(d: Duration) {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    let _ = rx.await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench_pipeline (decode <model> [1,4,16] | overlap <model>)";
    let (mode, model) = match (args.first(), args.get(1)) {
        (Some(m), Some(d)) => (m.as_str(), d.as_str()),
        _ => panic!("{usage}"),
    };
    match mode {
        "decode" => {
            let streams: Vec<usize> = args
                .get(2)
                .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_else(|| vec![1, 4, 16]);
            decode_bench(model, &streams);
        }
        "overlap" => overlap_bench(model),
        _ => panic!("{usage}"),
    }
}
