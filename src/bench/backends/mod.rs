//! Request backends: the [`Backend`] trait, its HTTP implementations and the in-process one.
//!
//! A backend sends one request and fills a [`Recorder`]: `tp[0]` just before sending, one
//! time point per parsed stream event (or one after a non-stream body), the generated text
//! and the server's usage. The in-process backend ([`in_process`], the library `Pipeline`)
//! implements the same trait by marking one time point per generated token.

pub mod framing;
pub mod http;
pub mod in_process;
pub mod mindie_infer;
pub mod openai;
pub mod vllm_generate;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use super::dataset::{self, MediaMode, Part, Sample};
use super::record::{Clock, Recorder, RequestRecord};

/// A boxed future, so [`Backend`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Generation parameters sent with every request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenParams {
    /// `model` field (OpenAI: required by MindIE; `/generate`: LoRA id; unused by `/infer`).
    pub model: Option<String>,
    /// `max_tokens` (`max_new_tokens` for `/infer`); AISBench `max_out_len`.
    pub max_tokens: u32,
    pub temperature: f64,
    pub ignore_eos: bool,
    pub stream: bool,
}

/// One request to send: a dataset sample and how to encode its media. The content is built
/// by the backend before `tp[0]`, so file reads and base64 never count as latency.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    /// Position in the request sequence.
    pub index: usize,
    pub sample: Arc<Sample>,
    pub media: MediaMode,
    pub num_frames: usize,
}

impl BenchRequest {
    pub fn parts(&self) -> Result<Vec<Part>, String> {
        dataset::content(&self.sample, self.media, self.num_frames).map_err(|e| e.to_string())
    }

    /// A recorder for this request.
    pub fn recorder(&self, clock: Clock) -> Recorder {
        Recorder::new(
            clock,
            self.index,
            self.sample.id.clone(),
            !self.sample.paths.is_empty(),
        )
    }
}

/// Something that can run one benchmark request.
pub trait Backend: Send + Sync {
    /// Short name for reports ("openai-chat", "vllm-generate", ...).
    fn name(&self) -> String;
    /// Whether responses stream (TTFT/TPOT/ITL are meaningful).
    fn streaming(&self) -> bool;
    /// Sends one request and returns what happened; never panics, never errors: failures
    /// are recorded in the returned record.
    fn send<'a>(&'a self, req: &'a BenchRequest, clock: Clock) -> BoxFuture<'a, RequestRecord>;
}

/// The wire protocols `qwen3vl bench` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// `POST /v1/chat/completions` (AISBench `vllm_api_stream_chat` / `vllm_api_general_chat`).
    OpenaiChat,
    /// MindIE vLLM-flavour `POST /generate` (`prompt` list; NUL-delimited stream).
    VllmGenerate,
    /// MindIE native `POST /infer` (AISBench `MindieStreamApi`).
    MindieInfer,
}

impl BackendKind {
    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::OpenaiChat => "openai-chat",
            BackendKind::VllmGenerate => "vllm-generate",
            BackendKind::MindieInfer => "mindie-infer",
        }
    }
}

/// Builds an HTTP backend.
pub fn http_backend(
    kind: BackendKind,
    target: http::HttpTarget,
    params: GenParams,
) -> Arc<dyn Backend> {
    match kind {
        BackendKind::OpenaiChat => Arc::new(openai::OpenAiChat::new(target, params)),
        BackendKind::VllmGenerate => Arc::new(vllm_generate::VllmGenerate::new(target, params)),
        BackendKind::MindieInfer => Arc::new(mindie_infer::MindieInfer::new(target, params)),
    }
}
