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
