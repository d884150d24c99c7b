//! What a request's stream yields.

use crate::actors::error::RequestError;
use crate::actors::request::{FinishReason, Timings, Usage};

/// Log-probability of a sampled token and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New output of choice `choice` (0..n): text (empty without a tokenizer, or while a
    /// possible stop string is held back) and the token ids it came from.
    Delta {
        choice: usize,
        text: String,
        token_ids: Vec<u32>,
        logprobs: Vec<TokenLogprob>,
    },
    /// Choice `choice` is complete.
    Finished {
        choice: usize,
        reason: FinishReason,
        /// The stop string that ended it, if any.
        stop: Option<String>,
        usage: Usage,
        timings: Timings,
    },
    /// The request failed; no more events follow.
    Error(RequestError),
}
