//! Stage 1 — media: validate, tokenize (with the processor), decode and preprocess images and
//! video frames, hash visual content, resolve sampling. The work runs on tokio's blocking pool;
//! at most `workers` requests are in flight, so when they are all busy the handler stops taking
//! messages, the bounded mailbox fills and submitters wait.

pub mod prepare;

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::Semaphore;

use crate::actors::error::RequestError;
use crate::actors::llm::{Admit, LlmActor};
use crate::actors::request::Request;
use crate::actors::stream::{Fail, StreamActor};
use crate::actors::vision::{Encode, VisionActor};
pub use prepare::{Limits, MediaContext, Truncation};

/// Submit a new request to the pipeline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit(pub Request);

pub struct MediaActor {
    ctx: Arc<MediaContext>,
    permits: Arc<Semaphore>,
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
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, Submit(req): Submit, _: &mut Context<Self>) -> Self::Result {
        let permits = self.permits.clone();
        let ctx = self.ctx.clone();
        let (vision, llm, stream) = (self.vision.clone(), self.llm.clone(), self.stream.clone());
        let overlap = self.overlap_vision;
        // Wait (atomically: no other message is taken meanwhile) for a free worker, then let
        // the job run detached; the permit returns once the next stage has accepted it.
        AtomicResponse::new(Box::pin(
            async move {
                let Ok(permit) = permits.acquire_owned().await else {
                    return;
                };
                actix::spawn(async move {
                    let id = req.id;
                    let cancel = req.cancel.clone();
                    let prepared = tokio::task::spawn_blocking(move || ctx.prepare(req)).await;
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
                    drop(permit);
                });
            }
            .into_actor(self),
        ))
    }
}
