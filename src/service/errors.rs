//! MindIE's error body (`{"error": "...", "error_type": "..."}`) and its status codes
//! (`HttpRestResource::WrapperJson`, `g_exceptionInfo` in MindIE's `http_rest_resource.h`).

use crate::wire::error::ErrorBody;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::pipeline::RequestError;

/// An error answered to the client. Every handler returns these; nothing panics on bad input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 422: JSON parse failure, wrong types, out-of-range parameters, media and tokenizer
    /// failures (MindIE sends all of these as "Input Validation Error").
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 424: the request could not be turned into an inference request.
    pub fn generation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FAILED_DEPENDENCY, message)
    }
    /// 500: generation started but did not complete.
    pub fn incomplete(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// 503: stopping, or too many connections.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// MindIE's `error_type` for a status code.
    pub fn error_type(&self) -> &'static str {
        error_type(self.status)
    }

    /// The body, typed.
    pub fn wire(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            error_type: self.error_type().to_string(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.wire()).unwrap_or_default()
    }
}

pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request",
        404 => "NotFoundError",
        413 | 422 => "Input Validation Error",
        424 => "Generation Error",
        500 => "Incomplete Generation",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        // Inside the request's span (id, method, path): the operator sees why it was refused.
        tracing::warn!(status = self.status.as_u16(), error = %self.message, "request refused");
        // MindIE closes the connection after every non-stream response.
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may never come: do not wait to drain it.
            res.force_close();
        }
        res.insert_header((header::CONNECTION, "close"))
            .content_type("application/json")
            .body(serde_json::to_string(&self.wire()).unwrap_or_default())
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match &e {
            RequestError::Invalid(_)
            | RequestError::PromptTooLong { .. }
            | RequestError::PromptFarTooLong { .. }
            | RequestError::CacheTooSmall { .. }
            | RequestError::Sampling(_)
            | RequestError::Media(_) => ApiError::validation(e.to_string()),
            RequestError::Vision(_) | RequestError::Model(_) => ApiError::incomplete(e.to_string()),
            RequestError::Shutdown => ApiError::unavailable(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::validation(format!("invalid request body: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_follow_mindie() {
        let e = ApiError::validation("Model not found");
        assert_eq!(
            e.body(),
            json!({"error": "Model not found", "error_type": "Input Validation Error"})
        );
        assert_eq!(
            ApiError::unavailable("x").error_type(),
            "Service Unavailable"
        );
        assert_eq!(ApiError::generation("x").error_type(), "Generation Error");
        assert_eq!(
            ApiError::incomplete("x").error_type(),
            "Incomplete Generation"
        );
        let e: ApiError = RequestError::PromptTooLong { len: 9, max: 4 }.into();
        assert_eq!(e.status.as_u16(), 422);
        let e: ApiError = RequestError::Shutdown.into();
        assert_eq!(e.status.as_u16(), 503);
    }
}
