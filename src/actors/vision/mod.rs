//! Stage 2 — vision: batches pending images and video items *across requests* and runs the
//! vision tower on its own thread, so it overlaps with the engine thread's decode steps. Both
//! threads share the cores: while sequences are decoding the tower runs single-threaded on the
//! vision thread and the decode steps keep the compute pool (see [`VisionSharing`]); each tower
//! pass is capped at `max_batch_patches`.

pub mod encode;
mod worker;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::actors::request::PreparedRequest;
pub use worker::{spawn_vision_worker, VisionSharing};

/// A prepared request whose visual items need encoding.
#[derive(Message)]
#[rtype(result = "Result<(), ()>")]
pub struct Encode(pub Box<PreparedRequest>);

pub struct VisionActor {
    tx: mpsc::Sender<Box<PreparedRequest>>,
    mailbox: usize,
}

impl VisionActor {
    pub fn new(tx: mpsc::Sender<Box<PreparedRequest>>, mailbox: usize) -> Self {
        VisionActor { tx, mailbox }
    }
}

impl Actor for VisionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox);
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
