//! MindIE's vLLM-compatible `POST /generate` (a body with `prompt`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The request as the bench sends it (the server reads more fields: every vLLM sampling
/// parameter, `mm_processor_kwargs`). `prompt` is a string or a list of content parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateRequest {
    pub prompt: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The whole answer and every stream frame (each frame ended by `\0`, no SSE framing): one
/// text per sequence. Non-stream: the prompt's first text item, a space, the generated text.
/// Stream: this frame's delta for the sequence that moved and `""` for the others (the whole
/// text so far with `fullTextEnabled`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateText {
    pub text: Vec<String>,
}
