//! OpenAI chat and completions responses and stream chunks, as the server writes them and as
//! the bench reads them from any OpenAI-compatible server. Reading is as forgiving as
//! AISBench's client: a missing field takes its default, and an optional field (or a list
//! element) of a shape we do not know reads as absent instead of failing the whole frame.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// `usage`; `prompt_tokens_details` only when the prompt had cached or visual tokens
/// (`visual_tokens`: image and video placeholders, part of `prompt_tokens`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl Usage {
    pub fn new(prompt: usize, completion: usize, cached: usize, visual: usize) -> Self {
        Usage {
            prompt_tokens: prompt as u64,
            completion_tokens: completion as u64,
            total_tokens: (prompt + completion) as u64,
            prompt_tokens_details: (cached > 0 || visual > 0).then_some(PromptTokensDetails {
                cached_tokens: cached as u64,
                visual_tokens: visual as u64,
            }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default)]
    pub visual_tokens: u64,
}

/// One token's log-probability in chat logprobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<Vec<TokenLogprob>>,
}

/// Chat `logprobs`: `{"content": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

/// The assistant's message in a non-streaming chat response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AssistantMessage {
    #[serde(default)]
    pub role: String,
    #[serde(default, deserialize_with = "tolerant")]
    pub content: Option<String>,
    /// Reasoning text of servers that separate it (read by the bench; not written here).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub reasoning_content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub reasoning: Option<String>,
    #[serde(default, deserialize_with = "tolerant_vec")]
    pub tool_calls: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatChoice {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub message: AssistantMessage,
    #[serde(default, deserialize_with = "tolerant")]
    pub logprobs: Option<ChatLogprobs>,
    #[serde(default, deserialize_with = "tolerant")]
    pub finish_reason: Option<String>,
}

/// `chat.completion`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default, deserialize_with = "tolerant_vec")]
    pub choices: Vec<ChatChoice>,
    #[serde(default, deserialize_with = "lenient_usage")]
    pub usage: Option<Usage>,
}

/// A chunk's `delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub reasoning_content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    pub reasoning: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default, deserialize_with = "tolerant")]
    pub logprobs: Option<ChatLogprobs>,
    #[serde(default, deserialize_with = "tolerant")]
    pub finish_reason: Option<String>,
}

/// `chat.completion.chunk`. `usage` is absent, `null` (other chunks under
/// `stream_options.include_usage`) or the usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_usage"
    )]
    pub usage: Option<Option<Usage>>,
    #[serde(default, deserialize_with = "tolerant_vec")]
    pub choices: Vec<ChunkChoice>,
}

/// Completions `logprobs`: parallel lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<serde_json::Map<String, serde_json::Value>>,
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompletionChoice {
    #[serde(default)]
    pub index: usize,
    #[serde(default)]
    pub text: String,
    #[serde(default, deserialize_with = "tolerant")]
    pub logprobs: Option<CompletionLogprobs>,
    /// vLLM: the stop string that matched, if any.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default, deserialize_with = "tolerant")]
    pub finish_reason: Option<String>,
}

/// `text_completion`, a whole response or a stream chunk (`usage` absent on chunks but the
/// last).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Completion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_usage"
    )]
    pub usage: Option<Usage>,
    #[serde(default, deserialize_with = "tolerant_vec")]
    pub choices: Vec<CompletionChoice>,
}

/// `usage` that may be `null`, `{}` or not an object (peers differ): anything but an object
/// reads as absent.
fn lenient_usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Usage>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            serde_json::from_value(serde_json::Value::Object(m)).ok()
        }
        _ => None,
    })
}

/// A present `usage` field: `Some(None)` for `null`, `Some(Some(u))` for an object.
fn present_usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Usage>>, D::Error> {
    lenient_usage(d).map(Some)
}

/// An optional field of an unknown shape reads as absent.
fn tolerant<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// A list that is not a list reads as empty; elements of an unknown shape are skipped.
fn tolerant_vec<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}
