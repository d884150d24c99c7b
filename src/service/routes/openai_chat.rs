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
use serde_json::{json, Value};

use crate::media::MediaOverrides;
use crate::pipeline::{ChatMessage, SamplingParams, TokenLogprob};
use crate::service::disconnect::PeerSocket;
use crate::service::errors::ApiError;
use crate::service::generation::{Chunk, Generation};
use crate::service::params::{from_value, media_overrides, parse_json, Body, VllmSampling};
use crate::service::sse;
use crate::service::state::{AppState, PromptInput};
use crate::service::stream::{self, Framing};

#[derive(Debug, Deserialize)]
struct ChatRequest {
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

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
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
        let choices: Vec<Value> = c
            .choices
            .iter()
            .enumerate()
            .map(|(i, ch)| {
                json!({
                    "index": i,
                    "message": {"role": "assistant", "content": ch.text, "tool_calls": []},
                    "logprobs": logprobs_json(&state, &ch.logprobs),
                    "finish_reason": ch.finish.as_ref().map(|f| f.openai()),
                })
            })
            .collect();
        let (cached, visual) = c.prompt_details();
        let (p, n) = c.usage();
        Ok(sse::json(&json!({
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": meta.model,
            "choices": choices,
            "usage": usage_json(p, n, cached, visual),
        })))
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

/// `usage`; `prompt_tokens_details` appears when the prompt had cached or visual tokens
/// (`visual_tokens`: image and video placeholders, part of `prompt_tokens`).
pub(crate) fn usage_json(prompt: usize, completion: usize, cached: usize, visual: usize) -> Value {
    let mut u = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if cached > 0 || visual > 0 {
        u["prompt_tokens_details"] = json!({"cached_tokens": cached, "visual_tokens": visual});
    }
    u
}

/// OpenAI chat logprobs (`null` when not asked for).
pub(crate) fn logprobs_json(state: &AppState, lps: &[TokenLogprob]) -> Value {
    if lps.is_empty() {
        return Value::Null;
    }
    let tok = |id: u32| -> String {
        state
            .tokenizer
            .as_ref()
            .and_then(|t| t.decode(&[id], false).ok())
            .unwrap_or_default()
    };
    let entry = |id: u32, lp: f32| {
        let t = tok(id);
        json!({"token": t, "logprob": lp, "bytes": t.as_bytes()})
    };
    let content: Vec<Value> = lps
        .iter()
        .map(|l| {
            let mut e = entry(l.token, l.logprob);
            e["top_logprobs"] = l.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
            e
        })
        .collect();
    json!({ "content": content })
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
    fn frame(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut o = json!({
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
        });
        match usage {
            Some(u) => o["usage"] = u,
            None if self.include_usage => o["usage"] = Value::Null,
            None => {}
        }
        o["choices"] = choices;
        sse::data(&o)
    }
}

fn usage_of(g: &Generation) -> Value {
    let (p, n) = g.usage();
    let (cached, visual) = g.prompt_details();
    usage_json(p, n, cached, visual)
}

impl Framing for ChatFraming {
    fn chunk(&mut self, c: Chunk, g: &Generation) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.started.len() <= c.choice {
            self.started.resize(c.choice + 1, false);
        }
        if !self.started[c.choice] {
            self.started[c.choice] = true;
            out.push(self.frame(
                json!([{"index": c.choice, "delta": {"role": "assistant", "content": ""},
                        "logprobs": null, "finish_reason": null}]),
                None,
            ));
        }
        let lp = logprobs_json(&self.state, &c.logprobs);
        let usage = (c.finish.is_some() && g.all_finished()).then(|| usage_of(g));
        out.push(self.frame(
            json!([{"index": c.choice, "delta": {"role": "assistant", "content": c.text},
                    "logprobs": lp, "finish_reason": c.finish.as_ref().map(|f| f.openai())}]),
            usage,
        ));
        out
    }

    fn end(&mut self, g: &Generation) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.include_usage {
            out.push(self.frame(json!([]), Some(usage_of(g))));
        }
        out.push(sse::done());
        out
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        // As vLLM: the error event, then the terminator clients wait for.
        vec![sse::error_frame(e), sse::done()]
    }
}
