//! Model metadata: `GET /v1/models[/{model}]` (OpenAI), `GET /info` (TGI), `GET /v2[/models/{model}]`
//! (Triton), shaped as MindIE's `parse_protocol.cpp` writes them.

use actix_web::web::{Data, Path};
use actix_web::HttpResponse;
use serde::Serialize;

use crate::service::errors::ApiError;
use crate::service::sse;
use crate::service::state::AppState;
use crate::wire::models::{
    Model, ModelCard, ModelList, TgiInfo, TgiModelInfo, TritonExtensions, TritonModel,
    TritonServer, TritonTensor,
};

/// MindIE masks all but the last path component of the weights folder.
fn masked_root(state: &AppState) -> String {
    let name = state
        .config
        .model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("***/{name}")
}

/// nlohmann::json output: keys sorted (serde_json keeps insertion order here, and the wire
/// types declare their fields sorted), four-space indent.
fn pretty<T: Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a wire value (string keys, no floats) into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8(buf).unwrap_or_default()
}

pub async fn list(state: Data<AppState>) -> HttpResponse {
    let v = ModelList {
        data: vec![ModelCard {
            id: state.config.served_model_name.clone(),
            object: "model".into(),
            owned_by: "MindIE Server".into(),
            parent: "null".into(),
            root: masked_root(&state),
        }],
        object: "list".into(),
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .body(pretty(&v))
}

fn check(state: &AppState, model: &str) -> Result<(), ApiError> {
    if model == state.config.served_model_name {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("model `{model}` not found")))
    }
}

pub async fn one(state: Data<AppState>, model: Path<String>) -> Result<HttpResponse, ApiError> {
    check(&state, &model)?;
    Ok(sse::json_of(&Model {
        id: state.config.served_model_name.clone(),
        object: "model".into(),
        created: state.created,
        owned_by: "MindIE Server".into(),
    }))
}

pub async fn info(state: Data<AppState>) -> HttpResponse {
    let s = &state.config.schedule;
    let max_input = s.max_input_token_len.min(s.max_seq_len.saturating_sub(1));
    sse::json_of(&TgiInfo {
        docker_label: None,
        max_batch_total_tokens: s.max_prefill_tokens,
        max_best_of: 1,
        max_concurrent_requests: s.max_batch_size,
        max_stop_sequences: None,
        max_waiting_tokens: None,
        sha: None,
        validation_workers: None,
        version: env!("CARGO_PKG_VERSION").into(),
        waiting_served_ratio: None,
        models: vec![TgiModelInfo {
            model_device_type: "cpu".into(),
            model_dtype: "bfloat16".into(),
            model_id: state.config.served_model_name.clone(),
            model_pipeline_tag: "image-text-to-text".into(),
            model_sha: None,
            max_total_tokens: s.max_seq_len,
        }],
        max_input_length: max_input,
    })
}

pub async fn v2(state: Data<AppState>) -> HttpResponse {
    let s = &state.config.schedule;
    sse::json_of(&TritonServer {
        name: "MindIE Server".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: TritonExtensions {
            max_iter_times: s.max_iter_times,
            prefill_policy_type: 0,
            decode_policy_type: 0,
            max_prefill_batch_size: s.max_prefill_batch_size,
            max_prefill_tokens: s.max_prefill_tokens,
        },
    })
}

pub async fn v2_model(
    state: Data<AppState>,
    model: Path<String>,
) -> Result<HttpResponse, ApiError> {
    check(&state, &model)?;
    let tensor = |name: &str| TritonTensor {
        name: name.into(),
        shape: vec![-1],
        datatype: "UINT32".into(),
    };
    Ok(sse::json_of(&TritonModel {
        name: state.config.served_model_name.clone(),
        platform: "MindIE Server".into(),
        inputs: vec![tensor("input0")],
        outputs: vec![tensor("output0")],
    }))
}
