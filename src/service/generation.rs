//! One request's generation as the routes see it: the pipeline's events turned into chunks
//! (a delta merged with the finish that follows it in the same engine step, so that the last
//! content frame carries the finish reason as MindIE's does), with MindIE's token and
//! end-to-end timeouts, per-chunk prefill/decode times, and the metrics recorded once.
//!
//! Dropping a [`Generation`] drops the pipeline's event stream, which cancels the request (its
//! KV blocks are freed at the engine's next step) — this is how a client disconnect
//! propagates: actix-web drops the response body stream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};

use super::disconnect::{unless_hung_up, PeerSocket};
use super::errors::ApiError;
use super::limits::LinkPermit;
use super::state::AppState;
use crate::pipeline::{Event, EventStream, FinishReason, Timings, TokenLogprob, Usage};

/// How a choice ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub reason: FinishReason,
    /// The stop string that matched, if any.
    pub stop: Option<String>,
    pub usage: Usage,
    /// Milestones of this choice (for the request log).
    pub timings: Timings,
}

impl Finish {
    /// OpenAI / vLLM family: `stop` | `length`.
    pub fn openai(&self) -> &'static str {
        match self.reason {
            FinishReason::Length => "length",
            _ => "stop",
        }
    }

    /// TGI / `/infer` / Triton family: `eos_token` | `length` | `stop_sequence`.
    pub fn tgi(&self) -> &'static str {
        match (self.reason, &self.stop) {
            (FinishReason::Length, _) => "length",
            (_, Some(_)) => "stop_sequence",
            _ => "eos_token",
        }
    }
}

/// New output of one choice.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub choice: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    /// Set on the choice's last chunk.
    pub finish: Option<Finish>,
    /// Milliseconds from arrival to this chunk, on the request's first chunk.
    pub prefill_ms: Option<u64>,
    /// Milliseconds since the previous chunk, on later chunks.
    pub decode_ms: Option<u64>,
}

impl Chunk {
    /// This held-back chunk and the choice's next one as one chunk: text, ids and log-probs in
    /// order, the later finish, the first chunk's prefill time (then no decode time), else the
    /// summed decode time.
    fn followed_by(mut self, next: Chunk) -> Chunk {
        self.text.push_str(&next.text);
        self.token_ids.extend(next.token_ids);
        self.logprobs.extend(next.logprobs);
        self.finish = next.finish;
        self.prefill_ms = self.prefill_ms.or(next.prefill_ms);
        self.decode_ms = match (self.prefill_ms, self.decode_ms, next.decode_ms) {
            (Some(_), _, _) => None,
            (None, Some(a), Some(b)) => Some(a + b),
            (None, a, b) => a.or(b),
        };
        self
    }
}

/// Why a generation stopped early.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The pipeline reported an error (validation errors arrive this way too).
    Error(ApiError),
    /// No token within `tokenTimeout`, or the request exceeded `e2eTimeout`.
    Timeout(String),
    /// The server's shutdown deadline came first (503, an error frame in a stream).
    Shutdown(String),
}

impl Failure {
    pub fn into_api(self) -> ApiError {
        match self {
            Failure::Error(e) => e,
            Failure::Timeout(m) => ApiError::incomplete(m),
            Failure::Shutdown(m) => ApiError::unavailable(m),
        }
    }
}

pub struct Generation {
    events: EventStream,
    pending: VecDeque<Event>,
    state: Arc<AppState>,
    _permit: LinkPermit,
    start: Instant,
    last: Instant,
    deadline: Instant,
    first_token: Option<f64>,
    finished: Vec<Option<Finish>>,
    /// Per choice: tokens whose text the detokenizer still holds back (see [`Generation::next`]).
    held: Vec<Option<Chunk>>,
    ended: bool,
    recorded: bool,
    /// The client's connection, watched while nothing has been sent yet.
    peer: Option<PeerSocket>,
    /// The seed in force (echoed in TGI / `/infer` details).
    pub seed: u64,
    /// The HTTP request's span (id, method, path): the request log line belongs to it even
    /// when a stream ends after the handler has returned.
    span: tracing::Span,
}

/// The whole output of a non-streaming request.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub choices: Vec<CollectedChoice>,
}

#[derive(Debug, Clone, Default)]
pub struct CollectedChoice {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
}

impl Collected {
    /// Prompt tokens once, completion tokens summed over the choices.
    pub fn usage(&self) -> (usize, usize) {
        usage_of(self.choices.iter().filter_map(|c| c.finish.as_ref()))
    }

    /// (cached, visual) prompt tokens, for `usage.prompt_tokens_details`.
    pub fn prompt_details(&self) -> (usize, usize) {
        details_of(self.choices.iter().filter_map(|c| c.finish.as_ref()))
    }
}

/// (cached, visual) prompt tokens of a request from its choices' finishes.
pub fn details_of<'a>(finishes: impl Iterator<Item = &'a Finish>) -> (usize, usize) {
    finishes.fold((0, 0), |(c, v), f| {
        (c.max(f.usage.cached_tokens), v.max(f.usage.visual_tokens))
    })
}

/// (prompt, completion) tokens of a request from its choices' finishes.
pub fn usage_of<'a>(finishes: impl Iterator<Item = &'a Finish>) -> (usize, usize) {
    finishes.fold((0, 0), |(p, c), f| {
        (p.max(f.usage.prompt_tokens), c + f.usage.completion_tokens)
    })
}

impl Generation {
    /// Wait for the request's first event, so that a request the pipeline rejects (bad
    /// parameters, unreadable media, prompt too long) gets an error status rather than a 200
    /// followed by a broken stream.
    pub async fn start(
        state: Arc<AppState>,
        events: EventStream,
        n: usize,
        seed: u64,
        permit: LinkPermit,
        peer: Option<PeerSocket>,
    ) -> Result<Generation, ApiError> {
        let now = Instant::now();
        let mut g = Generation {
            events,
            pending: VecDeque::new(),
            deadline: now + state.config.e2e_timeout,
            state,
            _permit: permit,
            start: now,
            last: now,
            first_token: None,
            finished: vec![None; n.max(1)],
            held: vec![None; n.max(1)],
            ended: false,
            recorded: false,
            peer: peer.clone(),
            seed,
            span: tracing::Span::current(),
        };
        // A client that hangs up during a long prefill: dropping `g` cancels the request.
        let first = unless_hung_up(peer, async { Ok(g.pull().await) }).await?;
        match first {
            Ok(Some(Event::Error(e))) => {
                let e: ApiError = e.into();
                g.record_failure(&e);
                Err(e)
            }
            Ok(Some(ev)) => {
                g.pending.push_back(ev);
                Ok(g)
            }
            Ok(None) => {
                let e = ApiError::incomplete("the request ended without output");
                g.record_failure(&e);
                Err(e)
            }
            Err(f) => {
                let e = f.into_api();
                g.record_failure(&e);
                Err(e)
            }
        }
    }

    /// The next event, within the token and end-to-end timeouts.
    async fn pull(&mut self) -> Result<Option<Event>, Failure> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Some(ev));
        }
        if self.ended {
            return Ok(None);
        }
        let token_deadline = Instant::now() + self.state.config.token_timeout;
        let limit = token_deadline.min(self.deadline);
        let mut cutoff = self.state.cutoff.subscribe();
        let next = tokio::select! {
            biased;
            _ = cutoff.wait_for(|cut| *cut) => {
                self.events.cancel();
                return Err(Failure::Shutdown(format!(
                    "the server is shutting down: the request was ended at the {}s shutdown deadline",
                    self.state.config.shutdown_timeout.as_secs()
                )));
            }
            next = tokio::time::timeout_at(limit.into(), self.events.next()) => next,
        };
        match next {
            Ok(Some(ev)) => Ok(Some(ev)),
            Ok(None) => {
                self.ended = true;
                Ok(None)
            }
            Err(_) => {
                let which = if limit == self.deadline {
                    format!("e2eTimeout of {}s", self.state.config.e2e_timeout.as_secs())
                } else {
                    format!(
                        "tokenTimeout of {}s",
                        self.state.config.token_timeout.as_secs()
                    )
                };
                self.events.cancel();
                Err(Failure::Timeout(format!(
                    "Engine callback timeout: no output within the {which}"
                )))
            }
        }
    }

    /// The next chunk; `None` once every choice has finished. Every chunk carries text or the
    /// finish: a token whose text is held back (an incomplete UTF-8 sequence) travels with its
    /// choice's next chunk, ids, log-probs and timing included, so no route drops it.
    pub async fn next(&mut self) -> Option<Result<Chunk, Failure>> {
        loop {
            let chunk = match self.next_event().await? {
                Ok(c) => c,
                Err(f) => return Some(Err(f)),
            };
            let slot = chunk.choice.min(self.held.len() - 1);
            let chunk = match self.held[slot].take() {
                Some(h) => h.followed_by(chunk),
                None => chunk,
            };
            if chunk.text.is_empty() && chunk.finish.is_none() {
                self.held[slot] = Some(chunk);
                continue;
            }
            return Some(Ok(chunk));
        }
    }

    async fn next_event(&mut self) -> Option<Result<Chunk, Failure>> {
        if self.finished.iter().all(Option::is_some) {
            self.record_success();
            return None;
        }
        let ev = match self.pull().await {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                let e = ApiError::incomplete("generation ended before every choice finished");
                self.record_failure(&e);
                return Some(Err(Failure::Error(e)));
            }
            Err(f) => {
                self.record_failure(&f.clone().into_api());
                return Some(Err(f));
            }
        };
        let mut chunk = match ev {
            Event::Error(e) => {
                let e: ApiError = e.into();
                self.record_failure(&e);
                return Some(Err(Failure::Error(e)));
            }
            Event::Delta {
                choice,
                text,
                token_ids,
                logprobs,
            } => Chunk {
                choice,
                text,
                token_ids,
                logprobs,
                finish: None,
                prefill_ms: None,
                decode_ms: None,
            },
            Event::Finished {
                choice,
                reason,
                stop,
                usage,
                timings,
            } => Chunk {
                choice,
                text: String::new(),
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                finish: Some(Finish {
                    reason,
                    stop,
                    usage,
                    timings,
                }),
                prefill_ms: None,
                decode_ms: None,
            },
        };
        // The engine delivers a choice's last token and its finish together: if the finish is
        // already here, put it on this chunk instead of sending a frame of its own.
        if chunk.finish.is_none() {
            let ready = match self.pending.pop_front() {
                Some(ev) => Some(Some(ev)),
                None if self.ended => None,
                None => self.events.next().now_or_never(),
            };
            match ready {
                Some(Some(Event::Finished {
                    choice,
                    reason,
                    stop,
                    usage,
                    timings,
                })) if choice == chunk.choice => {
                    chunk.finish = Some(Finish {
                        reason,
                        stop,
                        usage,
                        timings,
                    })
                }
                Some(Some(ev)) => self.pending.push_front(ev),
                Some(None) => self.ended = true,
                None => {}
            }
        }
        let now = Instant::now();
        if self.first_token.is_none() {
            let t = now.duration_since(self.start);
            self.first_token = Some(t.as_secs_f64());
            chunk.prefill_ms = Some(t.as_millis() as u64);
        } else {
            chunk.decode_ms = Some(now.duration_since(self.last).as_millis() as u64);
        }
        self.last = now;
        if let Some(f) = &chunk.finish {
            if let Some(slot) = self.finished.get_mut(chunk.choice) {
                *slot = Some(f.clone());
            }
        }
        Some(Ok(chunk))
    }

    /// Run to the end (or until the client hangs up, which cancels the request).
    pub async fn collect(mut self) -> Result<Collected, ApiError> {
        let peer = self.peer.take();
        unless_hung_up(peer, self.collect_all()).await
    }

    async fn collect_all(mut self) -> Result<Collected, ApiError> {
        let mut out = Collected {
            choices: vec![CollectedChoice::default(); self.finished.len()],
        };
        while let Some(c) = self.next().await {
            let c = c.map_err(Failure::into_api)?;
            if let Some(o) = out.choices.get_mut(c.choice) {
                o.text.push_str(&c.text);
                o.token_ids.extend(c.token_ids);
                o.logprobs.extend(c.logprobs);
                if c.finish.is_some() {
                    o.finish = c.finish;
                }
            }
        }
        Ok(out)
    }

    /// Every choice has finished.
    pub fn all_finished(&self) -> bool {
        self.finished.iter().all(Option::is_some)
    }

    /// Usage so far over the finished choices.
    pub fn usage(&self) -> (usize, usize) {
        usage_of(self.finished.iter().flatten())
    }

    /// (cached, visual) prompt tokens of the choices finished so far.
    pub fn prompt_details(&self) -> (usize, usize) {
        details_of(self.finished.iter().flatten())
    }

    fn record_success(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let (prompt, completion) = self.usage();
        let e2e = self.start.elapsed().as_secs_f64();
        self.state
            .metrics
            .record_success(self.first_token, e2e, prompt, completion);
        self.log(200, "done", None);
    }

    fn record_failure(&mut self, e: &ApiError) {
        if !self.recorded {
            self.recorded = true;
            self.state
                .metrics
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.log(e.status.as_u16(), "failed", Some(&e.message));
        }
    }

    /// The request's one log line (see [`crate::logging`]).
    fn log(&self, status: u16, outcome: &str, error: Option<&str>) {
        let first = self.finished.iter().flatten().next();
        let ms = |s: Option<f64>| s.map(|s| (s * 1e3).round() as u64);
        let t = first.map(|f| f.timings).unwrap_or_default();
        let (prompt, generated) = self.usage();
        let (cached, visual) = self.prompt_details();
        let finish = first.map(|f| f.openai());
        tracing::info!(
            target: "qwen3vl::request",
            parent: &self.span,
            status,
            prompt_tokens = prompt,
            visual_tokens = visual,
            cached_tokens = cached,
            generated_tokens = generated,
            media_ms = ms(t.media_done),
            vision_ms = ms(t.vision_done),
            queue_ms = ms(t.scheduled),
            ttft_ms = ms(self.first_token),
            e2e_ms = self.start.elapsed().as_millis() as u64,
            finish,
            error,
            "request {outcome}"
        );
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.recorded {
            if self.finished.iter().all(Option::is_some) {
                self.record_success();
            } else {
                // The client went away (or the response was abandoned): the event stream's
                // drop cancels the request.
                self.recorded = true;
                self.state
                    .metrics
                    .cancelled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.log(499, "cancelled by the client", None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Chunk;

    fn chunk(text: &str, ids: &[u32], prefill: Option<u64>, decode: Option<u64>) -> Chunk {
        Chunk {
            choice: 0,
            text: text.into(),
            token_ids: ids.to_vec(),
            logprobs: Vec::new(),
            finish: None,
            prefill_ms: prefill,
            decode_ms: decode,
        }
    }

    #[test]
    fn held_back_tokens_keep_their_ids_and_the_first_token_time() {
        // First token: half of a UTF-8 character, no text yet, but it is the first token.
        let first = chunk("", &[7], Some(120), None).followed_by(chunk("é", &[8], None, Some(9)));
        assert_eq!(
            (first.text.as_str(), &first.token_ids[..]),
            ("é", &[7, 8][..])
        );
        assert_eq!((first.prefill_ms, first.decode_ms), (Some(120), None));
        // Later: the decode times of both steps add up.
        let later = chunk("", &[3], None, Some(10)).followed_by(chunk("x", &[4], None, Some(11)));
        assert_eq!((later.prefill_ms, later.decode_ms), (None, Some(21)));
        assert_eq!(later.token_ids, vec![3, 4]);
    }
}
