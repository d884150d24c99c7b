//! MindIE's native `POST /infer` (and `/infer_token`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The request as the bench sends it (the server reads every TGI parameter and `input_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferRequest {
    /// A string or a list of content parts.
    pub inputs: serde_json::Value,
    pub stream: bool,
    pub parameters: InferParameters,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<bool>,
}

/// `details` of a finished request; `generated_token_ids` only in non-stream answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferDetails {
    /// `length`, `eos_token` or `stop_sequence`.
    pub finish_reason: String,
    pub generated_tokens: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_token_ids: Option<Vec<u32>>,
    pub seed: u64,
}

/// A non-stream answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Inferred {
    pub generated_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<InferDetails>,
}

/// A stream frame's token ids and their text (`null` in the last frame, which carries the
/// whole text instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferToken {
    pub id: Vec<u32>,
    pub text: Option<String>,
}

/// One `data:` event of a streaming `/infer`: timings in milliseconds (prefill on the first
/// frame, decode since the previous one on later frames), then the token; the last frame has
/// `generated_text` and `details` (`null` unless asked for) before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferFrame {
    pub prefill_time: Option<u64>,
    pub decode_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_text: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::present_or_null"
    )]
    #[schemars(with = "Option<InferDetails>")]
    pub details: Option<Option<InferDetails>>,
    pub token: InferToken,
}

/// `POST /v1/tokenizer`: the token count and the ids (or, with `do_decode`, each token's text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tokenized {
    pub token_number: usize,
    pub tokens: TokenList,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TokenList {
    Ids(Vec<u32>),
    Texts(Vec<String>),
}

/// `GET /metrics-json`: MindIE's averages as a Prometheus-style vector (values are strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MetricsJson {
    #[serde(rename = "resultType")]
    pub result_type: String,
    pub result: Vec<MetricSample>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MetricSample {
    pub metric: Vec<MetricLabels>,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MetricLabels {
    #[serde(rename = "__name__")]
    pub name: String,
    pub job: String,
    pub instance: String,
}
