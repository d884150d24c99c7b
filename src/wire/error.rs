//! MindIE's error body, written by every route (and inside streams that already started).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{"error": "...", "error_type": "..."}`; `error_type` follows the status code
/// (`Input Validation Error` for 413/422, `NotFoundError`, `Generation Error`,
/// `Incomplete Generation`, `Service Unavailable`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    pub error_type: String,
}
