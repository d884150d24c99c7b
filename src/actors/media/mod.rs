//! Stage 1 — media: fetch http(s) media, then validate, tokenize (with the processor), decode
//! and preprocess images and video frames, hash visual content, resolve sampling.
//!
//! Fetching is network waiting, not work: it happens first, asynchronously, under the request's
//! media deadline and without a preprocessing slot, so a URL that never answers delays only its
//! own request. The CPU work then runs on tokio's blocking pool in one of two lanes of `workers`
//! slots each: requests with images/videos, and text-only ones, so a chat without media never
//! queues behind image decoding. The pipeline's admission limit bounds how many requests are
//! here at all.

pub mod prepare;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::Semaphore;

use crate::actors::error::RequestError;
use crate::actors::llm::{Admit, LlmActor};
use crate::actors::request::{Request, RequestInput};
use crate::actors::stream::{Fail, StreamActor};
use crate::actors::vision::{Encode, VisionActor};
pub use prepare::{Limits, MediaContext, Prefetched, Truncation};

/// Submit a new request to the pipeline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit(pub Request);

pub struct MediaActor {
    ctx: Arc<MediaContext>,
    /// Preprocessing slots for requests with images/videos.
    permits: Arc<Semaphore>,
    /// Slots for text-only requests (tokenizing only).
    text_permits: Arc<Semaphore>,
    mailbox: usize,
    vision: Addr<VisionActor>,
    llm: Addr<LlmActor>,
    stream: Addr<StreamActor>,
    /// Send visual requests to the vision stage (overlap) or straight to the LLM stage, which
    /// then encodes them inline.
    overlap_vision: bool,
}

impl MediaActor {
    pub fn new(
        ctx: Arc<MediaContext>,
        workers: usize,
        mailbox: usize,
        vision: Addr<VisionActor>,
        llm: Addr<LlmActor>,
        stream: Addr<StreamActor>,
        overlap_vision: bool,
    ) -> Self {
        MediaActor {
            ctx,
            permits: Arc::new(Semaphore::new(workers.max(1))),
            text_permits: Arc::new(Semaphore::new(workers.max(1))),
            mailbox,
            vision,
            llm,
            stream,
            overlap_vision,
        }
    }
}

impl Actor for MediaActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<Submit> for MediaActor {
    type Result = ();

    fn handle(&mut self, Submit(req): Submit, _: &mut Context<Self>) {
        let ctx = self.ctx.clone();
        let has_media = has_media(&req.input);
        let permits = if has_media {
            self.permits.clone()
        } else {
            self.text_permits.clone()
        };
        let (vision, llm, stream) = (self.vision.clone(), self.llm.clone(), self.stream.clone());
        let overlap = self.overlap_vision;
        // Stage span (debug): `RUST_LOG=qwen3vl::actors=debug` shows each request's media
        // stage; the pipeline logs which HTTP request a pipeline id belongs to.
        let span = tracing::debug_span!("media", request = req.id);
        let work = async move {
            let id = req.id;
            let cancel = req.cancel.clone();
            let fetched = match prefetch(&ctx, &req.input).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = stream.send(Fail(id, e)).await;
                    return;
                }
            };
            if cancel.is_cancelled() {
                return;
            }
            let Ok(permit) = permits.acquire_owned().await else {
                return;
            };
            let span = tracing::Span::current();
            let prepared = tokio::task::spawn_blocking(move || {
                let _in = span.enter();
                let t = std::time::Instant::now();
                let r = ctx.prepare_with(req, fetched);
                let ms = t.elapsed().as_secs_f64() * 1e3;
                match &r {
                    Ok(p) => tracing::debug!(ms, visuals = p.visuals.len(), "prepared"),
                    Err(e) => tracing::debug!(ms, error = %e, "refused"),
                }
                r
            })
            .await;
            let prepared = match prepared {
                Ok(r) => r,
                Err(_) => Err(RequestError::Media("preprocessing panicked".into())),
            };
            match prepared {
                _ if cancel.is_cancelled() => {}
                Ok(p) => {
                    let p = Box::new(p);
                    let sent = if overlap && !p.visuals.is_empty() {
                        vision.send(Encode(p)).await
                    } else {
                        llm.send(Admit(p)).await
                    };
                    if sent.is_err() {
                        let _ = stream.send(Fail(id, RequestError::Shutdown)).await;
                    }
                }
                Err(e) => {
                    let _ = stream.send(Fail(id, e)).await;
                }
            }
            // The slot returns once the next stage has accepted the request.
            drop(permit);
        };
        actix::spawn(tracing::Instrument::instrument(work, span));
    }
}

fn has_media(input: &RequestInput) -> bool {
    match input {
        RequestInput::Chat(messages, _) => crate::service::state::media_count(messages) > 0,
        RequestInput::Tokens(mm) => !mm.image_grid_thw.is_empty() || !mm.video_grid_thw.is_empty(),
    }
}

/// Downloads a chat request's http(s) media, all items at once, within the media deadline.
async fn prefetch(ctx: &MediaContext, input: &RequestInput) -> Result<Prefetched, RequestError> {
    let (RequestInput::Chat(messages, _), Some(processor)) = (input, &ctx.processor) else {
        return Ok(None);
    };
    let urls = crate::prompt::messages::http_sources(messages);
    if urls.is_empty() {
        return Ok(None);
    }
    let limits = processor.limits().clone();
    let fetches = urls.iter().map(|(index, url)| {
        let limits = &limits;
        async move {
            crate::media::net::fetch(url, limits)
                .await
                .map(|bytes| (url.clone(), Arc::<[u8]>::from(bytes)))
                .map_err(|e| (*index, e))
        }
    });
    let all = futures::future::join_all(fetches);
    let results = tokio::time::timeout(limits.media_deadline, all)
        .await
        .map_err(|_| {
            let e = crate::media::MediaError::Deadline(limits.media_deadline);
            RequestError::Media(e.to_string())
        })?;
    let mut map = HashMap::new();
    for r in results {
        match r {
            Ok((url, bytes)) => {
                map.insert(url, bytes);
            }
            Err((index, e)) => {
                // The caller gets the safe message; the details (host, address, client error)
                // are for the operator.
                tracing::warn!(index, detail = ?e, "media fetch refused");
                return Err(RequestError::Media(format!("media item {index}: {e}")));
            }
        }
    }
    Ok(Some(Arc::new(map)))
}
