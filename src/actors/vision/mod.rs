//! Stage 2 — vision: batches pending images and video items *across requests* and runs the
//! vision tower on its own thread, so it overlaps with the engine thread's decode steps. Both
//! threads share the cores: while sequences are decoding the tower runs single-threaded on the
//! vision thread and the decode steps keep the compute pool (see [`VisionSharing`]); each tower
//! pass is capped at `max_batch_patches`.

pub mod encode;
mod worker;

use actix::prelude::*;

use crate::actors::bridge::BridgeTx;
use crate::actors::request::PreparedRequest;
pub use worker::{spawn_vision_worker, VisionSharing};

/// A prepared request whose visual items need encoding.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Encode(pub Box<PreparedRequest>);

/// The stage's address: forwards to the vision thread's bridge (the stage's one queue).
pub struct VisionActor {
    tx: BridgeTx<Box<PreparedRequest>>,
}

impl VisionActor {
    pub fn new(tx: BridgeTx<Box<PreparedRequest>>) -> Self {
        VisionActor { tx }
    }
}

impl Actor for VisionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A hand-off slot: messages wait in the bridge, not here.
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<Encode> for VisionActor {
    type Result = AtomicResponse<Self, Result<(), ()>>;

    fn handle(&mut self, Encode(req): Encode, _: &mut Context<Self>) -> Self::Result {
        let tx = self.tx.clone();
        AtomicResponse::new(Box::pin(
            async move { tx.send(req).await.map_err(|_| ()) }.into_actor(self),
        ))
    }
}
