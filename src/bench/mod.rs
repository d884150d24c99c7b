//! `qwen3vl bench`: an AISBench-compatible serving benchmark written in Rust.
//!
//! It measures a running server (ours, MindIE, vLLM or any OpenAI-compatible one), or the
//! library pipeline in-process, the way AISBench `--mode perf` / `--mode all` does
//! (`shared/spec/service-and-bench.md` §3), so the same numbers come out without a Python stack.
//!
//! * [`dataset`] — AISBench `mm_custom` JSONL and the TextVQA layout; request content.
//! * [`load`] — the load generator: concurrency limit, Poisson/gamma pacing, warm-up.
//! * [`backends`] — the [`backends::Backend`] trait and the HTTP clients (OpenAI chat,
//!   vLLM-flavour `/generate`, MindIE `/infer`), with their wire parsers; and the in-process
//!   backend that drives the library `Pipeline` directly.
//! * [`record`] — what one request leaves behind: time points, text, usage, error.
//! * [`metrics`] — the AISBench metric definitions as pure functions.
//! * [`vqa`] — the VQA answer normaliser and the TextVQA scorer.
//! * [`report`], [`plot`], [`compare`] — terminal table, JSON/CSV files, SVG plot, `--compare`.
//! * [`runner`] — one run from configuration to written files.
//! * [`tokens`] — fallback token counting with a `tokenizer.json` when a server gives no usage.

pub mod backends;
pub mod compare;
pub mod dataset;
pub mod load;
pub mod metrics;
pub mod plot;
pub mod record;
pub mod report;
pub mod runner;
pub mod tokens;
pub mod vqa;

/// Everything that can go wrong in the benchmark harness (other than a single request
/// failing, which is recorded in its [`record::RequestRecord`] instead).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Dataset {
        path: String,
        line: usize,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("HTTP client: {0}")]
    Http(String),
    #[error("report {path}: {message}")]
    Report { path: String, message: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },
    #[error("all {0} requests failed; no performance numbers can be computed")]
    AllFailed(usize),
    #[error("{0}")]
    RunFailed(String),
    #[error("in-process pipeline for {model_dir}: {message}")]
    Pipeline { model_dir: String, message: String },
}

impl BenchError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
