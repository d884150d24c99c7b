//! Stages 3 + 4 — prefill and decode. Each engine step is scheduler → plan → runner →
//! sampler → scheduler: the [`scheduler`] admits, preempts and writes a [`plan`] of what every
//! running sequence computes; the [`runner`] executes the plan as one batched model step; the
//! [`sample`] step draws the tokens; the scheduler applies them. The engine thread ([`worker`];
//! named so that it is not confused with `crate::engine`, the model) owns all of it, behind
//! its bounded [bridge](crate::actors::bridge) (the stage's queue); [`LlmActor`] is the
//! stage's address on the actor system.

pub mod draft;
pub mod memory;
pub mod plan;
pub mod runner;
pub mod sample;
pub mod scheduler;
pub mod sequence;
pub mod worker;

use actix::prelude::*;

use crate::actors::bridge::BridgeTx;
use crate::actors::request::PreparedRequest;
use worker::LlmCommand;

/// A prepared (and, in overlap mode, vision-encoded) request for the scheduler.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Admit(pub Box<PreparedRequest>);

/// The stage's address: forwards to the engine thread's bridge (the stage's one queue).
pub struct LlmActor {
    tx: BridgeTx<LlmCommand>,
}

impl LlmActor {
    pub fn new(tx: BridgeTx<LlmCommand>) -> Self {
        LlmActor { tx }
    }
}

impl Actor for LlmActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A hand-off slot: messages wait in the bridge, not here.
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<Admit> for LlmActor {
    type Result = AtomicResponse<Self, Result<(), ()>>;

    fn handle(&mut self, Admit(req): Admit, _: &mut Context<Self>) -> Self::Result {
        let tx = self.tx.clone();
        // Atomic: while the engine's queue is full this actor takes no further messages.
        AtomicResponse::new(Box::pin(
            async move { tx.send(LlmCommand::Admit(req)).await.map_err(|_| ()) }.into_actor(self),
        ))
    }
}
