//! `qwen3vl run`: pure model inference through the serving engine (no HTTP), like the seed's
//! `run_pa.sh`: a batch of identical requests, request 0 streamed to stdout, then TTFT, decode
//! tok/s and throughput.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::engine::tensor_file::TensorFile;
use crate::engine::{ModelArgs, MultimodalInput};
use crate::pipeline::{
    ChatMessage, Completion, Event, KvCacheSize, MediaLimits, Pipeline, SamplingParams,
    ScheduleConfig, SpeculativeConfig,
};
use anyhow::{bail, Context, Result};
use futures::StreamExt;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Image file(s) to include in the prompt.
    #[arg(long)]
    pub image: Vec<PathBuf>,
    /// A video file to include in the prompt.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// The user's text.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Token-level input instead of a chat: a safetensors file as `forward --inputs` reads.
    #[arg(long, conflicts_with_all = ["image", "video", "prompt"])]
    pub inputs: Option<PathBuf>,
    /// Synthetic text prompt of N token ids (no tokenizer needed; for benchmarks).
    #[arg(long, conflicts_with_all = ["image", "video", "prompt", "inputs"])]
    pub random_prompt_len: Option<usize>,
    /// Requests in the batch (and maxBatchSize).
    #[arg(long, default_value_t = 1)]
    pub max_batch_size: usize,
    /// Input token limit (maxInputTokenLen).
    #[arg(long, default_value_t = 4096)]
    pub max_input_length: usize,
    /// Tokens to generate per request (maxIterTimes).
    #[arg(long, default_value_t = 256)]
    pub max_output_length: usize,
    /// Keep generating past EOS (fixed-length runs for benchmarking).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Sampling temperature (0 = greedy, the default).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<i32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// tokenizer.json when the model folder has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// KV cache size in GiB (default: derived from free memory).
    #[arg(long)]
    pub kv_cache_gib: Option<f64>,
    /// Prompt tokens computed per step (SplitFuse chunked prefill; 0 = whole prompts).
    #[arg(long, default_value_t = 0)]
    pub prefill_chunk: usize,
    /// Speculative decoding, as `serve --speculative-config` (e.g. `{"method": "ngram"}`).
    #[arg(long)]
    pub speculative_config: Option<String>,
    /// Tokens per KV block (cacheBlockSize).
    #[arg(long, default_value_t = 128)]
    pub block_size: usize,
    /// Compute precision: bf16 (default), f16 or f32.
    #[command(flatten)]
    pub model_args: ModelArgs,
}

pub fn run(args: &RunArgs) -> Result<()> {
    args.model_args.install()?;
    let b = args.max_batch_size.max(1);
    let mut builder = Pipeline::builder()
        .model(&args.model)
        .load_options(args.model_args.load_options())
        .schedule(ScheduleConfig {
            max_batch_size: b,
            max_prefill_batch_size: b,
            max_prefill_tokens: (args.max_input_length * b).max(args.max_input_length),
            max_seq_len: args.max_input_length + args.max_output_length,
            max_input_token_len: args.max_input_length,
            max_iter_times: args.max_output_length,
            prefill_chunk: args.prefill_chunk,
            ..Default::default()
        })
        .block_size(args.block_size)
        .media_limits(MediaLimits {
            media_root: Some(PathBuf::from("/")),
            ..Default::default()
        })
        .on_progress(|m| eprintln!("[qwen3vl] {m}"));
    if let Some(text) = &args.speculative_config {
        let v: serde_json::Value =
            serde_json::from_str(text).context("--speculative-config is not JSON")?;
        let spec = SpeculativeConfig::from_json(&v)
            .map_err(|e| anyhow::anyhow!("invalid --speculative-config: {e}"))?;
        builder = builder.speculative(Some(spec));
    }
    if let Some(g) = args.kv_cache_gib {
        builder = builder.kv_cache(KvCacheSize::Gib(g));
    }
    let tokenizer = args.tokenizer.clone().or_else(default_tokenizer);
    if let Some(t) = tokenizer {
        builder = builder.tokenizer(t);
    }
    let pipeline = builder.build().context("starting the pipeline")?;
    let params = SamplingParams {
        temperature: Some(args.temperature),
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        ignore_eos: args.ignore_eos,
        max_tokens: Some(args.max_output_length),
        ..Default::default()
    };
    let input = request_input(args, &pipeline)?;
    let t0 = Instant::now();
    let streams: Vec<_> = (0..b)
        .map(|_| match &input {
            Input::Tokens(t) => pipeline.generate(t.clone(), params.clone()),
            Input::Chat(m) => pipeline.chat(m.clone(), params.clone()),
        })
        .collect();
    let results = futures::executor::block_on(futures::future::join_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| collect(i == 0, s)),
    ));
    let wall = t0.elapsed().as_secs_f64();
    println!();
    let mut done = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(c) => done.push(c),
            Err(e) => eprintln!("request {i} failed: {e}"),
        }
    }
    if done.is_empty() {
        bail!("every request failed");
    }
    report(&done, wall, b);
    let st = pipeline.stats();
    eprintln!(
        "model steps: {} for {} generated tokens; drafts: {} tokens verified, {} accepted",
        st.steps, st.generated_tokens, st.drafted_tokens, st.accepted_tokens
    );
    Ok(())
}

enum Input {
    Tokens(MultimodalInput),
    Chat(Vec<ChatMessage>),
}

fn default_tokenizer() -> Option<PathBuf> {
    let dir = std::env::var_os("QWEN3VL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/qwen3vl")))?;
    let p = dir.join("tokenizer.json");
    p.exists().then_some(p)
}

fn request_input(args: &RunArgs, pipeline: &Pipeline) -> Result<Input> {
    if let Some(n) = args.random_prompt_len {
        // Ordinary (non-special) ids, deterministic.
        let vocab = pipeline.model().vocab_size().min(150_000) as u64;
        let ids = (0..n as u64)
            .map(|i| ((i * 2_654_435_761 + 7) % (vocab - 100) + 100) as u32)
            .collect();
        return Ok(Input::Tokens(MultimodalInput {
            input_ids: ids,
            ..Default::default()
        }));
    }
    if let Some(path) = &args.inputs {
        let f = TensorFile::read(path)?;
        let mm = MultimodalInput::from_tensor_file(&f, pipeline.model().config.patch_dim())?;
        return Ok(Input::Tokens(mm));
    }
    if !pipeline.has_processor() {
        bail!("no tokenizer: put tokenizer.json in the model folder, pass --tokenizer, or use --inputs / --random-prompt-len");
    }
    let mut parts = Vec::new();
    for img in &args.image {
        let p = std::fs::canonicalize(img).with_context(|| img.display().to_string())?;
        parts.push(serde_json::json!({"type": "image", "image": p.display().to_string()}));
    }
    if let Some(v) = &args.video {
        let p = std::fs::canonicalize(v).with_context(|| v.display().to_string())?;
        parts.push(serde_json::json!({"type": "video", "video": p.display().to_string()}));
    }
    let default = if parts.is_empty() {
        "Hello!"
    } else {
        "Describe this."
    };
    let text = args.prompt.clone().unwrap_or_else(|| default.to_string());
    parts.push(serde_json::json!({"type": "text", "text": text}));
    let msg: ChatMessage =
        serde_json::from_value(serde_json::json!({"role": "user", "content": parts}))?;
    Ok(Input::Chat(vec![msg]))
}

async fn collect(
    print: bool,
    mut s: crate::pipeline::EventStream,
) -> Result<Completion, crate::pipeline::RequestError> {
    let mut c = Completion {
        choices: vec![Default::default()],
    };
    while let Some(ev) = s.next().await {
        if print {
            if let Event::Delta { text, .. } = &ev {
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
        }
        c.push(ev)?;
    }
    Ok(c)
}

fn report(done: &[Completion], wall: f64, batch: usize) {
    let ch: Vec<_> = done.iter().map(|c| &c.choices[0]).collect();
    let ttft: Vec<f64> = ch.iter().filter_map(|c| c.timings.first_token).collect();
    let gen: usize = ch.iter().map(|c| c.usage.completion_tokens).sum();
    // Decode rate per request: tokens after the first over the time after the first.
    let rates: Vec<f64> = ch
        .iter()
        .filter_map(|c| {
            let (f, e) = (c.timings.first_token?, c.timings.finished?);
            (c.usage.completion_tokens > 1 && e > f)
                .then(|| (c.usage.completion_tokens - 1) as f64 / (e - f))
        })
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let first = ch[0];
    eprintln!("---");
    eprintln!(
        "batch {batch}: prompt {} tokens ({} cached), generated {gen} tokens in {wall:.2}s",
        first.usage.prompt_tokens, first.usage.cached_tokens
    );
    if let Some(v) = first.timings.vision_done {
        eprintln!("vision encoder done at {:.3}s (request 0)", v);
    }
    eprintln!("TTFT: mean {:.3}s, max {:.3}s", mean(&ttft), max(&ttft));
    eprintln!(
        "decode: {:.2} tok/s per request, {:.2} tok/s aggregate",
        mean(&rates),
        rates.iter().sum::<f64>()
    );
    eprintln!(
        "throughput: {:.2} tok/s (generated tokens / wall time)",
        gen as f64 / wall
    );
    eprintln!(
        "finish: {:?}",
        ch.iter()
            .map(|c| c.finish_reason.map(|r| r.as_str()).unwrap_or("?"))
            .collect::<Vec<_>>()
    );
}
