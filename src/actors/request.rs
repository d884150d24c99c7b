//! The plain data a request carries through the stages: media → vision → llm → stream.
//! Nothing here holds a thread, a lock or a model: stages pass these by value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::engine::model::{MultimodalInput, VisualFeatures};
use crate::engine::position::PositionIds;
use crate::engine::sampling::{ResolvedSampling, SamplingParams};
use crate::engine::vision::VisionOutput;

pub type RequestId = u64;

/// Why a choice stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// EOS, a stop token id or a stop string.
    Stop,
    /// max_tokens, maxIterTimes or maxSeqLen reached.
    Length,
    /// The client went away.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// Token counts of one choice (`prompt_tokens` includes the visual tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
    /// Prompt tokens that are image or video placeholders.
    pub visual_tokens: usize,
}

/// Wall-clock milestones of a request, in seconds since it was submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Media decode + preprocessing done.
    pub media_done: Option<f64>,
    /// Vision tower done (None without images/videos).
    pub vision_done: Option<f64>,
    /// First scheduled for prefill.
    pub scheduled: Option<f64>,
    /// Time to first token.
    pub first_token: Option<f64>,
    pub finished: Option<f64>,
    /// Times this choice was preempted (and recomputed).
    pub preemptions: u32,
}

/// Cancellation shared between the client's stream (sets it on drop) and every stage (checks
/// it before doing work; the LLM stage frees the blocks at the next step).
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the client submitted.
#[derive(Debug, Clone)]
pub enum RequestInput {
    /// Token ids with preprocessed pixels (the processor's output).
    Tokens(MultimodalInput),
    /// OpenAI-style chat messages (needs the processor), with the request's processor settings.
    Chat(
        Vec<crate::prompt::ChatMessage>,
        crate::media::MediaOverrides,
    ),
}

/// A request as it enters the pipeline.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: RequestId,
    pub input: RequestInput,
    pub params: SamplingParams,
    pub arrival: Instant,
    pub cancel: CancelFlag,
    /// One stop flag per choice (`n`), set by the stream stage when a stop string matches.
    pub stops: Vec<CancelFlag>,
}

/// One image or one temporal slice of a video, ready for the vision tower.
#[derive(Clone)]
pub struct VisualItem {
    pub grid: [usize; 3],
    pub pixels: Vec<f32>,
    /// Content hash (pixels + grid) for prefix caching.
    pub hash: u128,
    pub is_video: bool,
    /// Filled by the vision stage.
    pub output: Option<Arc<VisionOutput>>,
}

impl std::fmt::Debug for VisualItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisualItem")
            .field("grid", &self.grid)
            .field("is_video", &self.is_video)
            .field("encoded", &self.output.is_some())
            .finish()
    }
}

/// A tokenized, validated prompt with everything the LLM stage needs.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub positions: PositionIds,
    /// Prefix-cache key of every prompt token.
    pub keys: Vec<u64>,
    /// Set by the vision stage (None for text-only prompts).
    pub features: Option<Arc<VisualFeatures>>,
    /// How many of `ids` are image or video placeholders.
    pub visual_tokens: usize,
}

/// A request after the media stage: validated, limits applied, sampling resolved per choice.
#[derive(Debug)]
pub struct PreparedRequest {
    pub id: RequestId,
    pub prompt: Prompt,
    /// Images and video slices, in prompt order per kind (images first, then videos).
    pub visuals: Vec<VisualItem>,
    pub choices: Vec<ResolvedSampling>,
    pub max_new_tokens: usize,
    /// Drafts allowed (speculative decoding), unless the request opted out.
    pub speculative: bool,
    /// EOS ids (unless ignore_eos) and the request's stop_token_ids.
    pub stop_token_ids: Vec<u32>,
    pub arrival: Instant,
    pub cancel: CancelFlag,
    pub stops: Vec<CancelFlag>,
    pub timings: Timings,
}

impl PreparedRequest {
    pub fn since_arrival(&self) -> f64 {
        self.arrival.elapsed().as_secs_f64()
    }

    /// Visual items still waiting for the vision tower.
    pub fn pending_visuals(&self) -> usize {
        self.visuals.iter().filter(|v| v.output.is_none()).count()
    }
}
