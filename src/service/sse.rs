//! Response framing: JSON bodies (`Connection: close`, as MindIE), SSE `data: …\n\n` frames,
//! vLLM's NUL-terminated JSON objects, and the streaming response around a generation.

use std::convert::Infallible;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures::Stream;

use actix_web::ResponseError;

use super::errors::ApiError;

/// A wire value as one line of JSON for a stream frame. The status line is already sent, so a
/// value that cannot be serialized becomes an error object in its place.
pub fn frame_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `data: <json>\n\n` of a typed wire value.
pub fn data_of<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(format!("data: {}\n\n", frame_json(v)))
}

/// The OpenAI terminator.
pub fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

/// vLLM `/generate` streaming: `<json>\0`, no `data:` prefix.
pub fn nul<T: serde::Serialize>(v: &T) -> Bytes {
    let mut s = frame_json(v);
    s.push('\0');
    Bytes::from(s)
}

/// An error inside a stream that has already started (the status line is gone).
pub fn error_frame(e: &ApiError) -> Bytes {
    data_of(&e.wire())
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
