//! Model metadata: `GET /v1/models` and `GET /v1/models/{model}` (OpenAI, as MindIE writes
//! them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /v1/models`. MindIE writes it with nlohmann::json (keys sorted, four-space indent):
/// fields are declared in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelList {
    pub data: Vec<ModelCard>,
    pub object: String,
}

/// One served model in the list; `root` is the weights folder with all but its last
/// component masked (`***/name`), `parent` the string `"null"` as in MindIE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelCard {
    pub id: String,
    pub object: String,
    pub owned_by: String,
    pub parent: String,
    pub root: String,
}

/// `GET /v1/models/{model}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

/// TGI `GET /info`, with MindIE's values (fields it does not fill are `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TgiInfo {
    pub docker_label: Option<String>,
    pub max_batch_total_tokens: usize,
    pub max_best_of: usize,
    pub max_concurrent_requests: usize,
    pub max_stop_sequences: Option<usize>,
    pub max_waiting_tokens: Option<usize>,
    pub sha: Option<String>,
    pub validation_workers: Option<usize>,
    pub version: String,
    pub waiting_served_ratio: Option<String>,
    pub models: Vec<TgiModelInfo>,
    pub max_input_length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TgiModelInfo {
    pub model_device_type: String,
    pub model_dtype: String,
    pub model_id: String,
    pub model_pipeline_tag: String,
    pub model_sha: Option<String>,
    pub max_total_tokens: usize,
}

/// Triton `GET /v2`: server metadata with MindIE's scheduler extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TritonServer {
    pub name: String,
    pub version: String,
    pub extensions: TritonExtensions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TritonExtensions {
    pub max_iter_times: usize,
    pub prefill_policy_type: u32,
    pub decode_policy_type: u32,
    pub max_prefill_batch_size: usize,
    pub max_prefill_tokens: usize,
}

/// Triton `GET /v2/models/{model}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TritonModel {
    pub name: String,
    pub platform: String,
    pub inputs: Vec<TritonTensor>,
    pub outputs: Vec<TritonTensor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TritonTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
}
