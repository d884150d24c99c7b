//! `POST /v1/chat/completions` (MindIE's vLLM flavour, `single_req_vllm_openai_infer_interface`).
//!
//! Streaming follows MindIE: the role chunk is sent with the first generated token (never
//! before prefill), every content chunk repeats `"role": "assistant"`, and the choice's last
//! content chunk carries `finish_reason` and `usage`. With `stream_options.include_usage`
//! the OpenAI convention is added on top: `"usage": null` on the other chunks and a final
//! `"choices": []` chunk with the usage, before `data: [DONE]`.

use std::sync::Arc;

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use crate::media::MediaOverrides;
use crate::pipeline::{ChatMessage, SamplingParams, TokenLogprob};
use crate::service::disconnect::PeerSocket;
use crate::service::errors::ApiError;
use crate::service::generation::{Chunk, Generation};
use crate::service::params::{from_value, media_overrides, parse_json, Body, VllmSampling};
use crate::service::sse;
use crate::service::state::{AppState, PromptInput};
use crate::service::stream::{self, Framing};
use crate::wire::openai as wire;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct ChatRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<i64>,
    #[serde(default)]
    mm_processor_kwargs: Option<Value>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// A chat request that passed the route's checks: what the handler needs from the body.
#[derive(Debug)]
pub struct ChatCall {
    pub messages: Vec<ChatMessage>,
    pub media: MediaOverrides,
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
}

/// The route's body checks, in the handler's order; `check_model` is the server's model-name
/// check. Free of server state so that the fuzz targets run exactly these.
pub fn validate(
    body: &[u8],
    check_model: impl FnOnce(Option<&str>) -> Result<(), ApiError>,
) -> Result<ChatCall, ApiError> {
    let v = parse_json(body)?;
    let chat: ChatRequest = from_value(&v)?;
    let sampling: VllmSampling = from_value(&v)?;
    check_model(chat.model.as_deref())?;
    if chat.messages.is_empty() {
        return Err(ApiError::validation("`messages` must not be empty"));
    }
    for m in &chat.messages {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::validation(format!(
                "message role `{}` is not one of system, user, assistant, tool",
                m.role
            )));
        }
        if m.role == "tool" && m.tool_call_id.is_none() {
            return Err(ApiError::validation("tool messages need `tool_call_id`"));
        }
    }
    let media = media_overrides(chat.mm_processor_kwargs.as_ref())?;
    let mut params = sampling.to_params(2.0)?;
    let top = chat.top_logprobs.unwrap_or(0);
    if !(0..=20).contains(&top) {
        return Err(ApiError::validation("`top_logprobs` must be in [0, 20]"));
    }
    params.logprobs = chat.logprobs.unwrap_or(false);
    params.top_logprobs = if params.logprobs { top as usize } else { 0 };
    Ok(ChatCall {
        messages: chat.messages,
        media,
        params,
        stream: chat.stream.unwrap_or(false),
        include_usage: chat
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

pub async fn handle(
    req: HttpRequest,
    state: Data<AppState>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let peer = PeerSocket::of(&req);
    let state = state.into_inner();
    let call = validate(&body, |m| state.check_model(m, true))?;
    let permit = state.admit().await?;
    let g = state
        .generate(
            PromptInput::Chat(call.messages, call.media),
            call.params,
            permit,
            peer,
        )
        .await?;
    let meta = Meta {
        id: state.request_id(),
        created: unix_now(),
        model: state.config.served_model_name.clone(),
    };
    if call.stream {
        Ok(stream(state, g, meta, call.include_usage))
    } else {
        let c = g.collect().await?;
        let choices = c
            .choices
            .iter()
            .enumerate()
            .map(|(i, ch)| wire::ChatChoice {
                index: i,
                message: wire::AssistantMessage {
                    role: "assistant".into(),
                    content: Some(ch.text.clone()),
                    ..Default::default()
                },
                logprobs: chat_logprobs(&state, &ch.logprobs),
                finish_reason: ch.finish.as_ref().map(|f| f.openai().into()),
            })
            .collect();
        let (cached, visual) = c.prompt_details();
        let (p, n) = c.usage();
        Ok(sse::json_of(&wire::ChatCompletion {
            id: meta.id,
            object: "chat.completion".into(),
            created: meta.created,
            model: meta.model,
            choices,
            usage: Some(wire::Usage::new(p, n, cached, visual)),
        }))
    }
}

pub(crate) struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI chat logprobs (`None` when not asked for).
pub(crate) fn chat_logprobs(state: &AppState, lps: &[TokenLogprob]) -> Option<wire::ChatLogprobs> {
    if lps.is_empty() {
        return None;
    }
    let entry = |id: u32, lp: f32, top: Option<Vec<wire::TokenLogprob>>| {
        let token = state.token_text(id);
        wire::TokenLogprob {
            bytes: token.as_bytes().to_vec(),
            token,
            logprob: lp,
            top_logprobs: top,
        }
    };
    let content = lps
        .iter()
        .map(|l| {
            let top = l.top.iter().map(|&(id, lp)| entry(id, lp, None)).collect();
            entry(l.token, l.logprob, Some(top))
        })
        .collect();
    Some(wire::ChatLogprobs { content })
}

fn stream(state: Arc<AppState>, g: Generation, meta: Meta, include_usage: bool) -> HttpResponse {
    stream::respond(
        g,
        ChatFraming {
            state,
            meta,
            include_usage,
            started: Vec::new(),
        },
    )
}

/// `chat.completion.chunk` frames: a role frame first per choice, then the deltas; usage on
/// the last content frame, and in a frame of its own with `stream_options.include_usage`.
struct ChatFraming {
    state: Arc<AppState>,
    meta: Meta,
    include_usage: bool,
    started: Vec<bool>,
}

impl ChatFraming {
    fn frame(&self, choices: Vec<wire::ChunkChoice>, usage: Option<wire::Usage>) -> Bytes {
        sse::data_of(&wire::ChatChunk {
            id: self.meta.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            usage: match usage {
                Some(u) => Some(Some(u)),
                None if self.include_usage => Some(None),
                None => None,
            },
            choices,
        })
    }
}

fn usage_of(g: &Generation) -> wire::Usage {
    let (p, n) = g.usage();
    let (cached, visual) = g.prompt_details();
    wire::Usage::new(p, n, cached, visual)
}

impl Framing for ChatFraming {
    fn chunk(&mut self, c: Chunk, g: &Generation) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.started.len() <= c.choice {
            self.started.resize(c.choice + 1, false);
        }
        let delta = |content: String| wire::Delta {
            role: Some("assistant".into()),
            content: Some(content),
            ..Default::default()
        };
        if !self.started[c.choice] {
            self.started[c.choice] = true;
            let role = wire::ChunkChoice {
                index: c.choice,
                delta: delta(String::new()),
                ..Default::default()
            };
            out.push(self.frame(vec![role], None));
        }
        let usage = (c.finish.is_some() && g.all_finished()).then(|| usage_of(g));
        let choice = wire::ChunkChoice {
            index: c.choice,
            logprobs: chat_logprobs(&self.state, &c.logprobs),
            finish_reason: c.finish.as_ref().map(|f| f.openai().into()),
            delta: delta(c.text),
        };
        out.push(self.frame(vec![choice], usage));
        out
    }

    fn end(&mut self, g: &Generation) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.include_usage {
            out.push(self.frame(Vec::new(), Some(usage_of(g))));
        }
        out.push(sse::done());
        out
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        // As vLLM: the error event, then the terminator clients wait for.
        vec![sse::error_frame(e), sse::done()]
    }
}
