//! The public API for embedding the serving pipeline.
//!
//! ```no_run
//! use futures::StreamExt;
//! use qwen3vl::pipeline::{Event, Pipeline, SamplingParams};
//! # async fn demo(input: qwen3vl::engine::MultimodalInput) -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::builder().model("/models/Qwen3-VL-2B-Instruct").build()?;
//! let mut events = pipeline.generate(input, SamplingParams::greedy().with_max_tokens(32));
//! while let Some(ev) = events.next().await {
//!     if let Event::Delta { token_ids, .. } = ev {
//!         println!("{token_ids:?}");
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! A pipeline owns an actix system on its own thread (the stage actors), an engine thread (the
//! scheduler and model runner) and a vision thread. Dropping it stops them.

mod builder;
mod events;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use actix::Addr;
use tokio::sync::mpsc;

use crate::actors::llm::worker::EngineStats;
use crate::actors::media::{MediaActor, Submit};
use crate::actors::request::{CancelFlag, Request, RequestInput};
use crate::actors::stream::{Register, StreamActor};
use crate::engine::{MultimodalInput, Qwen3VlModel};
use crate::media::MediaOverrides;

pub use crate::actors::error::RequestError;
pub use crate::actors::llm::draft::SpeculativeConfig;
pub use crate::actors::media::Truncation;
pub use crate::actors::request::{FinishReason, Timings, Usage};
pub use crate::actors::stream::{Detokenize, DetokenizerFactory, Event, TokenLogprob};
pub use crate::actors::vision::VisionSharing;
pub use crate::engine::sampling::SamplingParams;
pub use crate::media::MediaLimits;
pub use crate::prompt::{ChatMessage, Processor};
pub use builder::{KvCacheSize, PipelineBuilder, PipelineError, ScheduleConfig};
pub use events::{ChoiceOutput, Completion, EventStream};

/// The running pipeline. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Pipeline {
    model: Arc<Qwen3VlModel>,
    media: Addr<MediaActor>,
    stream: Addr<StreamActor>,
    stats: Arc<EngineStats>,
    next_id: AtomicU64,
    max_iter_times: usize,
    has_processor: bool,
    max_in_flight: usize,
    shutdown: Arc<AtomicBool>,
    /// Requests inside the pipeline (submitted, not yet finished or dropped). Actix gives every
    /// concurrent sender one message beyond a mailbox's capacity, so the door needs its own
    /// bound: a burst of submitters waits here.
    admission: Arc<tokio::sync::Semaphore>,
    system: actix::System,
    threads: Vec<JoinHandle<()>>,
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    pub total_blocks: usize,
    pub free_blocks: usize,
    pub running: usize,
    pub waiting: usize,
    pub steps: u64,
    pub preemptions: u64,
    pub generated_tokens: u64,
    /// Speculative decoding: draft tokens verified, and how many were accepted.
    pub drafted_tokens: u64,
    pub accepted_tokens: u64,
    /// Requests currently inside the pipeline (≤ the builder's `max_in_flight`).
    pub admitted: usize,
}

impl Pipeline {
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    pub fn model(&self) -> &Qwen3VlModel {
        &self.model
    }

    pub fn stats(&self) -> PipelineStats {
        let s = &self.stats;
        PipelineStats {
            total_blocks: s.total_blocks.load(Ordering::Relaxed),
            free_blocks: s.free_blocks.load(Ordering::Relaxed),
            running: s.running.load(Ordering::Relaxed),
            waiting: s.waiting.load(Ordering::Relaxed),
            steps: s.steps.load(Ordering::Relaxed),
            preemptions: s.preemptions.load(Ordering::Relaxed),
            generated_tokens: s.generated_tokens.load(Ordering::Relaxed),
            drafted_tokens: s.drafted_tokens.load(Ordering::Relaxed),
            accepted_tokens: s.accepted_tokens.load(Ordering::Relaxed),
            admitted: self.max_in_flight - self.admission.available_permits(),
        }
    }

    /// Generate from a tokenized prompt with preprocessed pixels. The returned stream is lazy:
    /// the request enters the pipeline when it is first polled (waiting for mailbox room, so
    /// a burst of submissions is held back at the door). Dropping it cancels the request.
    pub fn generate(&self, input: MultimodalInput, params: SamplingParams) -> EventStream {
        self.submit(RequestInput::Tokens(input), params)
    }

    /// [`Pipeline::generate`], waiting for the whole result.
    pub fn generate_blocking(
        &self,
        input: MultimodalInput,
        params: SamplingParams,
    ) -> Result<Completion, RequestError> {
        self.generate(input, params).collect_blocking()
    }

    /// Generate a reply to OpenAI-style chat messages (text, `image_url`, `video_url` parts):
    /// the media stage renders the chat template, loads and preprocesses media, tokenizes; the
    /// stream carries text deltas. Needs a tokenizer (see [`PipelineBuilder::tokenizer`]).
    pub fn chat(&self, messages: Vec<ChatMessage>, params: SamplingParams) -> EventStream {
        self.chat_with_media(messages, params, MediaOverrides::default())
    }

    /// [`Pipeline::chat`] with per-request processor settings (vLLM's `mm_processor_kwargs`:
    /// pixel budget, frame sampling), layered over the pipeline's defaults and capped by its
    /// `MediaCaps`.
    pub fn chat_with_media(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        media: MediaOverrides,
    ) -> EventStream {
        self.submit(RequestInput::Chat(messages, media), params)
    }

    /// [`Pipeline::chat`], waiting for the whole reply.
    pub fn chat_blocking(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
    ) -> Result<Completion, RequestError> {
        self.chat(messages, params).collect_blocking()
    }

    /// Whether chat requests are possible (a tokenizer was found).
    pub fn has_processor(&self) -> bool {
        self.has_processor
    }

    fn submit(&self, input: RequestInput, params: SamplingParams) -> EventStream {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let n = params.n.unwrap_or(1).max(1);
        let cancel = CancelFlag::default();
        let stops: Vec<CancelFlag> = (0..n).map(|_| CancelFlag::default()).collect();
        // Every token yields at most one event per choice, plus the final ones: the channel
        // never fills, and its size is bounded by the request's own output.
        let max_tokens = params.max_tokens.unwrap_or(self.max_iter_times);
        let (tx, rx) = mpsc::channel((max_tokens.min(self.max_iter_times) + 3) * n + 1);
        let register = Register {
            id,
            sink: tx,
            cancel: cancel.clone(),
            stops: stops.clone(),
            stop_strings: params.stop.clone(),
            include_stop: params.include_stop_str_in_output,
            skip_special_tokens: params.skip_special_tokens.unwrap_or(true),
        };
        // Inside the caller's span (the HTTP request's): links it to the pipeline's id.
        tracing::debug!(request = id, "submitted to the pipeline");
        let request = Request {
            id,
            input,
            params,
            arrival: Instant::now(),
            cancel: cancel.clone(),
            stops,
        };
        let (stream, media) = (self.stream.clone(), self.media.clone());
        let admission = self.admission.clone();
        let submit = async move {
            let permit = admission
                .acquire_owned()
                .await
                .map_err(|_| RequestError::Shutdown)?;
            stream
                .send(register)
                .await
                .map_err(|_| RequestError::Shutdown)?;
            media
                .send(Submit(request))
                .await
                .map_err(|_| RequestError::Shutdown)?;
            Ok(permit)
        };
        EventStream::new(Box::pin(submit), rx, cancel, n)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        self.admission.close();
        self.system.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
