//! The server's OpenAI responses are exactly the typed wire values: every body and stream frame
//! deserializes into `qwen3vl::wire::openai` and serializes back to the same JSON (nothing the
//! types do not model), and peers' odd shapes read without failing the frame.

mod service_support;

use qwen3vl::service::Server;
use qwen3vl::wire::openai::{ChatChunk, ChatCompletion, Completion};
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
