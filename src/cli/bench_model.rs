//! `qwen3vl bench-model`: model-level timings on one machine — vision tower for one image, time
//! to first token for image + question, text prefill throughput, batch-1 decode throughput and
//! peak RSS. Medians over `--repeats` runs.

use std::path::PathBuf;
use std::time::Instant;

use crate::engine::kernels::runtime::pool::ThreadPool;
use crate::engine::model::{argmax, StepInput};
use crate::engine::paged::KvBlocks;
use crate::engine::{ModelArgs, MultimodalInput, Qwen3VlModel};
use anyhow::{Context, Result};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct BenchModelArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Image side in pixels (a multiple of 32).
    #[arg(long, default_value_t = 448)]
    pub image_size: usize,
    /// Question length in tokens for the time-to-first-token figure.
    #[arg(long, default_value_t = 19)]
    pub question_tokens: usize,
    /// Text prompt length for the prefill figure.
    #[arg(long, default_value_t = 128)]
    pub prefill_tokens: usize,
    /// Tokens decoded for the decode figure.
    #[arg(long, default_value_t = 32)]
    pub decode_tokens: usize,
    /// Concurrent sequences for the batched-decode figure (paged KV, one step for all); 0 skips it.
    #[arg(long, default_value_t = 16)]
    pub decode_streams: usize,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// Run only some figures (comma-separated: vision, ttft, prefill, decode, batch), e.g. for
    /// profiling; `verify` (never run by default) times a decode step verifying k = 0…64 draft
    /// tokens.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Deterministic pseudo-random text ids below `vocab`, avoiding the special range.
fn text_ids(n: usize, vocab: usize, salt: usize) -> Vec<u32> {
    let top = vocab.clamp(2, 151_643);
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729 + 1000) % top) as u32)
        .collect()
}

pub fn run(args: &BenchModelArgs) -> Result<()> {
    args.model_args.install()?;
    let load = args.model_args.load_options();
    let t0 = Instant::now();
    let model = Qwen3VlModel::load(&args.model, load)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let load_s = t0.elapsed().as_secs_f64();
    let cfg = &model.config;
    let vocab = model.vocab_size();
    let reps = args.repeats.max(1);
    let patch = cfg.vision_config.patch_size;
    let side = args.image_size / patch;
    anyhow::ensure!(
        side >= 2 && side.is_multiple_of(2),
        "--image-size must be a multiple of {}",
        2 * patch
    );
    let grid = [1usize, side, side];
    let np = side * side;
    let pixels: Vec<f32> = (0..np * cfg.patch_dim())
        .map(|i| ((i * 37 % 255) as f32 / 127.5) - 1.0)
        .collect();
    eprintln!(
        "model {} ({}), {} threads, backend {}, loaded in {load_s:.1}s",
        args.model.display(),
        load.precision.name(),
        ThreadPool::global().threads(),
        model.backend_name()
    );
    eprintln!("{}", model.plan().summary());

    let want = |f: &str| args.only.is_empty() || args.only.iter().any(|o| o == f);
    let mut vision_s = f64::NAN;
    let mut ttft_s = f64::NAN;
    let mut prefill_s = f64::NAN;
    let mut decode_tps = f64::NAN;
    if want("vision") {
        vision_s = median(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    model
                        .encode_vision(&pixels, &[grid])
                        .map(|_| t.elapsed().as_secs_f64())
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
    }

    // Chat-shaped prompt: <|im_start|>user\n <vision block> question <|im_end|>\n<|im_start|>assistant\n
    let n_img = np / 4;
    let mut ids = text_ids(3, vocab, 1);
    ids.push(cfg.vision_start_token_id);
    ids.extend(std::iter::repeat_n(cfg.image_token_id, n_img));
    ids.push(cfg.vision_end_token_id);
    ids.extend(text_ids(args.question_tokens + 5, vocab, 2));
    let mm = MultimodalInput {
        input_ids: ids.clone(),
        pixel_values: pixels.clone(),
        image_grid_thw: vec![grid],
        ..Default::default()
    };
    if want("ttft") {
        ttft_s = median(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    let mut cache = model.new_cache();
                    model.prefill(&mut cache, &mm, false).map(|o| {
                        let _ = argmax(&o.logits);
                        t.elapsed().as_secs_f64()
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
    }

    let text = MultimodalInput {
        input_ids: text_ids(args.prefill_tokens, vocab, 3),
        ..Default::default()
    };
    if want("prefill") {
        prefill_s = median(
            (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    let mut cache = model.new_cache();
                    model
                        .prefill(&mut cache, &text, false)
                        .map(|_| t.elapsed().as_secs_f64())
                })
                .collect::<Result<Vec<_>, _>>()?,
        );
    }

    if want("decode") {
        let mut decode_rates = Vec::new();
        for _ in 0..reps {
            let mut cache = model.new_cache();
            let short = MultimodalInput {
                input_ids: text_ids(16, vocab, 4),
                ..Default::default()
            };
            let out = model.prefill(&mut cache, &short, false)?;
            let mut tok = argmax(&out.logits) as u32;
            let t = Instant::now();
            for _ in 0..args.decode_tokens {
                let logits = model.decode(&mut cache, tok, out.positions.rope_delta)?;
                tok = argmax(&logits) as u32;
            }
            decode_rates.push(args.decode_tokens as f64 / t.elapsed().as_secs_f64());
        }
        decode_tps = median(decode_rates);
    }
    let mut batch_tps = f64::NAN;
    if want("batch") && args.decode_streams > 0 {
        batch_tps = median(
            (0..reps)
                .map(|_| batched_decode(&model, args.decode_streams, args.decode_tokens))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    let rss = peak_rss_bytes();
    let prefill_tps = args.prefill_tokens as f64 / prefill_s;

    // Figures left out by --only (or --decode-streams 0) are NaN: their rows are not printed.
    let row = |figure: String, value: f64, unit: &str, digits: usize| {
        if value.is_finite() {
            println!("| {figure} | {value:.digits$} {unit} |");
        }
    };
    println!("| figure | value |");
    println!("|---|---|");
    let size = args.image_size;
    row(
        format!("vision tower, one {size}x{size} image ({np} patches)"),
        vision_s,
        "s",
        3,
    );
    row(
        format!(
            "time to first token, image + {}-token question ({} prompt tokens)",
            args.question_tokens,
            ids.len()
        ),
        ttft_s,
        "s",
        3,
    );
    row(
        format!("text prefill, {} tokens", args.prefill_tokens),
        prefill_tps,
        "tok/s",
        1,
    );
    row("decode, batch 1".into(), decode_tps, "tok/s", 2);
    row(
        format!(
            "decode, {} concurrent streams (aggregate)",
            args.decode_streams
        ),
        batch_tps,
        "tok/s",
        1,
    );
    if let Some(r) = rss {
        println!("| peak RSS | {:.2} GB |", r as f64 / 1e9);
    }
    // Opt-in (`--only verify`): the cost of a decode step that also verifies k draft tokens.
    if args.only.iter().any(|o| o == "verify") {
        verify_cost(&model, reps)?;
    }
    if let Some(path) = &args.json {
        let v = json!({
            "model": args.model, "dtype": load.precision.name(),
            "threads": ThreadPool::global().threads(), "backend": model.backend_name(),
            "load_s": load_s, "vision_s": vision_s, "ttft_s": ttft_s, "prompt_tokens": ids.len(),
            "prefill_tokens": args.prefill_tokens, "prefill_tok_s": prefill_tps,
            "decode_tok_s": decode_tps, "decode_streams": args.decode_streams,
            "decode_batch_tok_s": batch_tps, "peak_rss_bytes": rss, "repeats": reps,
            "quantize": load.quantization.name(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The time of one batch-1 decode step that carries k draft tokens (k + 1 rows, logits for
/// each), after a 128-token prompt, for k = 0…64: the curve that says how many draft tokens a
/// step verifies nearly for free on this CPU (while the step is bound by reading the weights).
fn verify_cost(model: &Qwen3VlModel, reps: usize) -> Result<()> {
    const PROMPT: usize = 128;
    const BLOCK: usize = 16;
    const KS: [usize; 9] = [0, 1, 2, 4, 8, 16, 24, 32, 64];
    let vocab = model.vocab_size();
    let n_blocks = (PROMPT + 65).div_ceil(BLOCK);
    let mut kv = KvBlocks::new(
        model.num_layers(),
        model.kv_dim(),
        BLOCK,
        n_blocks,
        model.precision,
    );
    let blocks: Vec<u32> = (0..n_blocks as u32).collect();
    let ids = text_ids(PROMPT + 65, vocab, 3);
    let pos: Vec<i64> = (0..(PROMPT + 65) as i64).collect();
    let p = &pos[..PROMPT];
    model.step(
        &mut kv,
        &[StepInput {
            tokens: &ids[..PROMPT],
            start: 0,
            positions: [p, p, p],
            blocks: &blocks,
            visual: None,
            logits: 1,
        }],
    )?;
    let mut base = f64::NAN;
    println!();
    println!("| draft tokens verified (k) | step time | × plain decode step |");
    println!("|---:|---:|---:|");
    for k in KS {
        let p = &pos[PROMPT..PROMPT + 1 + k];
        let step = [StepInput {
            tokens: &ids[PROMPT..PROMPT + 1 + k],
            start: PROMPT,
            positions: [p, p, p],
            blocks: &blocks,
            visual: None,
            logits: 1 + k,
        }];
        model.step(&mut kv, &step)?; // warm-up
        let times = (0..reps.max(3))
            .map(|_| {
                let t = Instant::now();
                model
                    .step(&mut kv, &step)
                    .map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ms = median(times) * 1e3;
        if k == 0 {
            base = ms;
        }
        println!("| {k} | {ms:.1} ms | {:.2}× |", ms / base);
    }
    Ok(())
}

/// Aggregate decode rate of `streams` sequences stepping together over a paged cache (the
/// serving engine's path): every step computes one new token for each sequence.
fn batched_decode(model: &Qwen3VlModel, streams: usize, tokens: usize) -> Result<f64> {
    const PROMPT: usize = 16;
    const BLOCK: usize = 16;
    let vocab = model.vocab_size();
    let per_seq = (PROMPT + tokens).div_ceil(BLOCK);
    let mut kv = KvBlocks::new(
        model.num_layers(),
        model.kv_dim(),
        BLOCK,
        streams * per_seq,
        model.precision,
    );
    let blocks: Vec<Vec<u32>> = (0..streams)
        .map(|s| ((s * per_seq) as u32..((s + 1) * per_seq) as u32).collect())
        .collect();
    let prompts: Vec<Vec<u32>> = (0..streams)
        .map(|s| text_ids(PROMPT, vocab, 10 + s))
        .collect();
    let pos: Vec<i64> = (0..(PROMPT + tokens) as i64).collect();
    let prefill: Vec<StepInput> = (0..streams)
        .map(|s| StepInput {
            tokens: &prompts[s],
            start: 0,
            positions: [&pos[..PROMPT], &pos[..PROMPT], &pos[..PROMPT]],
            blocks: &blocks[s],
            visual: None,
            logits: 1,
        })
        .collect();
    let logits = model.step(&mut kv, &prefill)?;
    let mut next: Vec<u32> = logits
        .chunks_exact(vocab)
        .map(|l| argmax(l) as u32)
        .collect();
    let t = Instant::now();
    for i in 0..tokens {
        let at = PROMPT + i;
        let p = &pos[at..at + 1];
        let step: Vec<StepInput> = (0..streams)
            .map(|s| StepInput {
                tokens: std::slice::from_ref(&next[s]),
                start: at,
                positions: [p, p, p],
                blocks: &blocks[s],
                visual: None,
                logits: 1,
            })
            .collect();
        let logits = model.step(&mut kv, &step)?;
        next = logits
            .chunks_exact(vocab)
            .map(|l| argmax(l) as u32)
            .collect();
    }
    Ok((streams * tokens) as f64 / t.elapsed().as_secs_f64())
}
