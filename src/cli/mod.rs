//! The `qwen3vl` binary's subcommands. They live in the library (not in `src/main.rs`) so that
//! they can use the engine's internals while the library's public surface stays narrow; the
//! module is public only for the binary and is not part of the documented API.

// Doc comments here are clap's help text (`[seq]` is a shape, not a link).
#![allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)]

pub mod bench;
pub mod bench_model;
pub mod env;
pub mod forward;
pub mod make_checkpoint;
pub mod preprocess;
pub mod quantize;
pub mod run;
pub mod serve;

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
    log_format: crate::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Full-prompt forward pass from a safetensors input file (logits, position ids, greedy tokens).
    Forward(forward::ForwardArgs),
    /// Write a random-weight checkpoint with a released model's architecture.
    MakeCheckpoint(make_checkpoint::MakeCheckpointArgs),
    /// Model-level benchmark: vision, time to first token, prefill, decode, peak RSS.
    BenchModel(bench_model::BenchModelArgs),
    /// Save a float checkpoint as W8A8 int8 (msModelSlim W8A8_DYNAMIC folder layout).
    Quantize(quantize::QuantizeArgs),
    /// Chat messages (text, images, videos) → input_ids + pixel values, as the HF processor does.
    Preprocess(preprocess::PreprocessArgs),
    /// Serving benchmark (AISBench-compatible): perf, accuracy (--mode all) and --compare.
    Bench(Box<bench::BenchArgs>),
    /// Pure model inference through the serving engine: a batch of requests, streamed output,
    /// TTFT, decode tok/s and throughput.
    Run(run::RunArgs),
    /// HTTP server with MindIE Service's APIs (also vLLM, OpenAI and TGI clients).
    Serve(Box<serve::ServeArgs>),
    /// The CPU, the kernel plan it gets (which kernel runs each family, on how many threads) and
    /// why each choice was made; the QWEN3VL_* variables that steer it.
    Env(env::EnvArgs),
}

/// Parse the command line and run the subcommand.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_)) {
        // Before any other thread exists (the log writer's included): glibc fixes its arena
        // limit when a second thread first allocates.
        crate::service::limit_malloc_arenas();
    }
    crate::logging::init(cli.log_format);
    match &cli.command {
        Command::Forward(a) => forward::run(a),
        Command::MakeCheckpoint(a) => make_checkpoint::run(a),
        Command::BenchModel(a) => bench_model::run(a),
        Command::Preprocess(a) => preprocess::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Run(a) => run::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Env(a) => env::run(a),
    }
}
