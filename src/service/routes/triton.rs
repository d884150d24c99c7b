//! Triton-style text generation, `POST /v2/models/{model}/generate[_stream]` (MindIE's
//! `single_req_triton_text_infer_interface`; AISBench's `TritonCustomAPI` speaks it):
//! `text_input` (text or a multimodal list), TGI-style `parameters`, stream frames prefixed
//! `data:` without a space.

use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::generate::tgi_prompt;
use crate::pipeline::SamplingParams;
use crate::service::disconnect::PeerSocket;
use crate::service::errors::ApiError;
use crate::service::generation::{Chunk, Generation};
use crate::service::params::{parse_body, Body, TextOrParts, TgiParameters};
use crate::service::sse;
use crate::service::state::AppState;
use crate::service::stream::{self, Framing};
use crate::wire::triton::{TritonDetails, TritonOutput};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct TritonRequest {
    #[serde(default)]
    id: Option<String>,
    text_input: TextOrParts,
    #[serde(default)]
    parameters: Option<TgiParameters>,
}

fn valid_id(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `data:{json}\n\n` — Triton's framing has no space after the colon.
fn frame<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(format!("data:{}\n\n", sse::frame_json(v)))
}

pub async fn generate(
    http: HttpRequest,
    state: Data<AppState>,
    model: Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    run(PeerSocket::of(&http), state, model, body, false).await
}

pub async fn generate_stream(
    http: HttpRequest,
    state: Data<AppState>,
    model: Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    run(PeerSocket::of(&http), state, model, body, true).await
}

/// A Triton request that passed the route's checks (`id` is `None` when the server makes one).
#[derive(Debug)]
pub struct TritonCall {
    pub id: Option<String>,
    pub text_input: TextOrParts,
    pub truncate: Option<i64>,
    pub params: SamplingParams,
    pub with_details: bool,
}

/// The route's body checks, in the handler's order (after the model name in the path); free
/// of server state so that the fuzz targets run exactly these.
pub fn validate(body: &[u8]) -> Result<TritonCall, ApiError> {
    let req: TritonRequest = parse_body(body)?;
    if let Some(id) = &req.id {
        if !valid_id(id) {
            return Err(ApiError::validation(
                "`id` must match ^[a-zA-Z0-9_-]{1,256}$",
            ));
        }
    }
    let mut p = req.parameters.unwrap_or_default();
    // Triton accepts top_k = 0 (off), which the TGI validation refuses.
    if p.top_k == Some(0) {
        p.top_k = None;
    }
    let params = p.to_params()?;
    Ok(TritonCall {
        id: req.id,
        text_input: req.text_input,
        truncate: p.truncate,
        params,
        with_details: p.details(),
    })
}

async fn run(
    peer: Option<PeerSocket>,
    state: Data<AppState>,
    model: Path<String>,
    Body(body): Body,
    streaming: bool,
) -> Result<HttpResponse, ApiError> {
    let state = state.into_inner();
    if *model != state.config.served_model_name {
        return Err(ApiError::not_found(format!("model `{model}` not found")));
    }
    let TritonCall {
        id,
        text_input,
        truncate,
        params,
        with_details,
    } = validate(&body)?;
    let id = id.unwrap_or_else(|| state.request_id());
    let prompt = tgi_prompt(&state, text_input, truncate).await?;
    let permit = state.admit().await?;
    let g = state.generate(prompt, params, permit, peer).await?;
    let model = state.config.served_model_name.clone();
    if !streaming {
        let c = g.collect().await?;
        let ch = c.choices.first().cloned().unwrap_or_default();
        let details = with_details.then(|| TritonDetails {
            finish_reason: Some(ch.finish.as_ref().map_or("length", |f| f.tgi()).to_string()),
            generated_tokens: ch.token_ids.len(),
            first_token_cost: None,
            decode_cost: None,
        });
        return Ok(sse::json_of(&TritonOutput {
            id,
            model_name: model,
            model_version: None,
            text_output: ch.text,
            details,
            prefill_time: None,
            decode_time: None,
        }));
    }
    Ok(stream::respond(
        g,
        TritonFraming {
            id,
            model,
            with_details,
            generated: 0,
        },
    ))
}

/// Triton `generate_stream`: one `data:{json}` event per chunk of the first sequence.
struct TritonFraming {
    id: String,
    model: String,
    with_details: bool,
    generated: usize,
}

impl Framing for TritonFraming {
    fn chunk(&mut self, c: Chunk, _g: &Generation) -> Vec<Bytes> {
        if c.choice != 0 {
            return Vec::new();
        }
        self.generated += c.token_ids.len();
        let details = self.with_details.then(|| TritonDetails {
            finish_reason: c.finish.as_ref().map(|f| f.tgi().to_string()),
            generated_tokens: self.generated,
            first_token_cost: None,
            decode_cost: None,
        });
        vec![frame(&TritonOutput {
            id: self.id.clone(),
            model_name: self.model.clone(),
            model_version: None,
            text_output: c.text,
            details,
            prefill_time: Some(c.prefill_ms),
            decode_time: Some(c.decode_ms),
        })]
    }

    fn error(&self, e: &ApiError) -> Vec<Bytes> {
        vec![frame(&e.wire())]
    }
}
