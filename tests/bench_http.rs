//! Wire parsers and HTTP backends against recorded bytes and a fixture peer on 127.0.0.1
//! that speaks the spec's formats (§1.4 `/generate`, §1.5 OpenAI chat, §1.7 `/infer`).

mod bench_peer;

use std::sync::Arc;
use std::time::Duration;

use bench_peer::{ChatStyle, PeerConfig};
use qwen3vl::bench::backends::framing::{Frame, NulFramer, SseFramer};
use qwen3vl::bench::backends::http::{HttpTarget, Protocol};
use qwen3vl::bench::backends::openai::ChatProtocol;
use qwen3vl::bench::backends::{http_backend, BackendKind, BenchRequest, GenParams};
use qwen3vl::bench::dataset::{MediaKind, MediaMode, Sample};
use qwen3vl::bench::record::{Clock, Recorder, RequestRecord};

fn ev(s: &str) -> Frame {
    Frame::Event(s.to_string())
}

#[test]
fn sse_framing_like_aisbench() {
    let mut f = SseFramer::new();
    // An event split across reads, CRLF delimiters, a comment, a `data:` without a space.
    assert_eq!(f.push(b"data: {\"a\"").unwrap(), vec![]);
    assert_eq!(
        f.push(b":1}\n\n: keep-alive\n\ndata:{\"b\":2}\r\n\r\n")
            .unwrap(),
        vec![ev("{\"a\":1}"), ev("{\"b\":2}")]
    );
    assert_eq!(
        f.push(b"data: [DONE]\n\ndata: {\"after\":1}\n\n").unwrap(),
        vec![Frame::Done]
    );
    assert_eq!(f.push(b"data: {\"x\":1}\n\n").unwrap(), vec![]);
    assert_eq!(f.finish().unwrap(), None);
    // A trailing event without its blank line is delivered at the end.
    let mut f = SseFramer::new();
    assert_eq!(
        f.push(b"data: {\"c\":3}\r\rdata: {\"d\":4}").unwrap(),
        vec![ev("{\"c\":3}")]
    );
    assert_eq!(f.finish().unwrap(), Some(ev("{\"d\":4}")));
}

#[test]
fn nul_framing() {
    let mut f = NulFramer::new();
    assert_eq!(
        f.push(b"{\"text\":[\" The\"]}\0{\"text\":").unwrap(),
        vec![ev("{\"text\":[\" The\"]}")]
    );
    assert_eq!(
        f.push(b"[\" image\"]}\0\0").unwrap(),
        vec![ev("{\"text\":[\" image\"]}")]
    );
    assert_eq!(f.finish().unwrap(), None);
}

#[test]
fn openai_events_and_usage() {
    let mut rec = Recorder::new(Clock::new(), 0, "s".into(), true);
    let p = ChatProtocol;
    let events = [
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think"},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"Dak"},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"ota"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1123,"completion_tokens":4,"total_tokens":1127}}"#,
    ];
    for e in events {
        p.on_event(&serde_json::from_str(e).unwrap(), &mut rec)
            .unwrap();
    }
    let r = rec.finish(Ok(()));
    assert_eq!(r.content, "Dakota");
    assert_eq!(r.reasoning, "think");
    assert_eq!(r.prediction(), "think</think>Dakota");
    assert_eq!(r.usage.prompt_tokens, Some(1123));
    assert_eq!(r.usage.completion_tokens, Some(4));
}

fn request(question: &str) -> BenchRequest {
    let dir = std::env::temp_dir();
    BenchRequest {
        index: 0,
        sample: Arc::new(Sample {
            id: "q1".into(),
            kind: MediaKind::Image,
            paths: vec![dir.join("bench_http_nonexistent.jpg")],
            prompt: question.to_string(),
            answers: vec![],
        }),
        media: MediaMode::Path,
        num_frames: 5,
    }
}

async fn one(
    kind: BackendKind,
    stream: bool,
    cfg: PeerConfig,
    question: &str,
) -> (RequestRecord, bench_peer::Peer) {
    let peer = bench_peer::start(cfg).await;
    let target =
        HttpTarget::new(&peer.base_url, None, 2, 4, Some(Duration::from_secs(10))).unwrap();
    let params = GenParams {
        model: Some("qwen3vl".into()),
        max_tokens: 64,
        temperature: 0.01,
        ignore_eos: false,
        stream,
    };
    let b = http_backend(kind, target, params);
    assert_eq!(b.streaming(), stream);
    let rec = b.send(&request(question), Clock::new()).await;
    (rec, peer)
}

#[tokio::test]
async fn openai_stream_mindie_style_timing() {
    let cfg = PeerConfig {
        first_delay: Duration::from_millis(80),
        step_delay: Duration::from_millis(20),
        ..PeerConfig::default()
    };
    let (r, peer) = one(BackendKind::OpenaiChat, true, cfg, "what brand?").await;
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.usage.prompt_tokens, Some(321));
    assert_eq!(r.usage.completion_tokens, Some(3));
    // tp0 + role chunk + 3 content chunks ([DONE] is not a time point).
    assert_eq!(r.time_points.len(), 5);
    let ttft = r.time_points[1] - r.time_points[0];
    assert!((0.075..0.5).contains(&ttft), "ttft {ttft}");
    let last_gap = r.time_points[4] - r.time_points[3];
    assert!((0.015..0.3).contains(&last_gap), "gap {last_gap}");

    // The request body is AISBench's.
    let seen = peer.requests("/v1/chat/completions");
    let body = &seen[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["model"], "qwen3vl");
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["temperature"], 0.01);
    assert_eq!(body["ignore_eos"], false);
    let content = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(content[0]["type"], "image_url");
    assert!(content[0]["image_url"]["url"]
        .as_str()
        .unwrap()
        .starts_with("file:///"));
    assert_eq!(
        content[1],
        serde_json::json!({"type": "text", "text": "what brand?"})
    );
}

#[tokio::test]
async fn openai_stream_vllm_style_counts_the_usage_chunk() {
    let cfg = PeerConfig {
        style: ChatStyle::Vllm,
        ..PeerConfig::default()
    };
    let (r, _peer) = one(BackendKind::OpenaiChat, true, cfg, "q").await;
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.usage.completion_tokens, Some(3));
    // tp0 + role + 3 content + usage chunk.
    assert_eq!(r.time_points.len(), 6);
}

#[tokio::test]
async fn openai_non_stream() {
    let (r, peer) = one(BackendKind::OpenaiChat, false, PeerConfig::default(), "q").await;
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.time_points.len(), 2);
    assert_eq!(r.usage.prompt_tokens, Some(321));
    let body = &peer.requests("/v1/chat/completions")[0].body;
    assert_eq!(body["stream"], false);
    assert!(body.get("stream_options").is_none());
}

#[tokio::test]
async fn http_errors_are_recorded_with_their_reason() {
    let (r, peer) = one(
        BackendKind::OpenaiChat,
        true,
        PeerConfig::default(),
        "please FAIL",
    )
    .await;
    assert!(!r.success);
    let e = r.error.unwrap();
    assert!(e.starts_with("HTTP 422 Unprocessable Entity"), "{e}");
    assert!(e.contains("Model not found"), "{e}");
    // An HTTP error is not retried.
    assert_eq!(peer.requests("/v1/chat/completions").len(), 1);
}

#[tokio::test]
async fn connection_failures_are_retried_then_recorded() {
    // Bind then drop a listener: nothing listens on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = HttpTarget::new(&format!("http://127.0.0.1:{port}"), None, 2, 1, None).unwrap();
    let params = GenParams {
        model: Some("m".into()),
        max_tokens: 8,
        temperature: 0.01,
        ignore_eos: false,
        stream: true,
    };
    let b = http_backend(BackendKind::OpenaiChat, target, params);
    let r = b.send(&request("q"), Clock::new()).await;
    assert!(!r.success);
    assert!(r.error.unwrap().contains("connection failed"));
    assert_eq!(r.time_points.len(), 1); // only tp0 of the last attempt
}

#[tokio::test]
async fn vllm_generate_stream_and_non_stream() {
    let (r, peer) = one(
        BackendKind::VllmGenerate,
        true,
        PeerConfig::default(),
        "Describe this image.",
    )
    .await;
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.time_points.len(), 4); // tp0 + 3 NUL-delimited objects
    assert_eq!(r.usage.completion_tokens, None);
    let body = &peer.requests("/generate")[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["prompt"][1]["text"], "Describe this image.");
    assert_eq!(body["prompt"][0]["type"], "image_url");

    let (r, _) = one(
        BackendKind::VllmGenerate,
        false,
        PeerConfig::default(),
        "Describe this image.",
    )
    .await;
    assert!(r.success, "{:?}", r.error);
    // `{"text": [prompt + " " + generated]}` → the generated part.
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.time_points.len(), 2);
}

#[tokio::test]
async fn mindie_infer_stream_and_non_stream() {
    let (r, peer) = one(BackendKind::MindieInfer, true, PeerConfig::default(), "q").await;
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.time_points.len(), 4);
    assert_eq!(r.usage.completion_tokens, Some(3));
    let body = &peer.requests("/infer")[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["parameters"]["max_new_tokens"], 64);
    assert_eq!(body["parameters"]["details"], true);
    assert_eq!(body["inputs"][1]["text"], "q");

    let (r, _) = one(BackendKind::MindieInfer, false, PeerConfig::default(), "q").await;
    assert!(r.success, "{:?}", r.error);
    assert_eq!(r.content, "Dakota Digital camera");
    assert_eq!(r.usage.completion_tokens, Some(3));
}

#[tokio::test]
async fn served_model_comes_from_v1_models() {
    let peer = bench_peer::start(PeerConfig::default()).await;
    let target = HttpTarget::new(&peer.base_url, None, 1, 1, None).unwrap();
    assert_eq!(target.served_model().await.unwrap(), "qwen3vl");
}

#[tokio::test]
async fn unreadable_media_fail_before_sending() {
    let peer = bench_peer::start(PeerConfig::default()).await;
    let target = HttpTarget::new(&peer.base_url, None, 1, 1, None).unwrap();
    let params = GenParams {
        model: Some("qwen3vl".into()),
        max_tokens: 8,
        temperature: 0.01,
        ignore_eos: false,
        stream: true,
    };
    let b = http_backend(BackendKind::OpenaiChat, target, params);
    let mut req = request("q");
    req.media = MediaMode::Base64;
    let r = b.send(&req, Clock::new()).await;
    assert!(!r.success);
    assert!(r.error.unwrap().contains("bench_http_nonexistent.jpg"));
    assert!(r.time_points.is_empty());
    assert!(peer.requests("/v1/chat/completions").is_empty());
}
