//! `POST /generate` — vLLM flavour when the body has `prompt` (MindIE checks it first), TGI
//! flavour when it has `inputs`; `POST /generate_stream` (TGI, always streaming) and `POST /`
//! (TGI, `stream` field selects, non-stream wrapped in an array).

use std::sync::Arc;

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::media::MediaOverrides;
use crate::pipeline::SamplingParams;
use crate::service::disconnect::PeerSocket;
use crate::service::errors::ApiError;
use crate::service::generation::{Chunk, Generation};
use crate::service::params::{
    from_value, media_overrides, parse_body, parse_json, Body, TextOrParts, TgiParameters,
    VllmSampling,
};
use crate::service::sse;
use crate::service::state::{AppState, PromptInput};
use crate::service::stream::{self, Framing};
use crate::wire::tgi::{DetailToken, Details, Generated, StreamFrame, StreamToken};
use crate::wire::vllm::GenerateText;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct VllmRequest {
    prompt: TextOrParts,
    /// MindIE reads it as a LoRA id; only the served model exists here.
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    mm_processor_kwargs: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct TgiRequest {
    pub inputs: TextOrParts,
    #[serde(default)]
    pub parameters: Option<TgiParameters>,
    #[serde(default)]
    pub stream: Option<bool>,
}

/// Which TGI route was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TgiRoute {
    Generate,
    GenerateStream,
    Root,
}

/// A `/generate` body that passed the route's checks.
#[derive(Debug)]
pub enum GenerateCall {
    Vllm(VllmCall),
    Tgi(TgiCall),
}

/// vLLM `/generate`: the prompt, the parameters, and the text echoed in front of the output.
#[derive(Debug)]
pub struct VllmCall {
    pub prompt: PromptInput,
    pub params: SamplingParams,
    pub head: String,
    pub stream: bool,
}

/// A TGI request up to its prompt: TGI's `truncate` needs the tokenizer, so the handler
/// builds the prompt from `inputs` (see `tgi_prompt`).
#[derive(Debug)]
pub struct TgiCall {
    pub inputs: TextOrParts,
    pub truncate: Option<i64>,
    pub params: SamplingParams,
    pub streaming: bool,
    pub with_details: bool,
    pub prefix: String,
}

/// `POST /generate`'s body checks, in the handler's order; `check_model` is the server's
/// model-name check. Free of server state so that the fuzz targets run exactly these.
pub fn validate_generate(
    body: &[u8],
    check_model: impl FnOnce(Option<&str>) -> Result<(), ApiError>,
) -> Result<GenerateCall, ApiError> {
    let v = parse_json(body)?;
    if v.get("prompt").is_some() {
        let req: VllmRequest = from_value(&v)?;
        let sampling: VllmSampling = from_value(&v)?;
        check_model(req.model.as_deref())?;
        let params = sampling.to_params(f32::MAX)?;
        let media = media_overrides(req.mm_processor_kwargs.as_ref())?;
        let head = req.prompt.first_text().to_string();
        let prompt = match req.prompt {
            TextOrParts::Text(t) => PromptInput::Text(t),
            TextOrParts::Parts(p) => PromptInput::from_parts(p, media),
        };
        Ok(GenerateCall::Vllm(VllmCall {
            prompt,
            params,
            head,
            stream: req.stream.unwrap_or(false),
        }))
    } else if v.get("inputs").is_some() {
        let req: TgiRequest = from_value(&v)?;
        tgi_checks(req, TgiRoute::Generate).map(GenerateCall::Tgi)
    } else {
        Err(ApiError::validation(
            "the body needs `prompt` (vLLM) or `inputs` (TGI)",
        ))
    }
}

/// `POST /generate_stream` and `POST /` body checks.
pub fn validate_tgi(body: &[u8], route: TgiRoute) -> Result<TgiCall, ApiError> {
    tgi_checks(parse_body(body)?, route)
}

fn tgi_checks(req: TgiRequest, route: TgiRoute) -> Result<TgiCall, ApiError> {
    let p = req.parameters.unwrap_or_default();
    let params = p.to_params()?;
    let streaming = route == TgiRoute::GenerateStream
        || (route == TgiRoute::Root && req.stream.unwrap_or(false));
    if streaming && p.decoder_input_details == Some(true) {
        return Err(ApiError::validation(
            "decoder_input_details is not allowed with streaming",
        ));
    }
    let prefix = if p.return_full_text == Some(true) {
        req.inputs.first_text().to_string()
    } else {
        String::new()
    };
    Ok(TgiCall {
        inputs: req.inputs,
        truncate: p.truncate,
        params,
        streaming,
        with_details: p.details(),
        prefix,
    })
}

pub async fn generate(
    http: HttpRequest,
    state: Data<AppState>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let peer = PeerSocket::of(&http);
    let state = state.into_inner();
    match validate_generate(&body, |m| state.check_model(m, false))? {
        GenerateCall::Vllm(call) => vllm(state, call, peer).await,
        GenerateCall::Tgi(call) => tgi(state, call, TgiRoute::Generate, peer).await,
    }
}

pub async fn generate_stream(
    http: HttpRequest,
    state: Data<AppState>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let call = validate_tgi(&body, TgiRoute::GenerateStream)?;
    let peer = PeerSocket::of(&http);
    tgi(state.into_inner(), call, TgiRoute::GenerateStream, peer).await
}

pub async fn root(
    http: HttpRequest,
    state: Data<AppState>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let call = validate_tgi(&body, TgiRoute::Root)?;
    let peer = PeerSocket::of(&http);
    tgi(state.into_inner(), call, TgiRoute::Root, peer).await
}

async fn vllm(
    state: Arc<AppState>,
    call: VllmCall,
    peer: Option<PeerSocket>,
) -> Result<HttpResponse, ApiError> {
    let VllmCall {
        prompt,
        params,
        head,
        stream,
    } = call;
    let permit = state.admit().await?;
    let g = state.generate(prompt, params, permit, peer).await?;
    if !stream {
        let c = g.collect().await?;
        // MindIE: the first text item of the prompt, a space, the generated text.
        let text: Vec<String> = c
            .choices
            .iter()
            .map(|ch| format!("{head} {}", ch.text))
            .collect();
        return Ok(sse::json_of(&GenerateText { text }));
    }
    let full = state.config.full_text;
    Ok(stream::respond(
        g,
        VllmFraming {
            full,
            texts: Vec::new(),
        },
    ))
}

/// vLLM `/generate` stream: NUL-terminated `{"text": [...]}` objects, one entry per sequence
/// (this chunk's delta, "" for the others; the whole text so far with `fullTextEnabled`).
struct VllmFraming {
    full: bool,
    texts: Vec<String>,
}

impl Framing for VllmFraming {
    fn chunk(&mut self, c: Chunk, _g: &Generation) -> Vec<Bytes> {
        if self.texts.len() <= c.choice {
            self.texts.resize(c.choice + 1, String::new());
        }
        self.texts[c.choice].push_str(&c.text);
        let text = (0..self.texts.len())
            .map(|i| match (i == c.choice, self.full) {
                (_, true) => self.texts[i].clone(),
                (true, false) => c.text.clone(),
                (false, false) => String::new(),
            })
            .collect();
        vec![sse::nul(&GenerateText { text })]
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        vec![sse::nul(&e.wire())]
    }
}

/// TGI `details` for a finished request (without the per-token lists).
fn details(seed: u64, prompt_tokens: usize, finish: &str, generated_tokens: usize) -> Details {
    Details {
        prompt_tokens,
        finish_reason: finish.to_string(),
        generated_tokens,
        seed,
        prefill: None,
        tokens: None,
    }
}

/// Raw-text prompt with TGI's `truncate` (keep the last N tokens).
pub(crate) async fn tgi_prompt(
    state: &AppState,
    inputs: TextOrParts,
    truncate: Option<i64>,
) -> Result<PromptInput, ApiError> {
    Ok(match inputs {
        TextOrParts::Text(t) => match truncate {
            Some(n) => {
                let ids = state.encode(t).await?;
                let keep = ids.len().saturating_sub(n as usize);
                PromptInput::Tokens(ids[keep..].to_vec())
            }
            None => PromptInput::Text(t),
        },
        TextOrParts::Parts(p) => PromptInput::from_parts(p, MediaOverrides::default()),
    })
}

async fn tgi(
    state: Arc<AppState>,
    call: TgiCall,
    route: TgiRoute,
    peer: Option<PeerSocket>,
) -> Result<HttpResponse, ApiError> {
    let TgiCall {
        inputs,
        truncate,
        params,
        streaming,
        with_details,
        prefix,
    } = call;
    let prompt = tgi_prompt(&state, inputs, truncate).await?;
    let permit = state.admit().await?;
    let g = state.generate(prompt, params, permit, peer).await?;
    let seed = g.seed;
    if !streaming {
        let c = g.collect().await?;
        let ch = c.choices.first().cloned().unwrap_or_default();
        let (prompt_tokens, generated) = c.usage();
        let text = format!("{prefix}{}", ch.text);
        let details = with_details.then(|| {
            let tok = state.tokenizer.clone();
            let tokens = ch
                .token_ids
                .iter()
                .map(|&id| DetailToken {
                    id,
                    logprob: None,
                    special: None,
                    text: tok.as_ref().and_then(|t| t.decode(&[id], false).ok()),
                })
                .collect();
            let finish = ch.finish.as_ref().map_or("length", |f| f.tgi());
            Details {
                prefill: Some(Vec::new()),
                tokens: Some(tokens),
                ..details(seed, prompt_tokens, finish, generated)
            }
        });
        let out = Generated {
            details,
            generated_text: text,
        };
        return Ok(if route == TgiRoute::Root {
            sse::json_of(&[out])
        } else {
            sse::json_of(&out)
        });
    }
    Ok(stream::respond(
        g,
        TgiFraming {
            text: prefix,
            with_details,
            seed,
        },
    ))
}

/// TGI stream: one `{"token", "generated_text", "details"}` event per chunk of the first
/// sequence; the last carries the whole text (and details on request).
struct TgiFraming {
    text: String,
    with_details: bool,
    seed: u64,
}

impl Framing for TgiFraming {
    fn chunk(&mut self, c: Chunk, g: &Generation) -> Vec<Bytes> {
        if c.choice != 0 {
            return Vec::new();
        }
        self.text.push_str(&c.text);
        let mut frame = StreamFrame {
            token: StreamToken {
                id: c.token_ids,
                text: c.text,
                logprob: None,
                special: None,
            },
            generated_text: None,
            details: None,
        };
        if let Some(f) = &c.finish {
            frame.generated_text = Some(self.text.clone());
            if self.with_details {
                let (p, n) = g.usage();
                frame.details = Some(details(self.seed, p, f.tgi(), n));
            }
        }
        vec![sse::data_of(&frame)]
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        vec![sse::error_frame(e)]
    }
}
