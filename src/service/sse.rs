//! Response framing: JSON bodies (`Connection: close`, as MindIE), SSE `data: …\n\n` frames,
//! vLLM's NUL-terminated JSON objects, and the streaming response around a generation.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::Stream;
use serde_json::Value;

use actix_web::ResponseError;

use super::errors::ApiError;

/// `data: <json>\n\n`.
pub fn data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// `data: <json>\n\n` of a typed wire value.
pub fn data_of<T: serde::Serialize>(v: &T) -> Bytes {
    let json = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    Bytes::from(format!("data: {json}\n\n"))
}

/// The OpenAI terminator.
pub fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// vLLM `/generate` streaming: `<json>\0`, no `data:` prefix.
pub fn nul<T: serde::Serialize>(v: &T) -> Bytes {
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\0');
    Bytes::from(s)
}

/// An error inside a stream that has already started (the status line is gone).
pub fn error_frame(e: &ApiError) -> Bytes {
    data_of(&e.wire())
}

/// A non-stream JSON response.
pub fn json(v: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONNECTION, "close"))
        .content_type("application/json")
        .body(v.to_string())
}

/// A non-stream JSON response of a typed wire value.
pub fn json_of<T: serde::Serialize>(v: &T) -> HttpResponse {
    match serde_json::to_string(v) {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CONNECTION, "close"))
            .content_type("application/json")
            .body(body),
        Err(e) => ApiError::incomplete(format!("serializing the response: {e}")).error_response(),
    }
}

/// A chunked `text/event-stream` response; dropping the body (client gone) drops the stream.
pub fn stream(body: impl Stream<Item = Result<Bytes, Infallible>> + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tell reverse proxies not to buffer the frames.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
