//! `qwen3vl bench`: measure a running server (ours, MindIE, vLLM, any OpenAI-compatible one),
//! or the library pipeline in-process, the way AISBench does — perf mode, accuracy mode
//! (`--mode all`, TextVQA scoring), and `--compare a.json b.json`. See `qwen3vl::bench` and `shared/spec/service-and-bench.md` §3.

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::backends::BackendKind;
use crate::bench::compare::compare_text;
use crate::bench::dataset::{DatasetFormat, MediaMode, DEFAULT_NUM_FRAMES};
use crate::bench::load::LoadConfig;
use crate::bench::metrics::{default_stats, Stat};
use crate::bench::report::Report;
use crate::bench::runner::{run_bench, BenchConfig, Mode, Target};
use crate::service::Settings;
use anyhow::{bail, Context, Result};

use crate::engine::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Dataset: AISBench mm_custom JSONL, or a TextVQA questions JSONL with its
    /// `<name>_annotations.json` beside it.
    #[arg(long, required_unless_present = "compare")]
    pub dataset: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub dataset_format: DatasetFormat,
    /// perf: performance only; all: performance and VQA accuracy (AISBench `--mode`).
    #[arg(long, value_enum, default_value = "perf")]
    pub mode: Mode,
    /// Server base URL (overrides --host/--port).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port (MindIE's business port is 1025).
    #[arg(long, default_value_t = 1025)]
    pub port: u16,
    /// The server's API (wire protocol): openai-chat, vllm-generate or mindie-infer. Named
    /// `--api` so that it is not confused with the kernel `--backend` of the other subcommands.
    #[arg(long, value_enum, default_value = "openai-chat")]
    pub api: BackendKind,
    /// Non-streaming requests (AISBench `vllm_api_general_chat`; no TTFT/TPOT/ITL).
    #[arg(long)]
    pub no_stream: bool,
    /// Served model name (OpenAI: default `data[0].id` of GET /v1/models); with
    /// --in-process, the checkpoint directory.
    #[arg(long)]
    pub model: Option<String>,
    /// Run the dataset through the library pipeline in this process instead of HTTP (needs
    /// --model DIR); the pipeline gets `qwen3vl serve`'s settings.
    #[arg(long)]
    pub in_process: bool,
    /// With --in-process: a MindIE `config.json` whose schedule, KV cache and media settings
    /// the pipeline takes, to match a server started with `qwen3vl serve --config`.
    #[arg(long, requires = "in_process")]
    pub server_config: Option<PathBuf>,
    /// With --in-process: the model's precision, kernels, quantization and threads.
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// How media travel: file:// paths, or base64 data URIs.
    #[arg(long, value_enum, default_value = "path")]
    pub media: MediaMode,
    /// Frames sampled per video in base64 mode when a video `path` is a directory of frames.
    #[arg(long, default_value_t = DEFAULT_NUM_FRAMES)]
    pub num_frames: usize,
    /// Maximum requests in flight (AISBench `batch_size`).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Requests per second, Poisson arrivals rescaled like AISBench; < 0.001 = no pacing.
    #[arg(long, default_value_t = 0.0)]
    pub request_rate: f64,
    /// Gamma shape of the arrival gaps: 1 = Poisson, 0 = evenly spaced.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Measured requests (default: the dataset size; more cycles through the dataset).
    #[arg(long)]
    pub num_requests: Option<usize>,
    /// Warm-up requests, excluded from all numbers (AISBench `--num-warmups`).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// `max_tokens` per request (AISBench `max_out_len`).
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 0.01)]
    pub temperature: f64,
    #[arg(long)]
    pub ignore_eos: bool,
    /// Seed of the arrival-time RNG.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Attempts per request on connection errors or malformed responses (AISBench `retry`).
    #[arg(long, default_value_t = 2)]
    pub retry: u32,
    /// Per-request timeout in seconds (default: none, like AISBench).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Bearer token.
    #[arg(long)]
    pub api_key: Option<String>,
    /// tokenizer.json for output token counts when the server reports no usage; with
    /// --in-process, also the pipeline's tokenizer when the checkpoint has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Statistics columns (Average, Min, Max, Median, P1..P99; at most 8).
    #[arg(long, value_delimiter = ',')]
    pub stats: Vec<String>,
    /// Where the report files go.
    #[arg(long, default_value = "bench-results")]
    pub output_dir: PathBuf,
    /// Run name (file stem); default `<api>-c<concurrency>-<UTC time>`.
    #[arg(long)]
    pub name: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print two reports side by side with B/A ratios, then exit.
    #[arg(long, num_args = 2, value_names = ["A_JSON", "B_JSON"])]
    pub compare: Option<Vec<PathBuf>>,
}

fn stats(names: &[String]) -> Result<Vec<Stat>> {
    if names.is_empty() {
        return Ok(default_stats());
    }
    if names.len() > 8 {
        bail!("--stats takes at most 8 statistics");
    }
    names
        .iter()
        .map(|s| {
            Stat::parse(s.trim()).with_context(|| {
                format!("unknown statistic {s:?} (Average, Min, Max, Median, P1..P99)")
            })
        })
        .collect()
}

/// Maps the command line to a run configuration.
pub fn config(a: &BenchArgs) -> Result<BenchConfig> {
    let dataset = a.dataset.clone().context("--dataset is required")?;
    if a.burstiness.is_nan() || a.burstiness < 0.0 {
        bail!("--burstiness must be >= 0");
    }
    if let Some(t) = a.timeout {
        if t.is_nan() || t <= 0.0 {
            bail!("--timeout must be positive");
        }
    }
    let target = if a.in_process {
        let dir = a
            .model
            .clone()
            .context("--in-process needs --model <checkpoint dir>")?;
        let file = match &a.server_config {
            Some(path) => {
                let (s, note) = Settings::from_mindie_file(path).map_err(anyhow::Error::msg)?;
                if let (Some(n), false) = (note, a.quiet) {
                    eprintln!("{n}");
                }
                s
            }
            None => Settings::default(),
        };
        let flags = Settings {
            model_dir: Some(PathBuf::from(dir)),
            tokenizer: a.tokenizer.clone(),
            model: a.model_args,
            ..Default::default()
        };
        Target::InProcess {
            settings: Box::new(flags.over(file)),
        }
    } else {
        let base_url = a
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", a.host, a.port));
        Target::Http {
            kind: a.api,
            base_url,
            api_key: a.api_key.clone(),
            attempts: a.retry.max(1),
            timeout: a.timeout.map(Duration::from_secs_f64),
        }
    };
    Ok(BenchConfig {
        dataset,
        dataset_format: a.dataset_format,
        mode: a.mode,
        target,
        model: if a.in_process { None } else { a.model.clone() },
        media: a.media,
        num_frames: a.num_frames,
        load: LoadConfig {
            concurrency: a.concurrency,
            request_rate: a.request_rate,
            burstiness: a.burstiness,
            seed: a.seed,
        },
        num_requests: a.num_requests,
        warmup: a.warmup,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        ignore_eos: a.ignore_eos,
        stream: !a.no_stream,
        stats: stats(&a.stats)?,
        output_dir: a.output_dir.clone(),
        name: a.name.clone(),
        tokenizer: a.tokenizer.clone(),
        progress: !a.quiet,
    })
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if let Some(files) = &a.compare {
        let [fa, fb] = files.as_slice() else {
            bail!("--compare takes two report files");
        };
        let ra = Report::read(fa)?;
        let rb = Report::read(fb)?;
        print!("{}", compare_text(&ra, &rb));
        return Ok(());
    }
    let cfg = config(a)?;
    if a.in_process {
        a.model_args.install()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = rt.block_on(run_bench(&cfg))?;
    print!("{}", outcome.text);
    Ok(())
}
