//! Health and metrics: `GET /health`, `/v2/health/live`, `/v2/health/ready`,
//! `/v2/models/{model}/ready` (200 with an empty body when serving; ready says 503 while all
//! `maxLinkNum` slots are busy or the server is stopping), `GET /metrics` (Prometheus text)
//! and `GET /metrics-json` (MindIE's averages view).

use crate::wire::mindie::{MetricLabels, MetricSample, MetricsJson};
use actix_web::web::{Data, Path};
use actix_web::HttpResponse;

use crate::service::errors::ApiError;
use crate::service::sse;
use crate::service::state::AppState;

pub async fn health(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.is_stopping() {
        return Err(ApiError::unavailable("the server is stopping"));
    }
    Ok(HttpResponse::Ok().finish())
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().finish()
}

pub async fn ready(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.is_stopping() {
        return Err(ApiError::unavailable("the server is stopping"));
    }
    if state.links.busy() {
        return Err(ApiError::unavailable(
            "busy: every maxLinkNum slot is taken",
        ));
    }
    Ok(HttpResponse::Ok().finish())
}

pub async fn model_ready(
    state: Data<AppState>,
    model: Path<String>,
) -> Result<HttpResponse, ApiError> {
    if *model != state.config.served_model_name {
        return Err(ApiError::not_found(format!("model `{model}` not found")));
    }
    ready(state).await
}

pub async fn metrics(state: Data<AppState>) -> HttpResponse {
    let text = state.metrics.render(
        &state.config.served_model_name,
        state.pipeline.stats(),
        state.links.stats(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

pub async fn metrics_json(state: Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let avg_ms = |h: &crate::service::metrics::Histogram| {
        h.mean().map_or(0, |s| (s * 1000.0).round() as u64)
    };
    let stats = state.pipeline.stats();
    let link = state.links.stats();
    let instance = format!("{}:{}", state.config.host, state.config.port);
    let item = |name: &str, value: String| MetricSample {
        metric: vec![MetricLabels {
            name: name.into(),
            job: "node".into(),
            instance: instance.clone(),
        }],
        value,
    };
    sse::json_of(&MetricsJson {
        result_type: "vector".into(),
        result: vec![
            item("TTFT", avg_ms(&m.ttft).to_string()),
            item("TBT", avg_ms(&m.tpot).to_string()),
            item(
                "waitingInferRequestNum",
                (stats.waiting + link.queued).to_string(),
            ),
            item("processingInferRequestNum", stats.running.to_string()),
            item("remainBlocks", stats.free_blocks.to_string()),
        ],
    })
}
