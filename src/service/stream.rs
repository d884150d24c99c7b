//! The one streaming loop. Every streaming route hands its [`Generation`] and a [`Framing`]
//! (how that API writes a chunk, an error and the end) to [`respond`]; the loop, the failure
//! handling and the response headers live here once.

use std::convert::Infallible;

use actix_web::web::Bytes;
use actix_web::HttpResponse;

use super::errors::ApiError;
use super::generation::{Chunk, Failure, Generation};
use super::sse;

/// How one API writes a generation as a stream.
pub trait Framing: 'static {
    /// Frames for the next chunk of output (none to skip it: e.g. a choice other than the
    /// first on a single-choice API).
    fn chunk(&mut self, chunk: Chunk, g: &Generation) -> Vec<Bytes>;

    /// Frames after every choice has finished.
    fn end(&mut self, _g: &Generation) -> Vec<Bytes> {
        Vec::new()
    }

    /// An error after the status line has gone out (the stream ends after it).
    fn error(&self, e: &ApiError) -> Vec<Bytes>;
}

/// A `200 text/event-stream` response that drives `g` through `framing`.
///
/// A `tokenTimeout` / `e2eTimeout` ends every stream as MindIE ends it: the plain-text
/// "Engine callback timeout" message and nothing after it. Any other failure (an engine error,
/// the shutdown deadline) is framed by the API.
pub fn respond(mut g: Generation, mut framing: impl Framing) -> HttpResponse {
    let body = async_stream::stream! {
        while let Some(next) = g.next().await {
            let frames = match next {
                Ok(c) => framing.chunk(c, &g),
                Err(Failure::Timeout(m)) => {
                    yield Ok::<Bytes, Infallible>(Bytes::from(m));
                    return;
                }
                Err(f) => {
                    for b in framing.error(&f.into_api()) {
                        yield Ok(b);
                    }
                    return;
                }
            };
            for b in frames {
                yield Ok(b);
            }
        }
        for b in framing.end(&g) {
            yield Ok(b);
        }
    };
    sse::stream(body)
}
