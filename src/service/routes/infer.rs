//! MindIE's native `POST /infer` (and `/infer_token`, the same handler): `inputs` (text or a
//! multimodal list) or `input_id` (token ids), TGI-style `parameters`, `data:` frames without
//! `[DONE]` carrying per-frame prefill/decode milliseconds.

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::generate::tgi_prompt;
use crate::pipeline::SamplingParams;
use crate::service::disconnect::PeerSocket;
use crate::service::errors::ApiError;
use crate::service::generation::{Chunk, Generation};
use crate::service::params::{parse_body, Body, TextOrParts, TgiParameters};
use crate::service::sse;
use crate::service::state::{AppState, PromptInput};
use crate::service::stream::{self, Framing};
use crate::wire::mindie::{InferDetails, InferFrame, InferToken, Inferred};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct InferRequest {
    #[serde(default)]
    inputs: Option<TextOrParts>,
    #[serde(default)]
    input_id: Option<Vec<u32>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    parameters: Option<TgiParameters>,
}

/// What an `/infer` body asks to continue: text or parts (built into a prompt by the handler,
/// since TGI's `truncate` needs the tokenizer), or token ids.
#[derive(Debug)]
pub enum InferPrompt {
    Inputs(TextOrParts),
    Ids(Vec<u32>),
}

/// An `/infer` request that passed the route's checks.
#[derive(Debug)]
pub struct InferCall {
    pub prompt: InferPrompt,
    pub truncate: Option<i64>,
    pub params: SamplingParams,
    pub stream: bool,
    pub with_details: bool,
}

/// The route's body checks, in the handler's order; free of server state so that the fuzz
/// targets run exactly these.
pub fn validate(body: &[u8]) -> Result<InferCall, ApiError> {
    let req: InferRequest = parse_body(body)?;
    let p = req.parameters.unwrap_or_default();
    let params = p.to_params()?;
    let prompt = match (req.inputs, req.input_id) {
        (Some(_), Some(_)) => return Err(ApiError::validation("Input conflict.")),
        (None, None) => {
            return Err(ApiError::validation(
                "the body needs `inputs` or `input_id`",
            ))
        }
        (Some(i), None) => InferPrompt::Inputs(i),
        (None, Some(ids)) => InferPrompt::Ids(ids),
    };
    Ok(InferCall {
        prompt,
        truncate: p.truncate,
        params,
        stream: req.stream.unwrap_or(false),
        with_details: p.details(),
    })
}

pub async fn handle(
    http: HttpRequest,
    state: Data<AppState>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    let peer = PeerSocket::of(&http);
    let state = state.into_inner();
    let InferCall {
        prompt,
        truncate,
        params,
        stream,
        with_details,
    } = validate(&body)?;
    let prompt = match prompt {
        InferPrompt::Inputs(i) => tgi_prompt(&state, i, truncate).await?,
        InferPrompt::Ids(ids) => PromptInput::Tokens(ids),
    };
    let permit = state.admit().await?;
    let g = state.generate(prompt, params, permit, peer).await?;
    let seed = g.seed;
    if !stream {
        let c = g.collect().await?;
        let ch = c.choices.first().cloned().unwrap_or_default();
        let details = with_details.then(|| InferDetails {
            finish_reason: ch.finish.as_ref().map_or("length", |f| f.tgi()).to_string(),
            generated_tokens: ch.token_ids.len(),
            generated_token_ids: Some(ch.token_ids.clone()),
            seed,
        });
        return Ok(sse::json_of(&Inferred {
            generated_text: ch.text,
            details,
        }));
    }
    Ok(stream::respond(
        g,
        InferFraming {
            text: String::new(),
            with_details,
            seed,
        },
    ))
}

/// MindIE `/infer` stream: per chunk of the first sequence its token ids, text and timings;
/// the last frame has the whole text (and details on request) instead of token text.
struct InferFraming {
    text: String,
    with_details: bool,
    seed: u64,
}

impl Framing for InferFraming {
    fn chunk(&mut self, c: Chunk, _g: &Generation) -> Vec<Bytes> {
        if c.choice != 0 {
            return Vec::new();
        }
        self.text.push_str(&c.text);
        let (generated_text, details, text) = match &c.finish {
            None => (None, None, Some(c.text)),
            Some(f) => {
                let details = self.with_details.then(|| InferDetails {
                    finish_reason: f.tgi().to_string(),
                    generated_tokens: f.usage.completion_tokens,
                    generated_token_ids: None,
                    seed: self.seed,
                });
                (Some(self.text.clone()), Some(details), None)
            }
        };
        vec![sse::data_of(&InferFrame {
            prefill_time: c.prefill_ms,
            decode_time: c.decode_ms,
            generated_text,
            details,
            token: InferToken {
                id: c.token_ids,
                text,
            },
        })]
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        vec![sse::error_frame(e)]
    }
}
