//! Stage 5 — stream: incremental detokenization, stop strings, and delivery of events to each
//! request's channel. A stop string ends its choice here and raises the choice's stop flag, so
//! the engine frees the sequence's blocks at its next step. A client that went away (its
//! receiver dropped) gets its request cancelled the same way.

mod event;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::actors::error::RequestError;
use crate::actors::llm::scheduler::SeqUpdate;
use crate::actors::request::{CancelFlag, FinishReason, RequestId, Usage};
use crate::engine::sampling::{StopMatcher, StopResult};
use crate::prompt::{IncrementalDetokenizer, Tokenizer};
pub use event::{Event, TokenLogprob};

/// Token ids → text, one token at a time (the processor's incremental detokenizer).
pub trait Detokenize: Send {
    /// Text completed by this token (may be empty while bytes of a character are pending).
    fn push(&mut self, id: u32) -> String;
    /// Whatever is still pending at the end.
    fn flush(&mut self) -> String;
}

/// Makes a detokenizer per choice; the flag is `skip_special_tokens`.
pub type DetokenizerFactory = Arc<dyn Fn(bool) -> Box<dyn Detokenize> + Send + Sync>;

/// The production detokenizer: the processor's [`IncrementalDetokenizer`]. An id the tokenizer
/// cannot decode yields no text rather than an error: the token ids still reach the client.
impl Detokenize for IncrementalDetokenizer {
    fn push(&mut self, id: u32) -> String {
        IncrementalDetokenizer::push(self, id).unwrap_or_default()
    }

    fn flush(&mut self) -> String {
        IncrementalDetokenizer::flush(self).unwrap_or_default()
    }
}

/// A factory of [`IncrementalDetokenizer`]s over one shared tokenizer.
pub fn detokenizer_factory(tokenizer: Arc<Tokenizer>) -> DetokenizerFactory {
    Arc::new(move |skip| Box::new(IncrementalDetokenizer::new(tokenizer.clone(), skip)))
}

/// Start streaming a request: must arrive before the request enters the pipeline.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub id: RequestId,
    pub sink: mpsc::Sender<Event>,
    pub cancel: CancelFlag,
    pub stops: Vec<CancelFlag>,
    pub stop_strings: Vec<String>,
    pub include_stop: bool,
    pub skip_special_tokens: bool,
}

/// Sampled tokens and finished sequences of one engine step.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Vec<SeqUpdate>);

/// A stage failed this request.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Fail(pub RequestId, pub RequestError);

struct Choice {
    detok: Option<Box<dyn Detokenize>>,
    stop: StopMatcher,
    flag: CancelFlag,
    done: bool,
}

struct Stream {
    sink: mpsc::Sender<Event>,
    cancel: CancelFlag,
    choices: Vec<Choice>,
}

impl Stream {
    /// Send or, if the client is gone, cancel the request.
    fn emit(&mut self, ev: Event) {
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.sink.try_send(ev) {
            self.cancel.cancel();
        }
    }
}

pub struct StreamActor {
    streams: HashMap<RequestId, Stream>,
    detok: Option<DetokenizerFactory>,
    mailbox: usize,
}

impl StreamActor {
    pub fn new(detok: Option<DetokenizerFactory>, mailbox: usize) -> Self {
        StreamActor {
            streams: HashMap::new(),
            detok,
            mailbox,
        }
    }
}

impl Actor for StreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox);
        // A client that left before its request produced output (still in media, vision or
        // the engine's queue) is noticed here: cancel it and forget its stream.
        ctx.run_interval(std::time::Duration::from_millis(250), |act, _| {
            act.streams.retain(|_, s| {
                if s.sink.is_closed() {
                    s.cancel.cancel();
                    false
                } else {
                    true
                }
            });
        });
    }
}

impl Handler<Register> for StreamActor {
    type Result = ();

    fn handle(&mut self, r: Register, _: &mut Context<Self>) {
        let choices = r
            .stops
            .into_iter()
            .map(|flag| Choice {
                detok: self.detok.as_ref().map(|f| f(r.skip_special_tokens)),
                stop: StopMatcher::new(r.stop_strings.clone(), r.include_stop),
                flag,
                done: false,
            })
            .collect();
        self.streams.insert(
            r.id,
            Stream {
                sink: r.sink,
                cancel: r.cancel,
                choices,
            },
        );
    }
}

impl Handler<Fail> for StreamActor {
    type Result = ();

    fn handle(&mut self, Fail(id, err): Fail, _: &mut Context<Self>) {
        if let Some(mut s) = self.streams.remove(&id) {
            s.emit(Event::Error(err));
        }
    }
}

impl Handler<Deliver> for StreamActor {
    type Result = ();

    fn handle(&mut self, Deliver(updates): Deliver, _: &mut Context<Self>) {
        for u in updates {
            let id = u.request;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            deliver_one(s, u);
            if s.choices.iter().all(|c| c.done) || s.cancel.is_cancelled() {
                // Dropping the sender ends the client's stream.
                self.streams.remove(&id);
            }
        }
    }
}

fn deliver_one(s: &mut Stream, u: SeqUpdate) {
    let Some(c) = s.choices.get_mut(u.choice) else {
        return;
    };
    if c.done {
        return;
    }
    let usage = |completion| Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: completion,
        cached_tokens: u.cached_tokens,
        visual_tokens: u.visual_tokens,
    };
    let mut events = Vec::new();
    if let Some(sm) = &u.sampled {
        // A stop token ends the choice without contributing text.
        let stop_token = u.finish == Some(FinishReason::Stop);
        let piece = match (&mut c.detok, stop_token) {
            (Some(d), false) => d.push(sm.token),
            _ => String::new(),
        };
        let logprobs = sm
            .logprob
            .map(|lp| TokenLogprob {
                token: sm.token,
                logprob: lp,
                top: sm.top_logprobs.clone(),
            })
            .into_iter()
            .collect();
        match c.stop.push(&piece) {
            StopResult::Continue(text) => events.push(Event::Delta {
                choice: u.choice,
                text,
                token_ids: vec![sm.token],
                logprobs,
            }),
            StopResult::Stopped { text, stop } => {
                events.push(Event::Delta {
                    choice: u.choice,
                    text,
                    token_ids: vec![sm.token],
                    logprobs,
                });
                events.push(Event::Finished {
                    choice: u.choice,
                    reason: FinishReason::Stop,
                    stop: Some(stop),
                    usage: usage(u.completion_tokens),
                    timings: u.timings,
                });
                c.done = true;
                // The engine frees the sequence at its next step.
                c.flag.cancel();
            }
        }
    }
    if let (Some(reason), false) = (u.finish, c.done) {
        let mut tail = c.detok.as_mut().map(|d| d.flush()).unwrap_or_default();
        tail = match c.stop.push(&tail) {
            StopResult::Continue(t) => t + &c.stop.flush(),
            StopResult::Stopped { text, .. } => text,
        };
        if !tail.is_empty() {
            events.push(Event::Delta {
                choice: u.choice,
                text: tail,
                token_ids: Vec::new(),
                logprobs: Vec::new(),
            });
        }
        events.push(Event::Finished {
            choice: u.choice,
            reason,
            stop: None,
            usage: usage(u.completion_tokens),
            timings: u.timings,
        });
        c.done = true;
    }
    for ev in events {
        s.emit(ev);
    }
}
