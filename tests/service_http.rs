//! The HTTP service end to end: a real server on a loopback port (tiny random checkpoint, real
//! tokenizer) spoken to over HTTP with reqwest — every endpoint streaming and not, image and
//! video inputs, the error paths, client disconnect, 50 concurrent streams.

mod service_support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use qwen3vl::service::Server;
use serde_json::{json, Value};
use service_support::*;

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| Server::start(config(settings()), false).expect("server starts"))
}

fn url(path: &str) -> String {
    format!("http://{}{path}", server().local_addr())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn post(path: &str, body: Value) -> (u16, String) {
    let r = client().post(url(path)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

async fn post_json(path: &str, body: Value) -> Value {
    let (status, text) = post(path, body).await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

fn image_chat(stream: bool, max_tokens: usize) -> Value {
    json!({
        "model": "qwen3vl",
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": png_data_url(256, 256)}},
            {"type": "text", "text": "What is in this image?"}
        ]}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": stream,
        "ignore_eos": true,
    })
}

#[tokio::test]
async fn metadata_and_health() {
    let c = client();
    let r = c.get(url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("\n    \"data\""), "four-space indent: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"][0]["id"], "qwen3vl");
    assert_eq!(v["data"][0]["owned_by"], "MindIE Server");
    assert!(v["data"][0]["root"].as_str().unwrap().starts_with("***/"));
    let v: Value = c
        .get(url("/v1/models/qwen3vl"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "model");
    let r = c.get(url("/v1/models/other")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_type"],
        "NotFoundError"
    );
    for p in [
        "/health",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/qwen3vl/ready",
    ] {
        let r = c.get(url(p)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        assert!(r.text().await.unwrap().is_empty(), "{p} body");
    }
    let info: Value = c
        .get(url("/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["max_input_length"], 3072);
    let v2: Value = c
        .get(url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["extensions"]["max_iter_times"], 512);
    let m: Value = c
        .get(url("/v2/models/qwen3vl"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["name"], "qwen3vl");
    let mj: Value = c
        .get(url("/metrics-json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mj["result"][4]["metric"][0]["__name__"], "remainBlocks");
    let r = c.get(url("/no/such/path")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn chat_non_stream_text_and_image() {
    let text = post_json(
        "/v1/chat/completions",
        json!({"model": "qwen3vl", "messages": [{"role": "user", "content": "Hello"}],
               "max_tokens": 5, "temperature": 0, "ignore_eos": true,
               "do_sample": false, "stream_options": {"include_usage": true}, "user": "x"}),
    )
    .await;
    assert!(text["id"].as_str().unwrap().starts_with("endpoint_common_"));
    assert_eq!(text["object"], "chat.completion");
    assert_eq!(text["choices"][0]["message"]["role"], "assistant");
    assert_eq!(text["choices"][0]["finish_reason"], "length");
    assert_eq!(text["usage"]["completion_tokens"], 5);
    let text_prompt = text["usage"]["prompt_tokens"].as_u64().unwrap();
    let img = post_json("/v1/chat/completions", image_chat(false, 4)).await;
    let u = &img["usage"];
    // 256×256 → 16×16 patches of 16 px → 64 tokens after the 2×2 merge.
    assert!(
        u["prompt_tokens"].as_u64().unwrap() >= text_prompt + 64,
        "{u}"
    );
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 4
    );
}

#[tokio::test]
async fn chat_stream_mindie_framing_with_include_usage() {
    let mut body = image_chat(true, 6);
    body["stream_options"] = json!({"include_usage": true});
    let r = client()
        .post(url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (frames, done) = sse_json(&r.text().await.unwrap());
    assert!(done, "ends with data: [DONE]");
    assert_eq!(
        frames[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    for f in &frames[1..frames.len() - 1] {
        assert_eq!(f["object"], "chat.completion.chunk");
        assert_eq!(f["choices"][0]["delta"]["role"], "assistant");
    }
    let last_content = &frames[frames.len() - 2];
    assert_eq!(last_content["choices"][0]["finish_reason"], "length");
    assert_eq!(last_content["usage"]["completion_tokens"], 6);
    let usage_chunk = frames.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], last_content["usage"]);
    assert!(usage_chunk["usage"]["prompt_tokens"].as_u64().unwrap() > 64);
}

#[tokio::test]
async fn chat_with_video_string_and_object_forms() {
    for video in [
        json!(media_root().join("clip.mp4")),
        json!({"url": format!("file://{}/clip.avi", media_root().display())}),
    ] {
        let v = post_json(
            "/v1/chat/completions",
            json!({"model": "qwen3vl", "max_tokens": 3, "temperature": 0, "ignore_eos": true,
                   "messages": [{"role": "user", "content": [
                       {"type": "video_url", "video_url": video},
                       {"type": "text", "text": "Describe this video."}]}]}),
        )
        .await;
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 30, "{v}");
    }
}

#[tokio::test]
async fn vllm_generate_list_and_string_prompts() {
    let v = post_json(
        "/generate",
        json!({"prompt": [{"type": "text", "text": "Describe this image."},
                          {"type": "image_url", "image_url": media_root().join("photo448.jpg")}],
               "max_tokens": 4, "temperature": 0, "ignore_eos": true, "model": "qwen3vl",
               "top_k": -1, "seed": 42, "stop_token_ids": [151645], "skip_special_tokens": true}),
    )
    .await;
    let t = v["text"][0].as_str().unwrap();
    assert!(t.starts_with("Describe this image. "), "{t}");
    let v = post_json(
        "/generate",
        json!({"prompt": "My name is Olivier and I", "max_tokens": 3, "temperature": 0}),
    )
    .await;
    assert!(v["text"][0]
        .as_str()
        .unwrap()
        .starts_with("My name is Olivier and I "));
    // Stream: NUL-terminated JSON objects of deltas, no SSE framing.
    let (status, body) = post(
        "/generate",
        json!({"prompt": "Hello", "max_tokens": 5, "temperature": 0, "ignore_eos": true, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.ends_with('\0') && !body.contains("data:"), "{body:?}");
    let parts: Vec<Value> = body
        .split_terminator('\0')
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(!parts.is_empty());
    assert!(parts
        .iter()
        .all(|p| p["text"].as_array().unwrap().len() == 1));
}

#[tokio::test]
async fn tgi_generate_stream_and_root() {
    let v = post_json(
        "/generate",
        json!({"inputs": "My name is Olivier and I",
               "parameters": {"max_new_tokens": 4, "details": true, "do_sample": false, "seed": 12,
                              "decoder_input_details": false, "watermark": false, "typical_p": 0.5}}),
    )
    .await;
    assert!(v["generated_text"].is_string());
    assert_eq!(v["details"]["generated_tokens"], 4);
    assert_eq!(v["details"]["finish_reason"], "length");
    assert_eq!(v["details"]["seed"], 12);
    assert_eq!(v["details"]["tokens"].as_array().unwrap().len(), 4);
    // Default max_new_tokens is 20; with do_sample false it may stop at EOS first.
    let (status, body) = post(
        "/generate_stream",
        json!({"inputs": "Hi", "parameters": {"max_new_tokens": 3, "details": true, "do_sample": false}}),
    )
    .await;
    assert_eq!(status, 200);
    let (frames, done) = sse_json(&body);
    assert!(!done, "TGI streams have no [DONE]");
    assert!(frames[0]["token"]["id"].is_array());
    let last = frames.last().unwrap();
    assert!(last["generated_text"].is_string());
    assert!(last["details"]["finish_reason"].is_string());
    let arr = post_json(
        "/",
        json!({"inputs": "Hi", "parameters": {"max_new_tokens": 2}}),
    )
    .await;
    assert!(arr[0]["generated_text"].is_string());
    let (status, body) = post(
        "/",
        json!({"inputs": "Hi", "stream": true, "parameters": {"max_new_tokens": 2}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!sse_json(&body).0.is_empty());
}

#[tokio::test]
async fn mindie_infer_native() {
    let v = post_json(
        "/infer",
        json!({"inputs": [{"type": "text", "text": "Describe this image."},
                          {"type": "image_url", "image_url": media_root().join("tiny.png")}],
               "stream": false,
               "parameters": {"max_new_tokens": 3, "details": true, "temperature": 0.5, "top_k": 10,
                              "top_p": 0.95, "do_sample": true, "priority": 5, "timeout": 10}}),
    )
    .await;
    assert_eq!(
        v["details"]["generated_token_ids"]
            .as_array()
            .unwrap()
            .len(),
        v["details"]["generated_tokens"].as_u64().unwrap() as usize
    );
    assert!(v["details"]["seed"].is_u64());
    let (status, body) = post(
        "/infer",
        json!({"input_id": [9707, 11, 847, 829, 374], "stream": true, "parameters": {"max_new_tokens": 4}}),
    )
    .await;
    assert_eq!(status, 200);
    let (frames, done) = sse_json(&body);
    assert!(!done);
    assert!(frames[0]["prefill_time"].is_u64(), "{}", frames[0]);
    assert!(frames[0]["decode_time"].is_null());
    let last = frames.last().unwrap();
    assert!(last["generated_text"].is_string());
    assert!(last["token"]["text"].is_null());
    let (status, body) = post("/infer", json!({"inputs": "a", "input_id": [1]})).await;
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Input conflict."
    );
}

#[tokio::test]
async fn triton_generate_and_stream() {
    let v = post_json(
        "/v2/models/qwen3vl/generate",
        json!({"id": "a123", "text_input": "My name is Olivier and I",
               "parameters": {"max_new_tokens": 3, "details": true, "do_sample": false, "batch_size": 100}}),
    )
    .await;
    assert_eq!(
        (v["id"].as_str(), v["model_name"].as_str()),
        (Some("a123"), Some("qwen3vl"))
    );
    assert!(v["text_output"].is_string() && v["model_version"].is_null());
    assert!(v["details"]["generated_tokens"].as_u64().unwrap() >= 1);
    let (status, body) = post(
        "/v2/models/qwen3vl/generate_stream",
        json!({"text_input": "Hi", "parameters": {"max_new_tokens": 3, "details": true, "top_k": 0}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.starts_with("data:{"), "no space after data: {body:?}");
    let (frames, _) = sse_json(&body);
    assert!(frames[0]["prefill_time"].is_u64());
    assert!(frames.last().unwrap()["details"]["finish_reason"].is_string());
    let (status, _) = post("/v2/models/other/generate", json!({"text_input": "x"})).await;
    assert_eq!(status, 404);
    let (status, _) = post(
        "/v2/models/qwen3vl/generate",
        json!({"id": "bad id!", "text_input": "x"}),
    )
    .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn completions_and_tokenizer() {
    let v = post_json(
        "/v1/completions",
        json!({"model": "qwen3vl", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0,
               "ignore_eos": true, "logprobs": 2}),
    )
    .await;
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let v = post_json(
        "/v1/completions",
        json!({"model": "qwen3vl", "prompt": [9707, 11, 847], "max_tokens": 2, "temperature": 0, "ignore_eos": true}),
    )
    .await;
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let (status, body) = post(
        "/v1/completions",
        json!({"model": "qwen3vl", "prompt": "Hi", "max_tokens": 3, "stream": true, "ignore_eos": true, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200);
    let (frames, done) = sse_json(&body);
    assert!(done);
    let last = frames.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 3);
    let t = post_json("/v1/tokenizer", json!({"inputs": "Hello world"})).await;
    assert_eq!(t["token_number"], 2);
    assert_eq!(t["tokens"], json!([9707, 1879]));
    let t = post_json(
        "/v1/tokenizer",
        json!({"inputs": "Hello world", "do_decode": true}),
    )
    .await;
    assert_eq!(t["tokens"], json!(["Hello", " world"]));
}

async fn expect_error(path: &str, body: reqwest::Body, status: u16, needle: &str) {
    let r = client().post(url(path)).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), status, "{path} {needle}");
    let v: Value = r.json().await.unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains(needle), "{path}: `{msg}` lacks `{needle}`");
    assert!(v["error_type"].is_string());
}

#[tokio::test]
async fn error_paths() {
    let chat = |extra: Value| {
        let mut b = json!({"model": "qwen3vl", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        reqwest::Body::from(b.to_string())
    };
    // MindIE's exact body for a wrong model name.
    let r = client()
        .post(url("/v1/chat/completions"))
        .body(chat(json!({"model": "gpt-4"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Model not found", "error_type": "Input Validation Error"})
    );
    expect_error("/v1/chat/completions", "{not json".into(), 422, "JSON").await;
    expect_error(
        "/v1/chat/completions",
        chat(json!({"temperature": "hot"})),
        422,
        "temperature",
    )
    .await;
    expect_error(
        "/v1/chat/completions",
        chat(json!({"max_tokens": 1.5})),
        422,
        "",
    )
    .await;
    expect_error(
        "/v1/chat/completions",
        chat(json!({"top_p": 1.5})),
        422,
        "top_p",
    )
    .await;
    expect_error(
        "/v1/chat/completions",
        chat(json!({"messages": []})),
        422,
        "messages",
    )
    .await;
    expect_error(
        "/v1/chat/completions",
        chat(json!({"messages": [{"role": "robot", "content": "x"}]})),
        422,
        "role",
    )
    .await;
    // Unknown fields are tolerated.
    let r = client()
        .post(url("/v1/chat/completions"))
        .body(chat(json!({"frobnicate": {"a": 1}, "logit_bias": {}})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Media: outside the root, unreadable, too many.
    let media = |part: Value| {
        chat(
            json!({"messages": [{"role": "user", "content": [part, {"type": "text", "text": "x"}]}]}),
        )
    };
    expect_error(
        "/v1/chat/completions",
        media(json!({"type": "image_url", "image_url": "/etc/passwd.png"})),
        422,
        "media item 0: path is outside the allowed media folder",
    )
    .await;
    expect_error(
        "/v1/chat/completions",
        media(json!({"type": "image_url", "image_url": media_root().join("missing.jpg")})),
        422,
        "media item 0: the local file cannot be read",
    )
    .await;
    expect_error(
        "/v1/chat/completions",
        media(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})),
        422,
        "",
    )
    .await;
    let many: Vec<Value> = (0..21)
        .map(|_| json!({"type": "image_url", "image_url": "tiny.png"}))
        .collect();
    expect_error(
        "/v1/chat/completions",
        chat(json!({"messages": [{"role": "user", "content": many}]})),
        422,
        "limit of 20",
    )
    .await;
    // Prompt longer than maxInputTokenLen (3072).
    let long = "hello ".repeat(4000);
    expect_error(
        "/generate",
        json!({"prompt": long, "max_tokens": 2}).to_string().into(),
        422,
        "input limit",
    )
    .await;
    // Body over maxRequestLength (2 MB here).
    let huge = json!({"prompt": "x".repeat(3 << 20)}).to_string();
    expect_error("/generate", huge.into(), 413, "maxRequestLength").await;
    expect_error(
        "/generate",
        json!({"neither": 1}).to_string().into(),
        422,
        "prompt",
    )
    .await;
    expect_error(
        "/generate",
        json!({"inputs": "x", "parameters": {"temperature": 0}})
            .to_string()
            .into(),
        422,
        "temperature",
    )
    .await;
    // Streaming requests that fail validation get a status, not a broken stream.
    expect_error(
        "/v1/chat/completions",
        chat(json!({"stream": true, "presence_penalty": 3})),
        422,
        "presence_penalty",
    )
    .await;
    expect_error(
        "/generate_stream",
        json!({"inputs": "x", "parameters": {"decoder_input_details": true}})
            .to_string()
            .into(),
        422,
        "decoder_input_details",
    )
    .await;
}

#[tokio::test]
async fn readme_curl_bodies_with_full_width_commas() {
    // The seed README's /generate body, verbatim apart from the image path placeholder, sent
    // as curl -d sends it (form content type).
    let body = "{\n\"prompt\": [\n{\"type\": \"text\", \"text\": \"描述这张图片\"}，\n{\n\"type\": \"image_url\",\n\"image_url\": \"IMG\"\n}\n],\n\"max_tokens\": 4,\n\"model\": \"qwen3vl\"\n}"
        .replace("IMG", &media_root().join("photo448.jpg").display().to_string());
    let r = client()
        .post(url("/generate"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["text"][0].as_str().unwrap().starts_with("描述这张图片 "));
}

#[tokio::test]
async fn client_disconnect_cancels_and_frees_blocks() {
    let s = server();
    let cancelled_before = s
        .state()
        .metrics
        .cancelled
        .load(std::sync::atomic::Ordering::Relaxed);
    let r = client()
        .post(url("/v1/chat/completions"))
        .json(&json!({"model": "qwen3vl", "messages": [{"role": "user", "content": "Tell me a long story"}],
                      "max_tokens": 3000, "ignore_eos": true, "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    // Read a few frames, then hang up.
    let mut seen = 0;
    while seen < 3 {
        let chunk = body.next().await.expect("frames").unwrap();
        seen += String::from_utf8_lossy(&chunk).matches("data:").count();
    }
    drop(body);
    let t0 = Instant::now();
    loop {
        let st = s.state().pipeline.stats();
        let cancelled = s
            .state()
            .metrics
            .cancelled
            .load(std::sync::atomic::Ordering::Relaxed);
        // Other tests may be running: wait for this request's cancellation to be counted and
        // its sequence gone (3000 tokens would take far longer than the deadline).
        if cancelled > cancelled_before && st.running == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "not cancelled: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The metrics endpoint reports the cancellation.
    let m = client()
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("request_cancelled_total{model_name=\"qwen3vl\"}"));
    assert!(m.contains("kv_cache_blocks_free"));
    assert!(m.contains("time_to_first_token_seconds_bucket"));
}

#[tokio::test]
async fn fifty_concurrent_streams_complete() {
    let c = client();
    let jobs = (0..50).map(|i| {
        let c = c.clone();
        async move {
            let body = json!({"model": "qwen3vl", "stream": true, "max_tokens": 8, "ignore_eos": true,
                              "temperature": 0.7, "seed": i,
                              "messages": [{"role": "user", "content": format!("Request number {i}")}]});
            let r = c.post(url("/v1/chat/completions")).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let (frames, done) = sse_json(&r.text().await.unwrap());
            assert!(done);
            frames.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap()
        }
    });
    let done = futures::future::join_all(jobs).await;
    assert_eq!(done, vec![8; 50]);
}
