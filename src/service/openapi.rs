//! `GET /openapi.json`: the server's OpenAPI 3.1 document, generated from the types the routes
//! read (request bodies, `Deserialize`) and write (`crate::wire`, `Serialize`), so the document
//! cannot drift from what the server does.
//!
//! Streams: OpenAPI 3.1 cannot describe the frames of an event stream (or of vLLM's
//! NUL-separated one), so each streaming response carries the schema of one frame's JSON in
//! the `x-frame` extension next to its media type.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::service::params::VllmSampling;
use crate::service::routes::{
    completions::CompletionRequest, generate::TgiRequest, generate::VllmRequest,
    infer::InferRequest, openai_chat::ChatRequest, tokenizer::TokenizeRequest,
    triton::TritonRequest,
};
use crate::wire::{error::ErrorBody, mindie, models, openai, tgi, triton, vllm};

/// Where schemas live in the document; both generators point their `$ref`s here.
const DEFS: &str = "/components/schemas";

/// One generator for what the server reads and one for what it writes: the same Rust type
/// can be optional to read (a `default`) and always present when written.
struct Schemas {
    read: SchemaGenerator,
    write: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        let settings = || {
            SchemaSettings::draft2020_12().with(|s| {
                s.definitions_path = DEFS.into();
                s.meta_schema = None;
            })
        };
        Schemas {
            read: settings().for_deserialize().into_generator(),
            write: settings().for_serialize().into_generator(),
        }
    }

    fn reads<T: JsonSchema>(&mut self) -> Value {
        self.read.subschema_for::<T>().to_value()
    }

    fn writes<T: JsonSchema>(&mut self) -> Value {
        self.write.subschema_for::<T>().to_value()
    }

    /// Every named schema of both generators, and the names both define differently (none:
    /// types whose read and write shapes differ are only ever used one way; a test holds it,
    /// since both sides' `$ref`s point at the one name).
    fn components(mut self) -> (Map<String, Value>, Vec<String>) {
        let mut all = self.read.take_definitions(true);
        let mut conflicts = Vec::new();
        for (name, schema) in self.write.take_definitions(true) {
            if all.get(&name).is_some_and(|existing| *existing != schema) {
                conflicts.push(name.clone());
            }
            all.insert(name, schema);
        }
        (all, conflicts)
    }
}

/// A request body: the route's own type, together with the sampling fields it reads from the
/// same object.
fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn all_of(parts: &[Value]) -> Value {
    json!({ "allOf": parts })
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// 200 with a JSON body, or (when the request asks to stream) frames of `frame`.
fn ok_or_stream(description: &str, whole: Value, media: &str, frame: Value) -> Value {
    json!({"description": description, "content": {
        "application/json": {"schema": whole},
        media: {"schema": {"type": "string"}, "x-frame": frame},
    }})
}

fn stream_only(description: &str, media: &str, frame: Value) -> Value {
    json!({"description": description, "content": {
        media: {"schema": {"type": "string"}, "x-frame": frame},
    }})
}

fn text(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn operation(summary: &str, request: Option<Value>, ok: Value, error: &Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "responses": {"200": ok, "default": {
            "description": "MindIE's error body (422 bad input, 404 unknown model, 503 stopping …)",
            "content": {"application/json": {"schema": error}},
        }},
    });
    if let Some(r) = request {
        op["requestBody"] = r;
    }
    op
}

fn model_param() -> Value {
    json!([{"name": "model", "in": "path", "required": true, "schema": {"type": "string"}}])
}

/// The whole document (`version`: the server's).
pub fn document(version: &str) -> Value {
    build(version).0
}

/// The document and the schema names its read and write sides define differently.
fn build(version: &str) -> (Value, Vec<String>) {
    let mut s = Schemas::new();
    let err = s.writes::<ErrorBody>();
    let vllm_sampling = s.reads::<VllmSampling>();

    let chat_req = all_of(&[s.reads::<ChatRequest>(), vllm_sampling.clone()]);
    let completion_req = all_of(&[s.reads::<CompletionRequest>(), vllm_sampling.clone()]);
    let vllm_req = all_of(&[s.reads::<VllmRequest>(), vllm_sampling]);
    let tgi_req = s.reads::<TgiRequest>();
    let infer_req = s.reads::<InferRequest>();
    let triton_req = s.reads::<TritonRequest>();
    let tokenize_req = s.reads::<TokenizeRequest>();

    let chat = s.writes::<openai::ChatCompletion>();
    let chat_chunk = s.writes::<openai::ChatChunk>();
    let completion = s.writes::<openai::Completion>();
    let vllm_text = s.writes::<vllm::GenerateText>();
    let tgi_whole = s.writes::<tgi::Generated>();
    let tgi_frame = s.writes::<tgi::StreamFrame>();
    let inferred = s.writes::<mindie::Inferred>();
    let infer_frame = s.writes::<mindie::InferFrame>();
    let triton_out = s.writes::<triton::TritonOutput>();
    let tokenized = s.writes::<mindie::Tokenized>();
    let model_list = s.writes::<models::ModelList>();
    let model = s.writes::<models::Model>();
    let tgi_info = s.writes::<models::TgiInfo>();
    let triton_server = s.writes::<models::TritonServer>();
    let triton_model = s.writes::<models::TritonModel>();
    let metrics_json = s.writes::<mindie::MetricsJson>();

    let sse = "text/event-stream";
    let post = |summary: &str, req: Value, ok: Value| json!({"post": operation(summary, Some(body(req)), ok, &err)});
    let get = |summary: &str, ok: Value| json!({"get": operation(summary, None, ok, &err)});
    let with_model = |mut item: Value| {
        item["parameters"] = model_param();
        item
    };

    let paths = json!({
        "/v1/chat/completions": post(
            "OpenAI chat (text, images, video); `stream: true` for SSE chunks ended by `[DONE]`",
            chat_req,
            ok_or_stream("a chat.completion", chat, sse, chat_chunk),
        ),
        "/v1/completions": post(
            "OpenAI completions over a text or token-id prompt",
            completion_req,
            ok_or_stream("a text_completion", completion.clone(), sse, completion),
        ),
        "/generate": post(
            "vLLM `/generate` when the body has `prompt` (frames end with NUL, no SSE framing); \
             TGI when it has `inputs`",
            json!({"oneOf": [vllm_req, tgi_req.clone()]}),
            json!({"description": "vLLM: one text per sequence; TGI: the generated text", "content": {
                "application/json": {"schema": {"oneOf": [vllm_text, tgi_whole.clone()]}},
                sse: {"schema": {"type": "string"}, "x-frame": {"oneOf": [vllm_text, tgi_frame]}},
            }}),
        ),
        "/generate_stream": post(
            "TGI, always streaming",
            tgi_req.clone(),
            stream_only("TGI token events", sse, tgi_frame.clone()),
        ),
        "/": post(
            "TGI; `stream` selects; a non-stream answer is a one-element list",
            tgi_req,
            ok_or_stream(
                "TGI",
                json!({"type": "array", "items": tgi_whole}),
                sse,
                tgi_frame,
            ),
        ),
        "/infer": post(
            "MindIE native inference: `inputs` (text or parts) or `input_id` (token ids)",
            infer_req.clone(),
            ok_or_stream("MindIE", inferred.clone(), sse, infer_frame.clone()),
        ),
        "/infer_token": post(
            "The same as `/infer`",
            infer_req,
            ok_or_stream("MindIE", inferred, sse, infer_frame),
        ),
        "/v1/tokenizer": post(
            "Token count and ids (or texts with `do_decode`)",
            tokenize_req,
            json_ok("tokens", tokenized),
        ),
        "/v2/models/{model}/generate": with_model(post(
            "Triton generate extension",
            triton_req.clone(),
            json_ok("Triton output", triton_out.clone()),
        )),
        "/v2/models/{model}/generate_stream": with_model(post(
            "Triton generate extension, streaming (`data:` without a space)",
            triton_req,
            stream_only("Triton events", sse, triton_out),
        )),
        "/v1/models": get("The served model (nlohmann::json layout)", json_ok("models", model_list)),
        "/v1/models/{model}": with_model(get("One model", json_ok("model", model))),
        "/info": get("TGI server information", json_ok("info", tgi_info)),
        "/v2": get("Triton server metadata", json_ok("metadata", triton_server)),
        "/v2/models/{model}": with_model(get(
            "Triton model metadata",
            json_ok("metadata", triton_model),
        )),
        "/health": get("Liveness", text("ok")),
        "/v2/health/live": get("Triton liveness", text("ok")),
        "/v2/health/ready": get("Readiness: 200 once the model is loaded, 503 while stopping", text("ready")),
        "/v2/models/{model}/ready": with_model(get("Model readiness", text("ready"))),
        "/metrics": get("Prometheus metrics", text("text exposition format 0.0.4")),
        "/metrics-json": get("MindIE's JSON metrics", json_ok("metrics", metrics_json)),
        "/openapi.json": get("This document", json_ok("OpenAPI 3.1", json!({"type": "object"}))),
    });

    let (schemas, conflicts) = s.components();
    let doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "qwen3vl",
            "version": version,
            "description": "Qwen3-VL inference server speaking MindIE, vLLM, OpenAI, TGI and Triton. \
                            Streaming responses give each frame's schema in `x-frame`.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": schemas},
    });
    (doc, conflicts)
}

/// A JSON Schema that validates one value against `schema` (a `$ref` into, or a schema using,
/// `document`'s components): the schema with the document's components beside it.
pub fn standalone(document: &Value, schema: &Value) -> Value {
    let mut out = match schema {
        Value::Object(m) => Value::Object(m.clone()),
        other => json!({ "allOf": [other] }),
    };
    out["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    out["components"] = document["components"].clone();
    out
}

/// The handler; the document is built on the first call and kept.
pub async fn handle() -> HttpResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(|| document(env!("CARGO_PKG_VERSION")).to_string());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_and_write_sides_agree_on_shared_names() {
        let (doc, conflicts) = super::build("0");
        assert!(conflicts.is_empty(), "defined differently: {conflicts:?}");
        assert!(doc["components"]["schemas"]["ChatCompletion"].is_object());
    }
}
