//! The route table (MindIE's `http_handler.cpp` registrations that matter to clients).

pub mod completions;
pub mod generate;
pub mod health;
pub mod infer;
pub mod models;
pub mod openai_chat;
pub mod tokenizer;
pub mod triton;

use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(openai_chat::handle))
        .route("/v1/completions", web::post().to(completions::handle))
        .route("/generate", web::post().to(generate::generate))
        .route(
            "/generate_stream",
            web::post().to(generate::generate_stream),
        )
        .route("/", web::post().to(generate::root))
        .route("/infer", web::post().to(infer::handle))
        .route("/infer_token", web::post().to(infer::handle))
        .route("/v1/tokenizer", web::post().to(tokenizer::handle))
        .route("/v1/models", web::get().to(models::list))
        .route("/v1/models/{model}", web::get().to(models::one))
        .route("/info", web::get().to(models::info))
        .route("/v2", web::get().to(models::v2))
        .route("/v2/models/{model}", web::get().to(models::v2_model))
        .route(
            "/v2/models/{model}/generate",
            web::post().to(triton::generate),
        )
        .route(
            "/v2/models/{model}/generate_stream",
            web::post().to(triton::generate_stream),
        )
        .route("/health", web::get().to(health::health))
        .route("/v2/health/live", web::get().to(health::live))
        .route("/v2/health/ready", web::get().to(health::ready))
        .route(
            "/v2/models/{model}/ready",
            web::get().to(health::model_ready),
        )
        .route("/metrics", web::get().to(health::metrics))
        .route("/metrics-json", web::get().to(health::metrics_json))
        .route(
            "/openapi.json",
            web::get().to(crate::service::openapi::handle),
        );
}

/// Unknown paths and methods: MindIE's error body with 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}
