//! Text Generation Inference: `POST /generate` with `inputs`, `/generate_stream` and `/`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One generated token in non-stream `details.tokens` (MindIE reports no log-probabilities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DetailToken {
    pub id: u32,
    pub logprob: Option<f32>,
    pub special: Option<bool>,
    pub text: Option<String>,
}

/// `details` of a finished request. `prefill` and `tokens` only in non-stream answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Details {
    pub prompt_tokens: usize,
    /// `length`, `eos_token` or `stop_sequence`.
    pub finish_reason: String,
    pub generated_tokens: usize,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill: Option<Vec<DetailToken>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<DetailToken>>,
}

/// A non-stream answer (`/` wraps it in a one-element list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Generated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
    pub generated_text: String,
}

/// A stream frame's token: the ids this frame carries (MindIE sends a list) and their text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamToken {
    pub id: Vec<u32>,
    pub text: String,
    pub logprob: Option<f32>,
    pub special: Option<bool>,
}

/// One `data:` event of `/generate_stream`; the last carries the whole text and, when asked
/// for, the details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamFrame {
    pub token: StreamToken,
    pub generated_text: Option<String>,
    pub details: Option<Details>,
}
