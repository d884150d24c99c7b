//! Stages 3 + 4 — prefill and decode: the LLM scheduler ([`scheduler`]), the model runner
//! ([`runner`]) and the engine thread that owns both ([`worker`]; named so that it is not
//! confused with `crate::engine`, the model). [`LlmActor`] is the stage's
//! bounded mailbox in front of the engine thread's bounded channel.

pub mod runner;
pub mod scheduler;
pub mod sequence;
pub mod worker;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::actors::request::PreparedRequest;
use worker::LlmCommand;

/// A prepared (and, in overlap mode, vision-encoded) request for the scheduler.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Admit(pub Box<PreparedRequest>);

pub struct LlmActor {
    tx: mpsc::Sender<LlmCommand>,
    mailbox: usize,
}

impl LlmActor {
    pub fn new(tx: mpsc::Sender<LlmCommand>, mailbox: usize) -> Self {
        LlmActor { tx, mailbox }
    }
}

impl Actor for LlmActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl Handler<Admit> for LlmActor {
    type Result = AtomicResponse<Self, Result<(), ()>>;

    fn handle(&mut self, Admit(req): Admit, _: &mut Context<Self>) -> Self::Result {
        let tx = self.tx.clone();
        // Atomic: while the engine's channel is full this actor takes no further messages.
        AtomicResponse::new(Box::pin(
            async move { tx.send(LlmCommand::Admit(req)).await.map_err(|_| ()) }.into_actor(self),
        ))
    }
}
