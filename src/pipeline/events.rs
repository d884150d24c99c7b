//! The client side of a request: an event stream (async or blocking) and the collected result.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::Stream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{Event, FinishReason, RequestError, Timings, TokenLogprob, Usage};
use crate::actors::request::CancelFlag;

/// Events of one request. Implements [`Stream`]; [`EventStream::collect_blocking`] and
/// [`EventStream::blocking_iter`] serve synchronous callers (not from inside an async runtime).
/// Dropping it cancels the request: its blocks are freed at the engine's next step.
pub struct EventStream {
    submit: Option<BoxFuture<'static, Result<OwnedSemaphorePermit, RequestError>>>,
    /// Held while the request is inside the pipeline.
    permit: Option<OwnedSemaphorePermit>,
    rx: mpsc::Receiver<Event>,
    cancel: CancelFlag,
    choices: usize,
    ended: bool,
}

impl EventStream {
    pub(crate) fn new(
        submit: BoxFuture<'static, Result<OwnedSemaphorePermit, RequestError>>,
        rx: mpsc::Receiver<Event>,
        cancel: CancelFlag,
        choices: usize,
    ) -> Self {
        EventStream {
            submit: Some(submit),
            permit: None,
            rx,
            cancel,
            choices,
            ended: false,
        }
    }

    /// Cancel the request now (the stream then ends).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Iterate events on the calling thread.
    pub fn blocking_iter(self) -> impl Iterator<Item = Event> {
        futures::executor::block_on_stream(self)
    }

    /// Wait for the whole request.
    pub fn collect_blocking(self) -> Result<Completion, RequestError> {
        let n = self.choices;
        let mut c = Completion {
            choices: (0..n).map(|_| ChoiceOutput::default()).collect(),
        };
        for ev in self.blocking_iter() {
            c.push(ev)?;
        }
        Ok(c)
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(f) = self.submit.as_mut() {
            match f.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(permit)) => {
                    self.submit = None;
                    self.permit = Some(permit);
                }
                Poll::Ready(Err(e)) => {
                    self.submit = None;
                    self.ended = true;
                    return Poll::Ready(Some(Event::Error(e)));
                }
            }
        }
        let r = self.rx.poll_recv(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Event::Error(_))) = &r {
            self.ended = true;
            self.permit = None;
        }
        r
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.ended {
            self.cancel.cancel();
        }
    }
}

/// The output of one choice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChoiceOutput {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: Option<FinishReason>,
    pub stop: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
}

/// A finished request: one entry per choice (`n`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub choices: Vec<ChoiceOutput>,
}

impl Completion {
    /// Fold one event in; an error event becomes the result.
    pub fn push(&mut self, ev: Event) -> Result<(), RequestError> {
        match ev {
            Event::Delta {
                choice,
                text,
                token_ids,
                logprobs,
            } => {
                if let Some(c) = self.choices.get_mut(choice) {
                    c.text.push_str(&text);
                    c.token_ids.extend(token_ids);
                    c.logprobs.extend(logprobs);
                }
            }
            Event::Finished {
                choice,
                reason,
                stop,
                usage,
                timings,
            } => {
                if let Some(c) = self.choices.get_mut(choice) {
                    c.finish_reason = Some(reason);
                    c.stop = stop;
                    c.usage = usage;
                    c.timings = timings;
                }
            }
            Event::Error(e) => return Err(e),
        }
        Ok(())
    }
}
