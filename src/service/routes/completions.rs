//! `POST /v1/completions` (vLLM flavour): a text or token-id prompt, no chat template, no media.

use std::sync::Arc;

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::openai_chat::{unix_now, Meta};
use crate::pipeline::{SamplingParams, TokenLogprob};
use crate::service::disconnect::PeerSocket;
use crate::service::errors::ApiError;
use crate::service::generation::{Chunk, Generation};
use crate::service::params::{from_value, media_overrides, parse_json, Body, VllmSampling};
use crate::service::sse;
use crate::service::state::{AppState, PromptInput};
use crate::service::stream::{self, Framing};
use crate::wire::openai as wire;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum CompletionPrompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct CompletionRequest {
    model: Option<String>,
    prompt: CompletionPrompt,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<Value>,
    /// Number of most likely alternatives per token (OpenAI completions semantics).
    #[serde(default)]
    logprobs: Option<i64>,
    /// Checked like chat's; a text prompt has no media for it to change.
    #[serde(default)]
    mm_processor_kwargs: Option<Value>,
}

/// A completion request that passed the route's checks.
#[derive(Debug)]
pub struct CompletionCall {
    pub prompt: PromptInput,
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
}

/// The route's body checks, in the handler's order (see [`super::openai_chat::validate`]).
pub fn validate(
    body: &[u8],
    check_model: impl FnOnce(Option<&str>) -> Result<(), ApiError>,
) -> Result<CompletionCall, ApiError> {
    let v = parse_json(body)?;
    let cr: CompletionRequest = from_value(&v)?;
    let sampling: VllmSampling = from_value(&v)?;
    check_model(cr.model.as_deref())?;
    media_overrides(cr.mm_processor_kwargs.as_ref())?;
    let mut params = sampling.to_params(2.0)?;
    if let Some(k) = cr.logprobs {
        if !(0..=20).contains(&k) {
            return Err(ApiError::validation("`logprobs` must be in [0, 20]"));
        }
        params.logprobs = true;
        params.top_logprobs = k as usize;
    }
    let prompt = match cr.prompt {
        CompletionPrompt::Text(t) => PromptInput::Text(t),
        CompletionPrompt::Tokens(ids) => PromptInput::Tokens(ids),
    };
    let include_usage = cr
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(CompletionCall {
        prompt,
        params,
        stream: cr.stream.unwrap_or(false),
        include_usage,
    })
}

pub async fn handle(
    req: HttpRequest,
    state: Data<AppState>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let peer = PeerSocket::of(&req);
    let state = state.into_inner();
    let CompletionCall {
        prompt,
        params,
        stream: streaming,
        include_usage,
    } = validate(&body, |m| state.check_model(m, true))?;
    let permit = state.admit().await?;
    let g = state.generate(prompt, params, permit, peer).await?;
    let meta = Meta {
        id: state.request_id(),
        created: unix_now(),
        model: state.config.served_model_name.clone(),
    };
    if streaming {
        return Ok(stream(state, g, meta, include_usage));
    }
    let c = g.collect().await?;
    let choices = c
        .choices
        .iter()
        .enumerate()
        .map(|(i, ch)| wire::CompletionChoice {
            index: i,
            text: ch.text.clone(),
            logprobs: completion_logprobs(&state, &ch.logprobs),
            stop_reason: ch.finish.as_ref().and_then(|f| f.stop.clone()),
            finish_reason: ch.finish.as_ref().map(|f| f.openai().into()),
        })
        .collect();
    let (p, n) = c.usage();
    Ok(sse::json_of(&wire::Completion {
        id: meta.id,
        object: "text_completion".into(),
        created: meta.created,
        model: meta.model,
        usage: Some(wire::Usage::new(p, n, 0, 0)),
        choices,
    }))
}

/// OpenAI completions logprobs: parallel lists (`None` when not asked for).
fn completion_logprobs(state: &AppState, lps: &[TokenLogprob]) -> Option<wire::CompletionLogprobs> {
    if lps.is_empty() {
        return None;
    }
    let tokens: Vec<String> = lps.iter().map(|l| state.token_text(l.token)).collect();
    let top_logprobs = lps
        .iter()
        .map(|l| {
            l.top
                .iter()
                .map(|&(id, lp)| (state.token_text(id), serde_json::Value::from(lp)))
                .collect()
        })
        .collect();
    let mut offset = 0;
    let text_offset = tokens
        .iter()
        .map(|t| {
            let o = offset;
            offset += t.len();
            o
        })
        .collect();
    Some(wire::CompletionLogprobs {
        token_logprobs: lps.iter().map(|l| l.logprob).collect(),
        tokens,
        top_logprobs,
        text_offset,
    })
}

fn stream(state: Arc<AppState>, g: Generation, meta: Meta, include_usage: bool) -> HttpResponse {
    stream::respond(
        g,
        CompletionFraming {
            state,
            meta,
            include_usage,
        },
    )
}

/// `text_completion` frames; usage on the last one (and in a frame of its own with
/// `stream_options.include_usage`).
struct CompletionFraming {
    state: Arc<AppState>,
    meta: Meta,
    include_usage: bool,
}

impl CompletionFraming {
    fn frame(&self, choices: Vec<wire::CompletionChoice>, usage: Option<wire::Usage>) -> Bytes {
        sse::data_of(&wire::Completion {
            id: self.meta.id.clone(),
            object: "text_completion".into(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            usage,
            choices,
        })
    }
}

impl Framing for CompletionFraming {
    fn chunk(&mut self, c: Chunk, g: &Generation) -> Vec<Bytes> {
        let usage = (c.finish.is_some() && g.all_finished()).then(|| {
            let (p, n) = g.usage();
            wire::Usage::new(p, n, 0, 0)
        });
        let choice = wire::CompletionChoice {
            index: c.choice,
            logprobs: completion_logprobs(&self.state, &c.logprobs),
            stop_reason: c.finish.as_ref().and_then(|f| f.stop.clone()),
            finish_reason: c.finish.as_ref().map(|f| f.openai().into()),
            text: c.text,
        };
        vec![self.frame(vec![choice], usage)]
    }

    fn end(&mut self, g: &Generation) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.include_usage {
            let (p, n) = g.usage();
            out.push(self.frame(Vec::new(), Some(wire::Usage::new(p, n, 0, 0))));
        }
        out.push(sse::done());
        out
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        // As vLLM: the error event, then the terminator clients wait for.
        vec![sse::error_frame(e), sse::done()]
    }
}
