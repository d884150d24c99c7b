//! Triton's generate extension: `POST /v2/models/{model}/generate[_stream]`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `details` on request: the finish reason once known (always in non-stream answers, on the
/// last frame of a stream), the tokens generated so far; MindIE's cost fields are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TritonDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    pub generated_tokens: usize,
    pub first_token_cost: Option<f64>,
    pub decode_cost: Option<f64>,
}

/// A non-stream answer and every stream event (`data:{json}`, no space); stream events add
/// the timings in milliseconds (`null` where there is none) (prefill on the first, decode since the previous later on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TritonOutput {
    pub id: String,
    pub model_name: String,
    pub model_version: Option<String>,
    pub text_output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<TritonDetails>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::present_or_null"
    )]
    #[schemars(with = "Option<u64>")]
    pub prefill_time: Option<Option<u64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::present_or_null"
    )]
    #[schemars(with = "Option<u64>")]
    pub decode_time: Option<Option<u64>>,
}
