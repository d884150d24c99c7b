//! `qwen3vl serve`: the HTTP server. Reads MindIE's `config.json` (`--config`) and/or flags;
//! flags win. Without a config file it serves plain HTTP on 127.0.0.1:1025.

use std::path::PathBuf;

use anyhow::Result;
use qwen3vl::pipeline::Truncation;
use qwen3vl::service::{Server, Settings};

use super::forward::{parse_backend, parse_precision, parse_quantization};
use super::kernel_args::KernelArgs;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// MindIE Service `config.json` (ServerConfig / BackendConfig / ModelDeployConfig /
    /// ScheduleConfig); settings without meaning on a CPU are accepted and reported once.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Checkpoint folder (config.json, safetensors, tokenizer.json, processor configs).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// tokenizer.json to use when the checkpoint has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Name clients must send as `model` (MindIE `modelName`; default "qwen3vl").
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Listen address (MindIE `ipAddress`; default 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port (MindIE `port`; default 1025; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Also listen here (MindIE `managementPort`).
    #[arg(long)]
    pub management_port: Option<u16>,
    /// Also listen here (MindIE `metricsPort`).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Local media (plain paths, file://) may be read only under this folder
    /// (default /data/multimodal_inputs, MindIE's).
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Refuse http(s):// media URLs.
    #[arg(long)]
    pub no_http_media: bool,
    /// Hosts whose media URLs may resolve to loopback, private or link-local addresses
    /// (comma-separated; subdomains match). Every other host must be public (SSRF policy).
    #[arg(long, value_delimiter = ',')]
    pub allowed_media_domains: Option<Vec<String>>,
    /// Seconds to open a connection for an http(s) media item (default 5).
    #[arg(long)]
    pub media_connect_timeout: Option<f64>,
    /// Longest silence, in seconds, inside an http(s) media response (default 10).
    #[arg(long)]
    pub media_read_timeout: Option<f64>,
    /// Seconds for the whole fetch of one http(s) media item, redirects included (default 30).
    #[arg(long)]
    pub media_fetch_timeout: Option<f64>,
    /// Seconds for all http(s) media of one request (default 60).
    #[arg(long)]
    pub media_deadline: Option<f64>,
    /// Seconds to read a whole request, headers and body (default 30).
    #[arg(long)]
    pub request_read_timeout: Option<f64>,
    /// Images + videos per request (default 20).
    #[arg(long)]
    pub max_media_items: Option<usize>,
    /// Processor settings for every request, as vLLM's flag: a JSON object with `size`,
    /// `min_pixels`, `max_pixels` (images), `total_pixels`, `fps`, `num_frames`, `min_frames`,
    /// `max_frames` (videos). Requests layer their own `mm_processor_kwargs` on top.
    #[arg(long, value_parser = parse_json_object)]
    pub mm_processor_kwargs: Option<serde_json::Value>,
    /// Most pixels an image may be resized to; requests may lower it, never raise it
    /// (default: the checkpoint's `size.longest_edge`).
    #[arg(long)]
    pub max_image_pixels: Option<u64>,
    /// Most frames sampled from one video; requests may lower it, never raise it.
    #[arg(long)]
    pub max_video_frames: Option<u32>,
    /// What transparent image areas become: white (vLLM, qwen-vl-utils; default), black, or
    /// drop (transformers' `load_image` keeps the colour under the alpha channel).
    #[arg(long, value_parser = parse_rgba_background)]
    pub rgba_background: Option<qwen3vl::media::RgbaBackground>,
    /// Prompt-injection guard: control-token text (`<|im_start|>`, `<|image_pad|>`, …) in
    /// user and tool message content is tokenized as plain text. Off by default: transformers
    /// and vLLM turn such text into the real control tokens.
    #[arg(long)]
    pub escape_user_special_tokens: bool,
    /// Largest request body and media item, in MB (MindIE `maxRequestLength`; default 40).
    #[arg(long)]
    pub max_request_length: Option<usize>,
    /// Requests processed at once (MindIE `maxLinkNum`; default 1000); twice as many queue,
    /// the rest get 503.
    #[arg(long)]
    pub max_link_num: Option<usize>,
    /// Prompt + output tokens (MindIE `maxSeqLen`; default 2560).
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Prompt tokens (MindIE `maxInputTokenLen`; default 2048).
    #[arg(long)]
    pub max_input_token_len: Option<usize>,
    /// Output cap and default max_tokens (MindIE `maxIterTimes`; default 512).
    #[arg(long)]
    pub max_iter_times: Option<usize>,
    /// Sequences decoded together (MindIE `maxBatchSize`; default 200).
    #[arg(long)]
    pub max_batch_size: Option<usize>,
    #[arg(long)]
    pub max_prefill_batch_size: Option<usize>,
    #[arg(long)]
    pub max_prefill_tokens: Option<usize>,
    /// SplitFuse: prefill prompts in chunks of N tokens alongside decode steps (MindIE
    /// `templateType: "Mix"`; default 0 = whole prompts).
    #[arg(long)]
    pub prefill_chunk: Option<usize>,
    /// Too-long prompts: error (default), left (keep the end) or right (keep the start).
    #[arg(long, value_parser = parse_truncation)]
    pub truncation: Option<Truncation>,
    /// Tokens per KV block (MindIE `cacheBlockSize`; default 128).
    #[arg(long)]
    pub block_size: Option<usize>,
    /// KV cache size in GiB (MindIE `npuMemSize`; default: half the free memory, capped at
    /// what maxBatchSize full sequences need).
    #[arg(long)]
    pub kv_cache_gib: Option<f64>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for the next token (MindIE `tokenTimeout`; default 600).
    #[arg(long)]
    pub token_timeout: Option<u64>,
    /// Seconds per request (MindIE `e2eTimeout`; default 600).
    #[arg(long)]
    pub e2e_timeout: Option<u64>,
    /// Seconds in-flight requests get after SIGTERM (default 30); those still running then end
    /// with a 503 / an error event naming the shutdown.
    #[arg(long)]
    pub shutdown_timeout: Option<u64>,
    /// HTTP worker threads (default: cores, at most 4).
    #[arg(long)]
    pub http_workers: Option<usize>,
    /// Requests preprocessed at once (MindIE `tokenizerProcessNumber`).
    #[arg(long)]
    pub media_workers: Option<usize>,
    /// Stream frames carry the whole text so far (MindIE `fullTextEnabled`).
    #[arg(long)]
    pub full_text: bool,
    /// Weight precision: bf16 (default), f16 or f32.
    #[arg(long, value_parser = parse_precision)]
    pub dtype: Option<qwen3vl::engine::Precision>,
    /// Kernel backend: auto (default), portable, onednn, fma, dot or amx.
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<qwen3vl::engine::BackendChoice>,
    /// Quantize on load: none (default) or w8a8.
    #[arg(long, value_parser = parse_quantization)]
    pub quantize: Option<qwen3vl::engine::Quantization>,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

pub(crate) fn parse_rgba_background(s: &str) -> Result<qwen3vl::media::RgbaBackground, String> {
    qwen3vl::media::RgbaBackground::parse(s)
        .ok_or_else(|| format!("unknown background `{s}` (white, black or drop)"))
}

fn parse_truncation(s: &str) -> Result<Truncation, String> {
    match s {
        "error" | "0" | "false" => Ok(Truncation::Error),
        "right" | "-1" | "true" => Ok(Truncation::Right),
        "left" | "1" => Ok(Truncation::Left),
        _ => Err(format!("unknown truncation `{s}` (error, left or right)")),
    }
}

impl ServeArgs {
    fn settings(&self) -> Settings {
        Settings {
            model_dir: self.model.clone(),
            tokenizer: self.tokenizer.clone(),
            served_model_name: self.served_model_name.clone(),
            host: self.host.clone(),
            port: self.port,
            management_port: self.management_port,
            metrics_port: self.metrics_port,
            max_link_num: self.max_link_num,
            max_request_mb: self.max_request_length,
            token_timeout_s: self.token_timeout,
            e2e_timeout_s: self.e2e_timeout,
            full_text: self.full_text.then_some(true),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            https: self.tls_cert.as_ref().map(|_| true),
            max_seq_len: self.max_seq_len,
            max_input_token_len: self.max_input_token_len,
            truncation: self.truncation,
            max_iter_times: self.max_iter_times,
            max_batch_size: self.max_batch_size,
            max_prefill_batch_size: self.max_prefill_batch_size,
            max_prefill_tokens: self.max_prefill_tokens,
            prefill_chunk: self.prefill_chunk,
            block_size: self.block_size,
            kv_cache_gib: self.kv_cache_gib,
            media_root: self.media_root.clone(),
            allow_http_media: self.no_http_media.then_some(false),
            max_media_items: self.max_media_items,
            mm_processor_kwargs: self.mm_processor_kwargs.clone(),
            max_image_pixels: self.max_image_pixels,
            max_video_frames: self.max_video_frames,
            rgba_background: self.rgba_background,
            escape_user_special_tokens: self.escape_user_special_tokens.then_some(true),
            media_workers: self.media_workers,
            http_workers: self.http_workers,
            shutdown_timeout_s: self.shutdown_timeout,
            allowed_media_domains: self.allowed_media_domains.clone(),
            media_connect_timeout_s: self.media_connect_timeout,
            media_read_timeout_s: self.media_read_timeout,
            media_fetch_timeout_s: self.media_fetch_timeout,
            media_deadline_s: self.media_deadline,
            request_read_timeout_s: self.request_read_timeout,
            ..Default::default()
        }
    }
}

pub fn run(args: &ServeArgs) -> Result<()> {
    args.kernels.install()?;
    let file = match &args.config {
        Some(path) => {
            let (s, note) = Settings::from_mindie_file(path).map_err(anyhow::Error::msg)?;
            if let Some(n) = note {
                tracing::warn!("{n}");
            }
            s
        }
        None => Settings::default(),
    };
    let mut config = args
        .settings()
        .over(file)
        .finish()
        .map_err(anyhow::Error::msg)?;
    if let Some(p) = args.dtype {
        config.load.precision = p;
    }
    if let Some(q) = args.quantize {
        config.load.quantization = q;
    }
    if let Some(b) = args.backend {
        config.load.backend = b;
    }
    let server = Server::start(config, true)?;
    server.wait()?;
    tracing::info!("stopped");
    Ok(())
}
