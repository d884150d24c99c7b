//! The server's responses are exactly the typed wire values: every body and stream frame
//! deserializes into `qwen3vl::wire` and serializes back to the same JSON (nothing the types do
//! not model), validates against the schema `/openapi.json` gives for its route, and peers' odd
//! shapes read without failing the frame.

mod service_support;

use qwen3vl::service::openapi::standalone;
use qwen3vl::service::Server;
use qwen3vl::wire::error::ErrorBody;
use qwen3vl::wire::mindie::{InferFrame, Inferred, MetricsJson, TokenList, Tokenized};
use qwen3vl::wire::models::{Model, ModelList, TgiInfo, TritonModel, TritonServer};
use qwen3vl::wire::openai::{ChatChunk, ChatCompletion, Completion};
use qwen3vl::wire::tgi::{Generated, StreamFrame};
use qwen3vl::wire::triton::TritonOutput;
use qwen3vl::wire::vllm::GenerateText;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use service_support::*;

fn round_trips<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    // Log-probs are f32 on both sides; compare them as f32.
    let back = serde_json::to_value(&typed).unwrap();
    let mut diffs = Vec::new();
    diff("", &as_f32(&back), &as_f32(v), &mut diffs);
    assert!(diffs.is_empty(), "lost in the round trip: {diffs:#?}");
    typed
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (p, nx, ny) = (format!("{path}.{k}"), x.get(k), y.get(k));
                match (nx, ny) {
                    (Some(u), Some(w)) => diff(&p, u, w, out),
                    _ => out.push(format!("{p}: {nx:?} vs {ny:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), u, w, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

fn as_f32(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => json!(n.as_f64().unwrap() as f32),
        Value::Array(a) => Value::Array(a.iter().map(as_f32).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), as_f32(v))).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn openai_responses_are_the_wire_types() {
    let server = Server::start(config(settings()), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    let chat = json!({"model": "qwen3vl", "max_tokens": 4, "ignore_eos": true, "n": 2,
                      "logprobs": true, "top_logprobs": 2,
                      "messages": [{"role": "user", "content": [
                          {"type": "image_url", "image_url": {"url": png_data_url(32, 32)}},
                          {"type": "text", "text": "hi"}]}]});
    let v: Value = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let whole: ChatCompletion = round_trips(&v);
    assert_eq!(whole.choices.len(), 2);
    assert!(
        whole
            .usage
            .unwrap()
            .prompt_tokens_details
            .unwrap()
            .visual_tokens
            > 0
    );
    assert_eq!(whole.choices[0].logprobs.as_ref().unwrap().content.len(), 4);

    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let text = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&stream)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (frames, done) = sse_json(&text);
    assert!(done && frames.len() > 2);
    for f in &frames {
        let chunk: ChatChunk = round_trips(f);
        assert!(
            chunk.usage.is_some(),
            "include_usage: usage is null or set on every chunk"
        );
    }

    let completion = json!({"model": "qwen3vl", "prompt": "Once", "max_tokens": 3, "logprobs": 2,
                            "ignore_eos": true});
    let v: Value = c
        .post(format!("{base}/v1/completions"))
        .json(&completion)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let whole: Completion = round_trips(&v);
    assert_eq!(whole.choices[0].logprobs.as_ref().unwrap().tokens.len(), 3);
    let mut stream = completion.clone();
    stream["stream"] = json!(true);
    let text = c
        .post(format!("{base}/v1/completions"))
        .json(&stream)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (frames, done) = sse_json(&text);
    assert!(done);
    for f in &frames {
        round_trips::<Completion>(f);
    }
    server.stop().unwrap();
}

/// Reading peers: unknown shapes of optional parts read as absent, the rest still counts.
#[test]
fn odd_peer_frames_still_read() {
    let chunk: ChatChunk = serde_json::from_value(json!({
        "choices": [{"delta": {"content": "hi", "tool_calls": 7}, "logprobs": {"weird": true},
                     "finish_reason": 3}, "not a choice"],
        "usage": {}
    }))
    .unwrap();
    assert_eq!(chunk.choices.len(), 1);
    assert_eq!(chunk.choices[0].delta.content.as_deref(), Some("hi"));
    assert_eq!(chunk.choices[0].logprobs, None);
    assert_eq!(chunk.usage, Some(None));
    let whole: ChatCompletion = serde_json::from_value(json!({
        "choices": [{"message": {"content": "x", "reasoning": "r"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": 1}
    }))
    .unwrap();
    assert_eq!(whole.choices[0].message.reasoning.as_deref(), Some("r"));
    assert_eq!(whole.usage.unwrap().prompt_tokens, 5);
}

/// `/openapi.json` and a checker for values against the schemas it gives each route.
struct Spec {
    doc: Value,
}

impl Spec {
    async fn fetch(c: &reqwest::Client, base: &str) -> Spec {
        let doc: Value = c
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Spec { doc }
    }

    fn op(&self, path: &str, method: &str) -> &Value {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in /openapi.json");
        op
    }

    /// The 200 body schema (`stream`: one frame's, from `x-frame`).
    fn ok(&self, path: &str, method: &str, stream: bool) -> Value {
        let content = &self.op(path, method)["responses"]["200"]["content"];
        let s = if stream {
            &content["text/event-stream"]["x-frame"]
        } else {
            &content["application/json"]["schema"]
        };
        assert!(
            !s.is_null(),
            "{method} {path}: no schema (stream: {stream})"
        );
        s.clone()
    }

    fn error(&self, path: &str, method: &str) -> Value {
        self.op(path, method)["responses"]["default"]["content"]["application/json"]["schema"]
            .clone()
    }

    /// The validation errors of `v` against `schema` (empty: valid).
    fn errors(&self, schema: &Value, v: &Value) -> Vec<String> {
        let s = standalone(&self.doc, schema);
        let validator = jsonschema::validator_for(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
        validator.iter_errors(v).map(|e| e.to_string()).collect()
    }

    fn check(&self, schema: &Value, v: &Value, what: &str) {
        let errors = self.errors(schema, v);
        assert!(errors.is_empty(), "{what}: {errors:#?}\n{v}");
    }
}

async fn post_status(c: &reqwest::Client, url: &str, body: &Value) -> (u16, String) {
    let r = c.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// A 200 answer's body.
async fn post(c: &reqwest::Client, url: String, body: &Value) -> String {
    let (status, text) = post_status(c, &url, body).await;
    assert_eq!(status, 200, "{url} {body}: {text}");
    text
}

/// Triton frames: `data:{json}` without a space.
fn triton_frames(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data:"))
        .map(|j| serde_json::from_str(j.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn every_response_validates_against_openapi_json() {
    let server = Server::start(config(settings()), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    let spec = Spec::fetch(&c, &base).await;
    assert_eq!(spec.doc["openapi"], "3.1.0");
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/generate",
        "/generate_stream",
        "/",
        "/infer",
        "/infer_token",
        "/v1/tokenizer",
        "/v2/models/{model}/generate",
        "/v2/models/{model}/generate_stream",
    ] {
        assert!(
            spec.op(path, "post")["requestBody"].is_object(),
            "{path}: no request body"
        );
    }
    for path in [
        "/v1/models",
        "/v1/models/{model}",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        spec.op(path, "get");
    }
    let image = json!({"type": "image_url", "image_url": {"url": png_data_url(32, 32)}});

    // OpenAI chat and completions, whole and streamed.
    let chat = json!({"model": "qwen3vl", "max_tokens": 3, "ignore_eos": true, "n": 2,
                      "logprobs": true, "top_logprobs": 2,
                      "messages": [{"role": "user", "content": [image, {"type": "text", "text": "hi"}]}]});
    let body = post(&c, format!("{base}/v1/chat/completions"), &chat).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    spec.check(&spec.ok("/v1/chat/completions", "post", false), &v, "chat");
    round_trips::<ChatCompletion>(&v);
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let body = post(&c, format!("{base}/v1/chat/completions"), &stream).await;
    let (frames, done) = sse_json(&body);
    assert!(done && frames.len() > 2);
    let frame = spec.ok("/v1/chat/completions", "post", true);
    for f in &frames {
        spec.check(&frame, f, "chat chunk");
        round_trips::<ChatChunk>(f);
    }
    let completion = json!({"model": "qwen3vl", "prompt": "Once", "max_tokens": 3, "logprobs": 2, "ignore_eos": true});
    for streaming in [false, true] {
        let mut b = completion.clone();
        b["stream"] = json!(streaming);
        let body = post(&c, format!("{base}/v1/completions"), &b).await;
        let values = if streaming {
            sse_json(&body).0
        } else {
            vec![serde_json::from_str(&body).unwrap()]
        };
        let schema = spec.ok("/v1/completions", "post", streaming);
        for v in &values {
            spec.check(&schema, v, "completion");
            round_trips::<Completion>(v);
        }
    }

    // vLLM /generate: whole, then NUL-separated frames.
    let vllm = json!({"prompt": [{"type": "text", "text": "Say"}, image], "max_tokens": 3,
                      "ignore_eos": true});
    let body = post(&c, format!("{base}/generate"), &vllm).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    spec.check(&spec.ok("/generate", "post", false), &v, "vllm");
    assert!(round_trips::<GenerateText>(&v).text[0].starts_with("Say "));
    let mut b = vllm.clone();
    b["stream"] = json!(true);
    let body = post(&c, format!("{base}/generate"), &b).await;
    let frames: Vec<&str> = body.split('\0').filter(|f| !f.is_empty()).collect();
    assert!(!frames.is_empty());
    for f in frames {
        let v: Value = serde_json::from_str(f).unwrap();
        spec.check(&spec.ok("/generate", "post", true), &v, "vllm frame");
        round_trips::<GenerateText>(&v);
    }

    // TGI on /generate, /generate_stream and /, with details.
    let tgi = json!({"inputs": "Once upon", "parameters": {"max_new_tokens": 3, "details": true,
                     "decoder_input_details": true}});
    let body = post(&c, format!("{base}/generate"), &tgi).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    spec.check(&spec.ok("/generate", "post", false), &v, "tgi");
    let g: Generated = round_trips(&v);
    assert_eq!(g.details.unwrap().tokens.unwrap().len(), 3);
    let body = post(&c, format!("{base}/"), &tgi).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    spec.check(&spec.ok("/", "post", false), &v, "tgi root");
    round_trips::<Vec<Generated>>(&v);
    let mut tgi = tgi.clone();
    tgi["parameters"]["decoder_input_details"] = json!(false);
    let body = post(&c, format!("{base}/generate_stream"), &tgi).await;
    let frames: Vec<Value> = sse_json(&body).0;
    let last: StreamFrame = round_trips(frames.last().unwrap());
    assert!(last.generated_text.is_some() && last.details.is_some());
    for f in &frames {
        spec.check(&spec.ok("/generate_stream", "post", true), f, "tgi frame");
        round_trips::<StreamFrame>(f);
    }

    // MindIE /infer (and /infer_token), whole and streamed, with and without details.
    for (path, details) in [("/infer", true), ("/infer_token", false)] {
        let infer = json!({"inputs": "Once upon", "parameters": {"max_new_tokens": 3,
                           "details": details}});
        let body = post(&c, format!("{base}{path}"), &infer).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        spec.check(&spec.ok(path, "post", false), &v, "infer");
        assert_eq!(round_trips::<Inferred>(&v).details.is_some(), details);
        let mut b = infer.clone();
        b["stream"] = json!(true);
        let body = post(&c, format!("{base}{path}"), &b).await;
        let frames = sse_json(&body).0;
        assert!(frames.len() >= 3);
        for f in &frames {
            spec.check(&spec.ok(path, "post", true), f, "infer frame");
            round_trips::<InferFrame>(f);
        }
    }

    // Triton generate and generate_stream.
    let triton = json!({"id": "a-1", "text_input": "Once upon",
                        "parameters": {"max_new_tokens": 3, "details": true}});
    let body = post(&c, format!("{base}/v2/models/qwen3vl/generate"), &triton).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    spec.check(
        &spec.ok("/v2/models/{model}/generate", "post", false),
        &v,
        "triton",
    );
    assert_eq!(round_trips::<TritonOutput>(&v).id, "a-1");
    let body = post(
        &c,
        format!("{base}/v2/models/qwen3vl/generate_stream"),
        &triton,
    )
    .await;
    let frames = triton_frames(&body);
    assert!(!frames.is_empty());
    for f in &frames {
        spec.check(
            &spec.ok("/v2/models/{model}/generate_stream", "post", true),
            f,
            "triton frame",
        );
        round_trips::<TritonOutput>(f);
    }

    // Tokenizer, models.
    for decode in [false, true] {
        let body = post(
            &c,
            format!("{base}/v1/tokenizer"),
            &json!({"inputs": "hello world", "do_decode": decode}),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        spec.check(&spec.ok("/v1/tokenizer", "post", false), &v, "tokenizer");
        let t: Tokenized = round_trips(&v);
        assert_eq!(matches!(t.tokens, TokenList::Texts(_)), decode);
    }
    let get = |path: &str| c.get(format!("{base}{path}")).send();
    let v: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    spec.check(&spec.ok("/v1/models", "get", false), &v, "models");
    round_trips::<ModelList>(&v);
    let v: Value = get("/v1/models/qwen3vl")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    spec.check(&spec.ok("/v1/models/{model}", "get", false), &v, "model");
    round_trips::<Model>(&v);
    for (path, route) in [
        ("/info", "/info"),
        ("/v2", "/v2"),
        ("/v2/models/qwen3vl", "/v2/models/{model}"),
        ("/metrics-json", "/metrics-json"),
    ] {
        let v: Value = get(path).await.unwrap().json().await.unwrap();
        spec.check(&spec.ok(route, "get", false), &v, path);
    }
    let v: Value = get("/info").await.unwrap().json().await.unwrap();
    round_trips::<TgiInfo>(&v);
    let v: Value = get("/v2").await.unwrap().json().await.unwrap();
    round_trips::<TritonServer>(&v);
    let v: Value = get("/v2/models/qwen3vl")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    round_trips::<TritonModel>(&v);
    let v: Value = get("/metrics-json").await.unwrap().json().await.unwrap();
    round_trips::<MetricsJson>(&v);

    // Errors: MindIE's body.
    let (st, body) = post_status(
        &c,
        &format!("{base}/v1/chat/completions"),
        &json!({"messages": [], "temperature": -1}),
    )
    .await;
    assert_eq!(st, 422);
    let v: Value = serde_json::from_str(&body).unwrap();
    spec.check(&spec.error("/v1/chat/completions", "post"), &v, "error");
    round_trips::<ErrorBody>(&v);
    server.stop().unwrap();
}

/// The checks above can fail: values of the wrong shape do not validate.
#[tokio::test]
async fn openapi_json_refuses_wrong_shapes() {
    let server = Server::start(config(settings()), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    let spec = Spec::fetch(&c, &base).await;
    let chat = spec.ok("/v1/chat/completions", "post", false);
    let good = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                                   "tool_calls": []}, "logprobs": null, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    spec.check(&chat, &good, "a hand-written chat.completion");
    for (pointer, bad) in [
        ("/choices", json!("none")),
        ("/usage/prompt_tokens", json!(-3)),
        ("/choices/0/message/content", json!(5)),
        ("/created", json!("yesterday")),
    ] {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = bad;
        assert!(
            !spec.errors(&chat, &v).is_empty(),
            "{pointer} of the wrong type validated"
        );
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("choices");
    assert!(
        !spec.errors(&chat, &v).is_empty(),
        "a chat.completion without choices validated"
    );
    let frame = spec.ok("/infer", "post", true);
    assert!(
        !spec.errors(&frame, &json!({"prefill_time": 3})).is_empty(),
        "an infer frame needs its token"
    );
    let error = spec.error("/infer", "post");
    assert!(!spec.errors(&error, &json!({"error": 1})).is_empty());
    server.stop().unwrap();
}
