//! `qwen3vl`: Qwen3-VL inference on CPUs.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qwen3vl",
    version,
    about = "Qwen3-VL inference engine for CPUs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` or `json` (one object per line), on stderr; filter with `RUST_LOG`
    /// (default `info`; `RUST_LOG=qwen3vl::request=info,warn` keeps only the request lines).
    #[arg(long, global = true, default_value = "text")]
    log_format: qwen3vl::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Full-prompt forward pass from a safetensors input file (logits, position ids, greedy tokens).
    Forward(cli::forward::ForwardArgs),
    /// Write a random-weight checkpoint with a released model's architecture.
    MakeCheckpoint(cli::make_checkpoint::MakeCheckpointArgs),
    /// Model-level benchmark: vision, time to first token, prefill, decode, peak RSS.
    BenchModel(cli::bench_model::BenchModelArgs),
    /// Save a float checkpoint as W8A8 int8 (msModelSlim W8A8_DYNAMIC folder layout).
    Quantize(cli::quantize::QuantizeArgs),
    /// Chat messages (text, images, videos) → input_ids + pixel values, as the HF processor does.
    Preprocess(cli::preprocess::PreprocessArgs),
    /// Serving benchmark (AISBench-compatible): perf, accuracy (--mode all) and --compare.
    Bench(Box<cli::bench::BenchArgs>),
    /// Pure model inference through the serving engine: a batch of requests, streamed output,
    /// TTFT, decode tok/s and throughput.
    Run(cli::run::RunArgs),
    /// HTTP server with MindIE Service's APIs (also vLLM, OpenAI and TGI clients).
    Serve(Box<cli::serve::ServeArgs>),
    /// The CPU, the kernel plan it gets (which kernel runs each family, on how many threads) and
    /// why each choice was made; the QWEN3VL_* variables that steer it.
    Env(cli::env::EnvArgs),
}

fn main() {
    let cli = Cli::parse();
    qwen3vl::logging::init(cli.log_format);
    let result = match &cli.command {
        Command::Forward(a) => cli::forward::run(a),
        Command::MakeCheckpoint(a) => cli::make_checkpoint::run(a),
        Command::BenchModel(a) => cli::bench_model::run(a),
        Command::Preprocess(a) => cli::preprocess::run(a),
        Command::Quantize(a) => cli::quantize::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Env(a) => cli::env::run(a),
    };
    if let Err(e) = result {
        // One clear line: the error and its causes.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
